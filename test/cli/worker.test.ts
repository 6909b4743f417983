/**
 * The worker entry point (workers/main.ts) as an operator runs it: --help, and SIGINT/SIGTERM
 * stop it with every process of its process group (tsx, node, esbuild), against the real
 * Temporal dev server.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');
const tsx = path.join(repo, 'node_modules/.bin/tsx');

/** Live (not zombie) processes of process group `pgid`. */
function groupMembers(pgid: number): string[] {
  let out: string;
  try {
    out = execFileSync('ps', ['-o', 'pid=,stat=,args=', '-g', String(pgid)], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when it lists nothing
  }
  return out.split('\n').filter((l) => l.trim() && !/^\s*\d+\s+Z/.test(l));
}

function startWorker(): { child: ChildProcess; output: () => string } {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-worker-signal-'));
  // its own process group, as a shell gives a foreground job
  const child = spawn(tsx, ['workers/main.ts', '--queues', 'orchestration'], {
    cwd: repo,
    detached: true,
    env: { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress(), SRLM_STATE_DIR: stateDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  return { child, output: () => text };
}

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('workers/main.ts', () => {
  it('--help prints its flags and environment and exits 0', () => {
    const out = execFileSync(tsx, ['workers/main.ts', '--help'], { cwd: repo, encoding: 'utf8' });
    expect(out).toMatch(/^Usage: tsx workers\/main\.ts \[--queues LIST\]/);
    for (const word of ['--compute-concurrency', 'SRLM_QUEUES', 'TEMPORAL_ADDRESS', 'SRLM_METRICS_EXPOSE', 'SIGTERM'])
      expect(out).toContain(word);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} stops the worker and leaves no process of its group`, { timeout: 120_000 }, async () => {
      const { child, output } = startWorker();
      const pgid = child.pid!;
      try {
        await waitFor('the worker to serve', () => output().includes('srlm worker serving'), 90_000);
        expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(2); // tsx and the node process it runs
        process.kill(pgid, signal); // to the tsx process, as `kill <pid>` or a service manager does
        await waitFor('the group to empty', () => groupMembers(pgid).length === 0, 30_000);
        expect(output()).toContain(`srlm worker: ${signal}: stopping`);
      } finally {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
});
