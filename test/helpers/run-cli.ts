/**
 * Runs the srlm CLI (`tsx cli/srlm.ts ...`) as a child process without blocking the test
 * worker's event loop (a long spawnSync starves vitest's worker RPC on a loaded machine).
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';

const repo = path.resolve(__dirname, '../..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      path.join(repo, 'node_modules/.bin/tsx'),
      [path.join(repo, 'cli/srlm.ts'), ...args],
      { encoding: 'utf8', env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
