/**
 * Bad input to `srlm run` fails before anything starts (no server, no compute), with one
 * clear line naming the file and line or the config key.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli';

let tmp: string;

async function srlmRun(
  config: unknown,
  files: Record<string, string | Buffer> = {},
): Promise<{ code: number | null; stderr: string; stateDir: string }> {
  const dir = fs.mkdtempSync(path.join(tmp, 'case-'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  const file = path.join(dir, 'run.json');
  fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  const stateDir = path.join(dir, 'state');
  // a port nothing listens on: if validation failed to stop the run, it would try to start a server
  const res = await runCli(['run', '--config', file, '--state-dir', stateDir], {
    env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' },
  });
  return { code: res.code, stderr: res.stderr.split(dir + '/').join(''), stateDir };
}

const ift = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify({ id: `i${i}`, prompt: `Explain topic number ${i} in two sentences.`, response: `Topic ${i} is explained here.` }),
  ).join('\n') + '\n';

/** `n` ranked sets r0..r(n-1) of two replies each. */
const rankedSets = (n: number) =>
  Array.from({ length: n }, (_, k) =>
    JSON.stringify({
      id: `r${k}`,
      prompt: `Question ${k}?`,
      replies: [
        { text: 'a', rank: 0 },
        { text: 'b', rank: 1 },
      ],
    }),
  ).join('\n') + '\n';

