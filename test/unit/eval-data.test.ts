import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEvalPrompts, loadEvalRanked } from '../../inputs/eval-data';

const shared = path.resolve(__dirname, '../../../shared/data');
const alpaca = path.join(shared, 'alpaca-eval-gpt4-turbo-reference.json');
const oasst = path.join(shared, 'oasst2-trees-sample.jsonl');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-eval-data-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('loadEvalPrompts', () => {
  it.skipIf(!fs.existsSync(alpaca))('reads AlpacaEval 2.0 prompts with GPT-4 Turbo reference outputs (../shared/data)', async () => {
    const all = JSON.parse(fs.readFileSync(alpaca, 'utf8')) as { instruction: string; output: string; generator: string }[];
    const prompts = await loadEvalPrompts({ file: alpaca, offset: 10, max: 5 });
    expect(prompts).toHaveLength(5);
    // ids follow the position in the file, so a slice keeps them stable
    expect(prompts.map((p) => p.id)).toEqual(['eval-11', 'eval-12', 'eval-13', 'eval-14', 'eval-15']);
    expect(prompts[0]!.instruction).toBe(all[10]!.instruction);
    expect(prompts[0]!.reference).toBe(all[10]!.output);
    expect(prompts[0]!.referenceGenerator).toBe('gpt4_1106_preview');
    expect((await loadEvalPrompts({ file: alpaca, offset: 0, max: 10_000 })).length).toBe(805);
  });

  it('reads JSON Lines of {id, prompt, response}', async () => {
    const file = write('p.jsonl', '{"id": "q1", "prompt": "Name a prime."}\n\n{"id": 7, "instruction": "Say hi.", "output": "Hi!"}\n');
    expect(await loadEvalPrompts({ file, offset: 0, max: 10 })).toEqual([
      { id: 'q1', instruction: 'Name a prime.' },
      { id: '7', instruction: 'Say hi.', reference: 'Hi!' },
    ]);
  });

  it('names the file and line of a bad JSONL record', async () => {
    const file = write('bad.jsonl', '{"prompt": "ok"}\n{"output": "no instruction"}\n');
    await expect(loadEvalPrompts({ file, offset: 0, max: 10 })).rejects.toThrow(/bad\.jsonl:2: .*instruction/);
  });

  it('names the record of a bad JSON array entry', async () => {
    const file = write('bad.json', '[{"instruction": "a"}, {"instruction": 3}]');
    await expect(loadEvalPrompts({ file, offset: 0, max: 10 })).rejects.toThrow(/bad\.json: record 2 of the array: .*instruction/);
  });

  it('refuses duplicate ids, an offset past the end and a missing file', async () => {
    const dup = write('dup.jsonl', '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n');
    await expect(loadEvalPrompts({ file: dup, offset: 0, max: 10 })).rejects.toThrow(/records 1 and 2 share the id "a"/);
    await expect(loadEvalPrompts({ file: dup, offset: 2, max: 10 })).rejects.toThrow(/has 2 records, none left after offset 2/);
    await expect(loadEvalPrompts({ file: path.join(tmp, 'nope.json'), offset: 0, max: 1 })).rejects.toThrow(
      /evaluation\.prompts\.file: cannot read .*nope\.json \(ENOENT\)/,
    );
  });
});

describe('loadEvalRanked', () => {
  it('takes a slice of a ranked JSONL (the demo holds out the sets after the first 8)', async () => {
    const seed = path.resolve(__dirname, '../../seed/ranked.jsonl');
    const sets = await loadEvalRanked({ ranked: seed, lang: 'en', offset: 8, max: 100 });
    expect(sets.length).toBe(12);
    expect(sets[0]!.id).toBe('rank-09');
    expect(sets.every((s) => s.replies.length >= 2)).toBe(true);
  });

  it.skipIf(!fs.existsSync(oasst))('imports human-ranked OASST2 reply sets (../shared/data)', async () => {
    const sets = await loadEvalRanked({ oasst, lang: 'en', offset: 0, max: 20 });
    expect(sets.length).toBe(20);
    for (const s of sets) {
      expect(s.replies.map((r) => r.rank)).toEqual(s.replies.map((_, k) => k));
      expect(s.id).toMatch(/^oasst-/);
    }
  });

  it('names the line of a bad ranked set', async () => {
    const file = write('r.jsonl', '{"id": "x", "prompt": "p", "replies": [{"text": "a", "rank": 0}]}\n');
    await expect(loadEvalRanked({ ranked: file, lang: 'en', offset: 0, max: 5 })).rejects.toThrow(/r\.jsonl:1: .*replies.*at least 2/);
  });
});
