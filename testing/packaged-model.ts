import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../infra/paths';

/**
 * The packaged model's Hugging Face directory in `<cacheDir>/models/<name>`, imported from its
 * GGUF package once (`srlm_compute import-model`, about 35 s) when it is not there yet.
 */
export function packagedModel(python: string, cacheDir: string, workDir: string, name = 'smollm2-135m-instruct'): string {
  const dir = path.join(cacheDir, 'models', name);
  if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const job = path.join(workDir, `import-${name}.json`);
  fs.writeFileSync(job, JSON.stringify({ packaged: name, output: dir }));
  const res = spawnSync(python, ['-m', 'srlm_compute', 'import-model', '--job', job], {
    cwd: repoRoot(),
    env: { ...process.env, PYTHONPATH: path.join(repoRoot(), 'compute') },
    encoding: 'utf8',
  });
  if (res.status !== 0) throw new Error(`import-model failed (${res.status}): ${res.stderr.slice(-2000)}`);
  return dir;
}
