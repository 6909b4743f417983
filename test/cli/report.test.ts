/**
 * `srlm report` as a user runs it: summaries read through the artifact store, the two files
 * written where asked (or under the state directory), and one clear line for a run without
 * summaries or a summary that does not parse.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, runCli } from '../helpers/run-cli';
import { LocalStore } from '../../store/store';
import { HOSTILE, iteration2, RUN, seedReportStore } from '../helpers/report-fixtures';

let tmp: string;
let storeRoot: string;

function srlm(...args: string[]): Promise<CliResult> {
  // the store and state directory come from the arguments only
  const { SRLM_STORE_ROOT: _store, SRLM_STATE_DIR: _state, ...env } = process.env;
  return runCli(args, { env });
}

describe('srlm report', () => {
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-report-cli-'));
    storeRoot = path.join(tmp, 'store');
    await seedReportStore(storeRoot);
  });

  it('writes report.html and report.md into --out and prints their paths (--json)', async () => {
    const out = path.join(tmp, 'out');
    const res = await srlm('report', RUN, '--store', storeRoot, '--out', out, '--json');
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ html: path.join(out, 'report.html'), md: path.join(out, 'report.md') });
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    // the three iterations of this run and not the other run's
    expect([...html.matchAll(/<tr data-iteration="(\d+)"><td>\d+<\/td><td><code>/g)].map((m) => m[1])).toEqual(['1', '2', '3']);
    expect(html).toContain(`store file://${storeRoot}`);
    expect(html).toContain(`&lt;script&gt;`);
    expect(html).not.toContain(HOSTILE);
    // lineage data from the manifests: m1-m3 and the promotion
    expect(html).toMatch(
      /data-promoted="m3">Promoted model of lineage <code>fixture<\/code>: <code>m3<\/code> \(by run <code>report-fixture<\/code>.*replacing <code>m2<\/code>/,
    );
    expect(md).toMatch(/^\| m3 \(promoted\) \| m2 \| dpo \| fixture \|/m);
    expect(md).toMatch(/^\| m1 \| – \| sft \| fixture \|/m);
  });

  it('defaults to <state dir>/reports/<run> and prints the paths', async () => {
    const stateDir = path.join(tmp, 'state');
    const res = await srlm('report', RUN, '--store', storeRoot, '--state-dir', stateDir);
    expect(res.code).toBe(0);
    const dir = path.join(stateDir, 'reports', RUN);
    expect(res.stdout).toContain(path.join(dir, 'report.html'));
    expect(res.stdout).toContain(path.join(dir, 'report.md'));
    expect(fs.statSync(path.join(dir, 'report.html')).size).toBeGreaterThan(10_000);
  });

  it('reads the default store under the state directory', async () => {
    const stateDir = path.join(tmp, 'state-with-store');
    await seedReportStore(path.join(stateDir, 'artifacts'));
    const res = await srlm('report', RUN, '--state-dir', stateDir, '--json');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).html).toBe(path.join(stateDir, 'reports', RUN, 'report.html'));
  });

  it('names the run and the store when the run has no summaries', async () => {
    const res = await srlm('report', 'no-such-run', '--store', storeRoot, '--out', path.join(tmp, 'none'));
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe(
      `error: run "no-such-run" has no iteration summaries in the store file://${storeRoot} (looked for file://${storeRoot}/runs/no-such-run/iter-*/summary.json)`,
    );
    expect(fs.existsSync(path.join(tmp, 'none'))).toBe(false);
  });

  it('names the object and the zod issue path of a summary that does not parse', async () => {
    const root = path.join(tmp, 'bad-store');
    const store = new LocalStore(root);
    await store.putBytes(`runs/${RUN}/iter-2/summary.json`, JSON.stringify(iteration2));
    const bad = {
      ...iteration2,
      iteration: 3,
      evaluation: { ...iteration2.evaluation!, headToHead: [{ ...iteration2.evaluation!.headToHead[0]!, wins: -1 }] },
    };
    await store.putBytes(`runs/${RUN}/iter-3/summary.json`, JSON.stringify(bad));
    const res = await srlm('report', RUN, '--store', root);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      new RegExp(
        `^error: file://${root}/runs/${RUN}/iter-3/summary\\.json: not a valid iteration summary: "evaluation\\.headToHead\\.0\\.wins": .*>=0`,
      ),
    );
  });

  it('refuses a summary filed under the wrong iteration, and one that is not JSON', async () => {
    const root = path.join(tmp, 'misfiled');
    const store = new LocalStore(root);
    await store.putBytes(`runs/${RUN}/iter-5/summary.json`, JSON.stringify(iteration2));
    let res = await srlm('report', RUN, '--store', root);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      `iter-5/summary.json: the summary is of run "${RUN}", iteration 2, but is stored as run "${RUN}", iteration 5`,
    );
    await store.putBytes(`runs/${RUN}/iter-5/summary.json`, '{"run": ');
    res = await srlm('report', RUN, '--store', root);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/iter-5\/summary\.json: not valid JSON/);
  });

  it('refuses a summary that is a symbolic link out of the store, and never shows what it points at', async () => {
    const root = path.join(tmp, 'linked');
    const store = new LocalStore(root);
    await store.putBytes(`runs/${RUN}/iter-2/summary.json`, JSON.stringify(iteration2));
    const secret = path.join(tmp, 'outside-secret.json');
    fs.writeFileSync(secret, '{"aws_secret_access_key": "SECRET-OUTSIDE"}');
    fs.mkdirSync(path.join(root, 'runs', RUN, 'iter-3'), { recursive: true });
    fs.symlinkSync(secret, path.join(root, 'runs', RUN, 'iter-3', 'summary.json'));
    const res = await srlm('report', RUN, '--store', root, '--out', path.join(tmp, 'linked-out'));
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe(
      `error: file://${root}/runs/${RUN}/iter-3/summary.json leads out of the store through a symbolic link; srlm report reads only files inside file://${root}`,
    );
    expect(res.stderr + res.stdout).not.toContain('SECRET-OUTSIDE');
    // a run folder that is itself a link out of the store is refused the same way
    const outsideRun = path.join(tmp, 'outside-run');
    await new LocalStore(outsideRun).putBytes('iter-1/summary.json', JSON.stringify({ ...iteration2, iteration: 1 }));
    fs.symlinkSync(outsideRun, path.join(root, 'runs', 'linked-run'), 'dir');
    const dirRes = await srlm('report', 'linked-run', '--store', root, '--out', path.join(tmp, 'linked-out'));
    expect(dirRes.code).toBe(1);
    expect(dirRes.stderr).toMatch(/runs\/linked-run\/iter-1\/summary\.json leads out of the store through a symbolic link/);
    // a link that stays inside the store is read
    const inside = path.join(tmp, 'inside-link');
    await new LocalStore(inside).putBytes(`runs/${RUN}/iter-2/data.json`, JSON.stringify(iteration2));
    fs.symlinkSync('data.json', path.join(inside, 'runs', RUN, 'iter-2', 'summary.json'));
    expect((await srlm('report', RUN, '--store', inside, '--out', path.join(tmp, 'inside-out'))).code).toBe(0);
  });

  it('refuses a run name that is not a store path segment', async () => {
    const res = await srlm('report', '../etc', '--store', storeRoot);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: run name "\.\.\/etc" /);
  });
});
