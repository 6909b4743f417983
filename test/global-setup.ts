/**
 * vitest globalSetup: starts ONE headless Temporal dev server for the whole test run, on free
 * ports, with its SQLite db in a temp dir, and hands its address to the tests
 * (`testTemporalAddress()` from test/helpers/temporal.ts; also env SRLM_TEST_TEMPORAL_ADDRESS).
 * Without bootstrap (no .srlm/env.json) it starts nothing: tests that need Temporal then fail
 * with the reason, the others still run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDevServer, type DevServerHandle } from '../infra/dev-server';
import { loadEnvPaths, repoRoot } from '../infra/paths';

// What this setup hands to the tests (read them with testTemporalAddress()).
declare module 'vitest' {
  export interface ProvidedContext {
    /** host:port of the test run's dev server; '' when global setup could not start it. */
    temporalAddress: string;
    /** Why global setup could not start the server ('' when it did). */
    temporalSetupError: string;
  }
}

export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  let temporalBin: string;
  try {
    temporalBin = loadEnvPaths(repoRoot()).temporal;
  } catch (err) {
    const why = (err as Error).message;
    console.warn(`[global-setup] not starting Temporal: ${why}`);
    provide('temporalAddress', '');
    provide('temporalSetupError', why);
    return async () => undefined;
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-test-temporal-'));
  const started = Date.now();
  let server: DevServerHandle;
  try {
    server = await startDevServer({ temporalBin, dbFile: path.join(dir, 'temporal.db'), uiPort: false });
  } catch (err) {
    // Fail the run loudly: the test suite needs it and bootstrap said it is installed.
    throw new Error(`[global-setup] could not start the Temporal dev server: ${(err as Error).message}`, { cause: err });
  }
  console.log(`[global-setup] Temporal dev server at ${server.address} (pid ${server.pid}) in ${Date.now() - started} ms`);
  process.env.SRLM_TEST_TEMPORAL_ADDRESS = server.address;
  provide('temporalAddress', server.address);
  provide('temporalSetupError', '');

  return async () => {
    await server.stop();
    if (process.env.SRLM_KEEP_TEST_TEMPORAL) {
      console.log(`[global-setup] kept ${dir} (server log: ${server.logFile})`);
    } else {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}
