/**
 * A user's clone has no ../shared beside it: the main job (`npm start` = `srlm run -c
 * configs/demo.json`) must read nothing outside the repository. These tests copy the tracked
 * files into a directory with nothing beside it and validate the demo config there, and
 * check every shipped config's paths.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRunConfig } from '../../cli/config';

const repo = path.resolve(__dirname, '../..');

/** Every local file or directory a config names, after resolving it against the config file. */
function pathsNamed(file: string): [string, string][] {
  const c = loadRunConfig(file);
  const out: [string, string | undefined][] = [
    ['seed.ift', c.seed.ift],
    ['seed.ranked', c.seed.ranked],
    ['seed.oasst', c.seed.oasst],
    ['seed.eft', c.seed.eft],
    ['baseModel.path', 'path' in c.baseModel ? c.baseModel.path : undefined],
    ['prompts.model.path', c.prompts.model && 'path' in c.prompts.model ? c.prompts.model.path : undefined],
    ['store.root', c.store.root && !c.store.root.startsWith('s3://') ? c.store.root : undefined],
    ['evaluation.prompts.file', c.evaluation?.prompts?.file],
    ['evaluation.judgeSet.ranked', c.evaluation?.judgeSet?.ranked],
    ['evaluation.judgeSet.oasst', c.evaluation?.judgeSet?.oasst],
    [
      'evaluation.judge.model.path',
      c.evaluation?.judge?.kind === 'model' && 'path' in c.evaluation.judge.model ? c.evaluation.judge.model.path : undefined,
    ],
  ];
  return out.filter((e): e is [string, string] => e[1] !== undefined);
}

describe('shipped configs', () => {
  const configs = fs.readdirSync(path.join(repo, 'configs')).filter((f) => f.endsWith('.json'));

  it('exist (the demo at least)', () => {
    expect(configs).toContain('demo.json');
  });

  // A relative path must stay inside the repository (the demo once read ../../shared/data). A
  // cluster template (llama-70b.json) may name absolute mount points such as /models or /data,
  // which a user edits; none may be in the directory that holds the clone (where ../shared is).
  it.each(configs)('%s names no path outside the repository (relative) or beside it (absolute)', (name) => {
    const file = path.join(repo, 'configs', name);
    const raw = fs.readFileSync(file, 'utf8');
    for (const [field, p] of pathsNamed(file)) {
      const rel = path.relative(repo, p);
      const inside = !rel.startsWith('..') && !path.isAbsolute(rel);
      if (inside) continue;
      expect(raw.includes(JSON.stringify(p)), `configs/${name}: "${field}" resolves to ${p}, outside ${repo}, from a relative path`).toBe(
        true,
      );
      expect(p.startsWith(path.dirname(repo) + path.sep), `configs/${name}: "${field}" is ${p}, beside the repository`).toBe(false);
    }
  });

  it('the check above does catch a config that points outside (it read ../shared before)', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-cfg-'));
    try {
      const demo = JSON.parse(fs.readFileSync(path.join(repo, 'configs/demo.json'), 'utf8'));
      demo.evaluation.prompts.file = '../../shared/data/alpaca-eval-gpt4-turbo-reference.json';
      fs.mkdirSync(path.join(tmp, 'configs'));
      fs.writeFileSync(path.join(tmp, 'configs/x.json'), JSON.stringify(demo));
      const named = new Map(pathsNamed(path.join(tmp, 'configs/x.json')));
      expect(path.relative(tmp, named.get('evaluation.prompts.file')!).startsWith('..')).toBe(true);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('a clone with no ../shared beside it', () => {
  let clone: string;

  beforeAll(() => {
    // <tmp>/clone holds the tracked files; <tmp> holds nothing else, so <clone>/../shared does not exist
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-fresh-'));
    clone = path.join(tmp, 'clone');
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' })
      .split('\0')
      .filter(Boolean);
    for (const f of files) {
      if (!fs.existsSync(path.join(repo, f))) continue; // deleted in the work tree
      fs.mkdirSync(path.dirname(path.join(clone, f)), { recursive: true });
      fs.copyFileSync(path.join(repo, f), path.join(clone, f));
    }
    fs.symlinkSync(path.join(repo, 'node_modules'), path.join(clone, 'node_modules'));
  });

  afterAll(() => {
    if (clone) fs.rmSync(path.dirname(clone), { recursive: true, force: true });
  });

  it('bootstraps only what `npm start` needs: no Go build, no Chromium, no apt, no test-tools venv', async () => {
    // The compute venv is the real one (linked into a fresh cache dir); `go`, `apt-get` and
    // `sudo` are shims that record any call, so a bootstrap that reached for them is caught.
    const env = JSON.parse(fs.readFileSync(path.join(repo, '.srlm/env.json'), 'utf8')) as { venv: string };
    const tmp = path.dirname(clone);
    const cache = path.join(tmp, 'cache');
    const shims = path.join(tmp, 'shims');
    const calls = path.join(tmp, 'shim-calls.log');
    fs.mkdirSync(cache);
    fs.mkdirSync(shims);
    fs.symlinkSync(env.venv, path.join(cache, path.basename(env.venv)));
    for (const tool of ['go', 'apt-get', 'sudo']) {
      fs.writeFileSync(path.join(shims, tool), `#!/bin/sh\necho "${tool} $*" >> ${calls}\nexit 1\n`, { mode: 0o755 });
    }
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(
        'bash',
        ['scripts/bootstrap.sh'],
        {
          cwd: clone,
          encoding: 'utf8',
          timeout: 120_000,
          env: { ...process.env, SRLM_CACHE_DIR: cache, PATH: `${shims}:${process.env.PATH}` },
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout + stderr }),
      );
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/bootstrap: ok/);
    expect(r.out).not.toMatch(/versitygw|chromium|test tools/i);
    expect(fs.existsSync(calls), fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8') : '').toBe(false);
    expect(fs.readdirSync(cache).filter((f) => f.startsWith('tools-') || f === 'bin')).toEqual([]);
    const written = JSON.parse(fs.readFileSync(path.join(clone, '.srlm/env.json'), 'utf8')) as Record<string, string>;
    expect(written.python).toBe(path.join(cache, path.basename(env.venv), 'bin/python'));
    expect(written.toolsPython).toBeUndefined();
    expect(written.s3server).toBeUndefined();
  });

  it('validates and dry-runs configs/demo.json, reading only files inside the clone', async () => {
    expect(fs.existsSync(path.join(clone, '../shared'))).toBe(false);
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        path.join(clone, 'node_modules/.bin/tsx'),
        ['cli/srlm.ts', 'validate', '-c', 'configs/demo.json', '--json'],
        {
          cwd: clone,
          encoding: 'utf8',
          timeout: 120_000,
          // no Temporal server is needed: point at an address where none can answer
          env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:9' },
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { valid: boolean; run: string; inputs: { field: string; file: string; records: number }[] };
    expect(out.valid).toBe(true);
    expect(out.run).toBe('demo');
    expect(out.inputs.map((i) => i.field)).toEqual(['seed.ift', 'seed.ranked', 'seed.eft', 'evaluation.prompts', 'evaluation.judgeSet']);
    for (const i of out.inputs) {
      expect(i.file.startsWith(clone + path.sep), `${i.field} read ${i.file}`).toBe(true);
      expect(i.records).toBeGreaterThan(0);
    }
  });
});
