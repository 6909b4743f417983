/**
 * bin/srlm, the installed command: it runs (compiled dist/ when fresh, else the TypeScript),
 * and `--help` loads none of the heavy modules (Temporal client and worker, AWS SDK, zod):
 * the start-up time itself is measured by `npm run bench:cli`.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(__dirname, '../..');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: repo, env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('bin/srlm', () => {
  it('is the package.json bin and prints the commands', async () => {
    const pkg = (await import('../../package.json')) as { bin: Record<string, string> };
    expect(pkg.bin.srlm).toBe('bin/srlm');
    const res = await run(path.join(repo, 'bin/srlm'), ['--help'], { ...process.env, SRLM_QUIET_STALE: '1' });
    expect(res.code).toBe(0);
    for (const cmd of ['run', 'start', 'status', 'resume', 'watch', 'cancel', 'models', 'report', 'schedule'])
      expect(res.stdout).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
  });

  it('--help loads no Temporal SDK, AWS SDK or zod module', async () => {
    const probe = `
      process.on('exit', () => {
        const heavy = Object.keys(require.cache).filter((f) => /node_modules\\/(@temporalio|@aws-sdk|zod|@kubernetes)\\//.test(f));
        process.stderr.write('HEAVY ' + JSON.stringify(heavy.length) + '\\n');
      });
      require('tsx/cjs');
      process.argv = [process.argv[0], 'srlm', '--help'];
      require('./cli/srlm.ts');`;
    const res = await run(process.execPath, ['-e', probe]);
    expect(res.stdout).toMatch(/Usage: srlm/);
    expect(res.stderr).toContain('HEAVY 0');
  });
});
