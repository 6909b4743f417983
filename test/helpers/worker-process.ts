/**
 * A worker in its own OS process (`node --import tsx testing/fake-worker.ts`, FakeCompute),
 * for tests that kill it or read what it prints.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

const repo = path.resolve(__dirname, '../..');

export interface WorkerProcess {
  child: ChildProcess;
  /** the process's stdout, line by line */
  lines: string[];
  /** the process's stderr, as it came */
  stderr: string[];
  ready: Promise<void>;
  exited: Promise<number | null>;
}

/** A worker in its own OS process (`node --import tsx testing/fake-worker.ts`). */
export function spawnWorker(address: string, queues: string, workDir: string, extra: Record<string, string> = {}): WorkerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'testing/fake-worker.ts')], {
    cwd: repo,
    env: { ...process.env, SRLM_TEST_ADDRESS: address, SRLM_TEST_QUEUES: queues, SRLM_TEST_WORKDIR: workDir, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const out: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (l) => {
      out.push(l);
      if (l.trim() === 'ready') resolve();
    });
    void exited.then((code) =>
      reject(new Error(`worker (${queues}) exited with ${code} before it was ready: ${stderr.join('').slice(-2000)}`)),
    );
  });
  return { child, lines: out, stderr, ready, exited };
}
