/**
 * A tiny randomly initialised Llama with SmolLM2's tokenizer (`make-tiny-model`), for tests of
 * the training machinery against real processes, and a liveness probe for their pids.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { PythonCompute } from '../../backends/compute';

/** Builds the tiny model at `<dir>/tiny-llama` (SmolLM2 is imported once per machine into `cacheDir`); returns its path. */
export async function makeTinyModel(compute: PythonCompute, python: string, repo: string, cacheDir: string, dir: string): Promise<string> {
  // SmolLM2's tokenizer (converted once per machine and cached, as `npm start` does)
  const smol = path.join(cacheDir, 'models', 'smollm2-135m-instruct');
  if (!fs.existsSync(path.join(smol, 'config.json'))) {
    fs.mkdirSync(path.dirname(smol), { recursive: true });
    await compute.importModel({ packaged: 'smollm2-135m-instruct', output: smol }, {});
  }
  const tiny = path.join(dir, 'tiny-llama');
  const job = path.join(dir, 'tiny.json');
  fs.writeFileSync(job, JSON.stringify({ tokenizer: smol, output: tiny, hidden_size: 64, layers: 2, heads: 4, seed: 0 }));
  await promisify(execFile)(python, ['-m', 'srlm_compute', 'make-tiny-model', '--job', job], {
    cwd: path.join(repo, 'compute'),
    env: { ...process.env, PYTHONPATH: path.join(repo, 'compute') },
  });
  return tiny;
}

/** Whether a process with this pid exists (signal 0). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
