import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordError } from '../../core/jsonl';
import { importOasstTrees, importSelfInstructSeeds, OasstMessage } from '../../core/oasst';
import { IftExample, RankedSet } from '../../core/schemas';

const DATA = path.resolve(__dirname, '../../../shared/data');
const OASST_SAMPLE = path.join(DATA, 'oasst2-trees-sample.jsonl');
const SEED_TASKS = path.join(DATA, 'self-instruct-seed-tasks.jsonl');
const hasOasst = existsSync(OASST_SAMPLE);
const hasSeeds = existsSync(SEED_TASKS);

let nextId = 0;
function message(role: OasstMessage['role'], text: string, extra: Partial<OasstMessage> = {}): OasstMessage {
  return {
    message_id: `m${nextId++}`,
    parent_id: null,
    text,
    role,
    lang: 'en',
    rank: null,
    deleted: false,
    review_result: true,
    synthetic: false,
    replies: [],
    ...extra,
  };
}
const reply = (text: string, rank: number | null, extra: Partial<OasstMessage> = {}) => message('assistant', text, { rank, ...extra });
const tree = (prompt: OasstMessage) => JSON.stringify({ message_tree_id: prompt.message_id, tree_state: 'ready_for_export', prompt });
const importOne = (prompt: OasstMessage, lang = 'en') => importOasstTrees(tree(prompt), 'trees.jsonl', { lang });

describe('importOasstTrees on the real OASST2 sample', () => {
  it.skipIf(!hasOasst)('imports English first turns: IFT from rank-0 replies, ranked sets that validate (needs ../shared/data)', () => {
    const text = readFileSync(OASST_SAMPLE, 'utf8');
    const { ift, ranked, stats } = importOasstTrees(text, OASST_SAMPLE, { lang: 'en' });
    expect(ift.length).toBeGreaterThan(0);
    expect(ranked.length).toBeGreaterThan(0);
    expect(stats.trees).toBe(text.trim().split('\n').length);
    expect(stats.skipped.other_lang).toBeGreaterThan(0);
    for (const e of ift) expect(IftExample.parse(e)).toEqual(e);
    for (const s of ranked) {
      expect(RankedSet.parse(s)).toEqual(s);
      expect(s.replies.map((r) => r.rank)).toEqual(s.replies.map((_, k) => k));
    }

    // Cross-check against the raw trees: only `en` roots, and the IFT response is the rank-0 reply.
    const roots = new Map<string, OasstMessage>(
      text
        .trim()
        .split('\n')
        .map((l) => {
          const t = JSON.parse(l) as { prompt: OasstMessage };
          return [`oasst-${t.prompt.message_id}`, t.prompt] as const;
        }),
    );
    for (const e of ift) {
      const root = roots.get(e.id)!;
      expect(root.lang).toBe('en');
      expect(e.prompt).toBe(root.text);
      expect(e.response).toBe(root.replies!.find((r) => r.rank === 0)!.text);
    }
    for (const s of ranked) expect(roots.get(s.id)!.lang).toBe('en');
  });

  it.skipIf(!hasOasst)('imports another language when asked (needs ../shared/data)', () => {
    const { ift, stats } = importOasstTrees(readFileSync(OASST_SAMPLE, 'utf8'), OASST_SAMPLE, { lang: 'es' });
    expect(ift.length).toBeGreaterThan(0);
    expect(stats.roots).toBeGreaterThan(0);
  });
});

