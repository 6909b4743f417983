/**
 * The embedded stack: a Temporal server (started only when none answers at the address)
 * plus in-process workers for every task queue.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { ProgressReporter } from '../activities/progress';
import { type DevServerHandle, isTemporalReachable, startDevServer } from '../infra/dev-server';
import { loadEnvPaths } from '../infra/paths';
import { ALL_QUEUES, createWorkers, defaultDeps, installQuietRuntime } from '../workers';

export interface EmbeddedStack {
  address: string;
  namespace: string;
  client: Client;
  workers: Worker[];
  startedServer: DevServerHandle | null;
  close(): Promise<void>;
}

export interface StackOptions {
  address: string;
  namespace: string;
  stateDir: string;
  reporter?: ProgressReporter;
  log?: (line: string) => void;
  uiPort?: number;
}

export async function startEmbeddedStack(opts: StackOptions): Promise<EmbeddedStack> {
  const log = opts.log ?? ((l: string) => console.log(l));
  fs.mkdirSync(opts.stateDir, { recursive: true });
  installQuietRuntime();
  let server: DevServerHandle | null = null;
  if (!(await isTemporalReachable(opts.address))) {
    const env = loadEnvPaths();
    const port = Number(opts.address.split(':').pop() ?? 7233);
    log(`No Temporal server at ${opts.address}: starting the dev server (state in ${opts.stateDir})`);
    server = await startDevServer({
      temporalBin: env.temporal,
      dbFile: path.join(opts.stateDir, 'temporal.db'),
      port,
      uiPort: opts.uiPort ?? 8233,
      namespace: opts.namespace,
      logFile: path.join(opts.stateDir, 'temporal-server.log'),
    });
    log(`Temporal dev server up at ${server.address}${server.uiUrl ? `, Web UI ${server.uiUrl}` : ''}`);
  } else {
    log(`Using the Temporal server at ${opts.address}`);
  }
  const address = server?.address ?? opts.address;
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, namespace: opts.namespace });
  const nativeConnection = await NativeConnection.connect({ address });
  const workers = await createWorkers({
    connection: nativeConnection,
    namespace: opts.namespace,
    queues: ALL_QUEUES,
    deps: defaultDeps({ stateDir: opts.stateDir, ...(opts.reporter ? { reporter: opts.reporter } : {}) }),
  });
  return {
    address,
    namespace: opts.namespace,
    client,
    workers,
    startedServer: server,
    async close() {
      await connection.close();
      await nativeConnection.close();
      if (server) await server.stop();
    },
  };
}