describe('srlm run rejects bad input before starting anything', () => {
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-cli-'));
  });

  const cases: [string, unknown, Record<string, string | Buffer>, RegExp][] = [
    [
      'an unknown config key',
      { run: 'x', seed: { ift: 'ift.jsonl' }, judge: { samplez: 3 } },
      { 'ift.jsonl': ift(10) },
      /run\.json: unknown key "samplez" at "judge"/,
    ],
    [
      'N = 0',
      { run: 'x', seed: { ift: 'ift.jsonl' }, candidates: { n: 0 } },
      { 'ift.jsonl': ift(10) },
      /run\.json: "candidates\.n": must be > 0/,
    ],
    ['a negative learning rate', { run: 'x', seed: { ift: 'ift.jsonl' }, dpo: { lr: -1 } }, { 'ift.jsonl': ift(10) }, /"dpo\.lr"/],
    [
      'a wrong type',
      { run: 'x', seed: { ift: 'ift.jsonl' }, iterations: 'two' },
      { 'ift.jsonl': ift(10) },
      /"iterations": expected number/,
    ],
    ['a run name with a path in it', { run: '../etc', seed: { ift: 'ift.jsonl' } }, { 'ift.jsonl': ift(10) }, /"run"/],
    ['a config that is not JSON', '{ "run": "x", ', {}, /run\.json: not valid JSON/],
    ['a seed file that does not exist', { run: 'x', seed: { ift: 'missing.jsonl' } }, {}, /"seed\.ift": .*missing\.jsonl does not exist/],
    [
      'a model path that does not exist',
      { run: 'x', seed: { ift: 'ift.jsonl' }, baseModel: { path: 'no-such-model' } },
      { 'ift.jsonl': ift(10) },
      /"baseModel\.path": .*no-such-model is not a Hugging Face model directory/,
    ],
    [
      'a malformed JSONL line',
      { run: 'x', seed: { ift: 'ift.jsonl' } },
      { 'ift.jsonl': ift(3) + '{"id": "bad", "prompt": \n' },
      /ift\.jsonl:4: malformed JSON/,
    ],
    [
      'a missing field',
      { run: 'x', seed: { ift: 'ift.jsonl' } },
      { 'ift.jsonl': ift(2) + JSON.stringify({ id: 'z', prompt: 'Say hello to the team.' }) + '\n' },
      /ift\.jsonl:3: field "response": missing/,
    ],
    [
      'a duplicate record id',
      { run: 'x', seed: { ift: 'ift.jsonl' } },
      { 'ift.jsonl': ift(9) + JSON.stringify({ id: 'i3', prompt: 'Again?', response: 'Yes.' }) + '\n' },
      /ift\.jsonl:10: duplicate record id "i3" \(first on line 4\)/,
    ],
    [
      'invalid UTF-8',
      { run: 'x', seed: { ift: 'ift.jsonl' } },
      {
        'ift.jsonl': Buffer.concat([
          Buffer.from(ift(9)),
          Buffer.from('{"id":"u","prompt":"caf'),
          Buffer.from([0xc3, 0x28]),
          Buffer.from('","response":"ok"}\n'),
        ]),
      },
      /ift\.jsonl:10: invalid UTF-8/,
    ],
    [
      'an impossible token limit',
      { run: 'x', seed: { ift: 'ift.jsonl' }, judge: { sampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 100000 } } },
      { 'ift.jsonl': ift(10) },
      /"judge\.sampling\.maxNewTokens"/,
    ],
    ['an empty seed file', { run: 'x', seed: { ift: 'ift.jsonl' } }, { 'ift.jsonl': '\n' }, /ift\.jsonl: file is empty/],
    [
      'too few seed examples for 8-shot prompts',
      { run: 'x', seed: { ift: 'ift.jsonl' } },
      { 'ift.jsonl': ift(5) },
      /5 IFT examples in .*ift\.jsonl, but self-instruct needs at least 8/,
    ],
    [
      'a ranked set with repeated ranks',
      { run: 'x', seed: { ift: 'ift.jsonl', ranked: 'ranked.jsonl' } },
      {
        'ift.jsonl': ift(10),
        'ranked.jsonl':
          JSON.stringify({
            id: 'r',
            prompt: 'Pick one.',
            replies: [
              { text: 'a', rank: 0 },
              { text: 'b', rank: 0 },
            ],
          }) + '\n',
      },
      /ranked\.jsonl:1: .*ranks must be distinct/,
    ],
    [
      'an EFT judgment without a score line',
      { run: 'x', seed: { ift: 'ift.jsonl', eft: 'eft.jsonl' } },
      { 'ift.jsonl': ift(10), 'eft.jsonl': JSON.stringify({ id: 'e', prompt: 'q', response: 'r', judgment: 'Looks fine to me.' }) + '\n' },
      /eft\.jsonl:1: field "judgment": its score line does not parse/,
    ],
    [
      'an EFT judgment whose only score is quoted from the response',
      { run: 'x', seed: { ift: 'ift.jsonl', eft: 'eft.jsonl' } },
      {
        'ift.jsonl': ift(10),
        'eft.jsonl': JSON.stringify({ id: 'e', prompt: 'q', response: 'r\nScore: 5', judgment: 'It ends with "Score: 5" but' }) + '\n',
      },
      /eft\.jsonl:1: field "judgment": its score line does not parse \(quoted_score_only: /,
    ],
    [
      'a held-out prompt that is a seed IFT prompt (up to case, spacing and Unicode forms)',
      { run: 'x', seed: { ift: 'ift.jsonl' }, evaluation: { prompts: { file: 'held-out.jsonl' } } },
      {
        'ift.jsonl': ift(10),
        'held-out.jsonl':
          JSON.stringify({ prompt: 'A fresh question?' }) +
          '\n' +
          JSON.stringify({ prompt: 'EXPLAIN  topic number\u00a07 in two sentences.' }) +
          '\n',
      },
      /evaluation prompt "eval-2" \(held-out\.jsonl:2\) shares the prompt "EXPLAIN topic number 7 in two sentences\." with seed IFT example "i7" \(ift\.jsonl:8\)/,
    ],
    [
      'a held-out ranked set that EFT also judges',
      { run: 'x', seed: { ift: 'ift.jsonl', ranked: 'ranked.jsonl' }, evaluation: { judgeSet: { ranked: 'ranked.jsonl', offset: 1 } } },
      {
        'ift.jsonl': ift(10),
        'ranked.jsonl': rankedSets(3),
      },
      /evaluation ranked set "r1" \(ranked\.jsonl:2\) shares the id "r1" with seed ranked set \(EFT\) "r1" \(ranked\.jsonl:2\)/,
    ],
  ];

  it('accepts held-out ranked sets past the ones EFT uses (seed.maxRanked)', async () => {
    const ranked = rankedSets(3);
    // `srlm validate` runs the same checks as `srlm run` without starting a server and a run
    // (`srlm run` would start the embedded stack once validation passes)
    const dir = fs.mkdtempSync(path.join(tmp, 'case-'));
    fs.writeFileSync(path.join(dir, 'ift.jsonl'), ift(10));
    fs.writeFileSync(path.join(dir, 'ranked.jsonl'), ranked);
    const file = path.join(dir, 'run.json');
    const config = {
      run: 'x',
      seed: { ift: 'ift.jsonl', ranked: 'ranked.jsonl', maxRanked: 1 },
      evaluation: { judgeSet: { ranked: 'ranked.jsonl', offset: 1 } },
    };
    fs.writeFileSync(file, JSON.stringify(config));
    const res = await runCli(['validate', '--config', file, '--json'], { env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' } });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).not.toMatch(/leaks into training/);
    const out = JSON.parse(res.stdout) as { inputs: { field: string; records: number }[] };
    expect(out.inputs.find((i) => i.field === 'evaluation.judgeSet')?.records).toBe(2);
    // the leak case the other tests refuse: held-out sets that EFT also uses
    fs.writeFileSync(file, JSON.stringify({ ...config, seed: { ...config.seed, maxRanked: 2 } }));
    const leak = await runCli(['validate', '--config', file], { env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' } });
    expect(leak.code).toBe(1);
  });

  for (const [what, config, files, pattern] of cases) {
    it(`names the problem for ${what}`, async () => {
      const res = await srlmRun(config, files);
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(pattern);
      // one line per problem, each naming the file it is in
      for (const line of res.stderr.trim().split('\n')) expect(line).toMatch(/\.jsonl?\b/);
      // nothing was started: no state directory, no server database
      expect(fs.existsSync(res.stateDir)).toBe(false);
    });
  }
});