describe('importOasstTrees on hand-made trees', () => {
  it('pairs the prompt with its rank-0 reply and renumbers the ranked replies in rank order', () => {
    const root = message('prompter', 'Name a prime number.', {
      replies: [reply('Nine.', 2), reply('Seven.', 0), reply('Unranked answer.', null), reply('Eleven, or 13.', 1)],
    });
    const { ift, ranked } = importOne(root);
    expect(ift).toEqual([{ id: `oasst-${root.message_id}`, prompt: 'Name a prime number.', response: 'Seven.', source: 'oasst' }]);
    expect(ranked[0]!.replies).toEqual([
      { text: 'Seven.', rank: 0 },
      { text: 'Eleven, or 13.', rank: 1 },
      { text: 'Nine.', rank: 2 },
    ]);
  });

  it('skips roots in another language, deleted, or failed in review', () => {
    const replies = [reply('A', 0), reply('B', 1)];
    expect(importOne(message('prompter', 'Hola', { lang: 'es', replies })).stats.skipped.other_lang).toBe(1);
    expect(importOne(message('prompter', 'Hi', { deleted: true, replies })).stats.skipped.root_deleted).toBe(1);
    expect(importOne(message('prompter', 'Hi', { review_result: false, replies })).stats.skipped.root_failed_review).toBe(1);
    const pending = importOne(message('prompter', 'Hi there', { review_result: null, replies }));
    expect(pending.ift).toHaveLength(1); // review not done yet is not a failure
  });

  it('makes no IFT example when the rank-0 reply is deleted, and renumbers what remains', () => {
    const root = message('prompter', 'Q', { replies: [reply('best', 0, { deleted: true }), reply('second', 1), reply('third', 2)] });
    const { ift, ranked, stats } = importOne(root);
    expect(ift).toEqual([]);
    expect(stats.skipped.no_rank0_reply).toBe(1);
    expect(ranked[0]!.replies).toEqual([
      { text: 'second', rank: 0 },
      { text: 'third', rank: 1 },
    ]);
  });

  it('makes no ranked set from fewer than two ranked replies, but still the IFT example', () => {
    const { ift, ranked, stats } = importOne(message('prompter', 'Q', { replies: [reply('only', 0), reply('unranked', null)] }));
    expect(ift).toHaveLength(1);
    expect(ranked).toEqual([]);
    expect(stats.skipped.fewer_than_2_ranked).toBe(1);
  });

  it('ignores replies in another language', () => {
    const { ift, ranked } = importOne(message('prompter', 'Q', { replies: [reply('Respuesta', 0, { lang: 'es' }), reply('Answer', 1)] }));
    expect(ift).toEqual([]);
    expect(ranked).toEqual([]);
  });

  it('keeps only the first turn: deeper messages are not used', () => {
    const deep = reply('Top answer', 0, { replies: [message('prompter', 'Follow-up?', { replies: [reply('Deep answer', 0)] })] });
    const { ift } = importOne(message('prompter', 'Q', { replies: [deep, reply('Other', 1)] }));
    expect(ift.map((e) => e.response)).toEqual(['Top answer']);
  });

  it("accepts the export's extra fields", () => {
    const root = { ...message('prompter', 'Q', { replies: [reply('A', 0), reply('B', 1)] }), emojis: { '+1': 2 }, labels: {} };
    expect(importOasstTrees(tree(root as OasstMessage), 't.jsonl', { lang: 'en' }).ift).toHaveLength(1);
  });

  it('reports a malformed tree with file, line and field', () => {
    const bad = { ...message('prompter', 'Q'), replies: [{ ...reply('A', 0), role: 'robot' }] };
    const text = `${tree(message('prompter', 'fine'))}\n${tree(bad as OasstMessage)}`;
    expect(() => importOasstTrees(text, 'trees.jsonl', { lang: 'en' })).toThrow(RecordError);
    expect(() => importOasstTrees(text, 'trees.jsonl', { lang: 'en' })).toThrow(
      /^trees\.jsonl:2: field "prompt\.replies\[0\]\.role": must be one of "prompter", "assistant"$/,
    );
  });
});

describe('importSelfInstructSeeds', () => {
  it.skipIf(!hasSeeds)('imports all 175 seed tasks as valid IFT examples (needs ../shared/data)', () => {
    const examples = importSelfInstructSeeds(readFileSync(SEED_TASKS, 'utf8'), SEED_TASKS);
    expect(examples).toHaveLength(175);
    for (const e of examples) expect(IftExample.parse(e)).toEqual(e);
    expect(new Set(examples.map((e) => e.id)).size).toBe(175);
    expect(examples[0]!.id).toBe('seed_task_0');
    expect(examples[1]!.prompt).toBe('What is the relation between the given pairs?\n\nNight : Day :: Right : Left');
  });

  it('appends the input after a blank line only when there is one, and numbers extra instances', () => {
    const line = JSON.stringify({
      name: 'capitals',
      instruction: 'Name the capital.',
      instances: [
        { input: '', output: 'Paris' },
        { input: 'Spain', output: 'Madrid' },
      ],
      is_classification: false,
    });
    expect(importSelfInstructSeeds(line, 'seeds.jsonl')).toEqual([
      { id: 'self-instruct-capitals', prompt: 'Name the capital.', response: 'Paris', source: 'self-instruct' },
      { id: 'self-instruct-capitals-1', prompt: 'Name the capital.\n\nSpain', response: 'Madrid', source: 'self-instruct' },
    ]);
  });

  it('rejects a task with an empty output, naming the field', () => {
    const line = JSON.stringify({ name: 'x', instruction: 'Do it.', instances: [{ input: '', output: '' }], is_classification: false });
    expect(() => importSelfInstructSeeds(line, 'seeds.jsonl')).toThrow('seeds.jsonl:1: field "instances[0].output": must not be empty');
  });
});
