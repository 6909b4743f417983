import { describe, expect, it } from 'vitest';
import { buildSelfInstructRequest, chooseDemonstrations, mulberry32, parseGeneratedInstructions } from '../../core/selfInstruct';

const DEMOS = Array.from({ length: 8 }, (_, k) => `Demonstration task number ${k + 1}.`);

describe('buildSelfInstructRequest', () => {
  const request = buildSelfInstructRequest(DEMOS);

  it('numbers the demonstrations Task 1 … Task 8 in order', () => {
    const labels = [...request.matchAll(/^Task (\d+): (.*)$/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(labels).toEqual(DEMOS.map((d, k) => [k + 1, d]));
  });

  it('asks for a new, different task and ends with the "Task 9:" cue', () => {
    expect(request).toMatch(/new task/i);
    expect(request).toMatch(/different/);
    expect(request.endsWith('\n\nTask 9:')).toBe(true);
  });

  it('keeps a multi-line demonstration (instruction plus input) intact', () => {
    const r = buildSelfInstructRequest(['Sort these numbers.\n\n3, 1, 2']);
    expect(r).toContain('Task 1: Sort these numbers.\n\n3, 1, 2\n\nTask 2:');
  });

  it('refuses an empty demonstration list', () => {
    expect(() => buildSelfInstructRequest([])).toThrow(/demonstration/);
  });
});

describe('parseGeneratedInstructions', () => {
  const cases: [string, string, string[]][] = [
    [
      'a bare continuation of the cue',
      ' Suggest five names for a golden retriever puppy.',
      ['Suggest five names for a golden retriever puppy.'],
    ],
    ['a repeated label', 'Task 9: Explain why the sky is blue to a five-year-old.', ['Explain why the sky is blue to a five-year-old.']],
    [
      'a continuation followed by more numbered tasks',
      'Write a limerick about a forgetful wizard.\n\nTask 10: List three uses of baking soda.\nTask 11: Translate "good morning" into Italian.',
      ['Write a limerick about a forgetful wizard.', 'List three uses of baking soda.', 'Translate "good morning" into Italian.'],
    ],
    [
      'a chat preamble before the label',
      'Sure! Here is a new task:\n\nTask 9: Plan a three-day trip to Lisbon on a small budget.',
      ['Plan a three-day trip to Lisbon on a small budget.'],
    ],
    [
      'a chat preamble without a label',
      "Here's a new task for you:\nDescribe the water cycle in simple terms.",
      ['Describe the water cycle in simple terms.'],
    ],
    ['a bold label', '**Task 9:** Compare renting and buying a home.', ['Compare renting and buying a home.']],
    ['a bold label wrapping the whole task', '**Task 9: Compare renting and buying a home.**', ['Compare renting and buying a home.']],
    ['a quoted task', 'Task 9: "Recommend a board game for four players."', ['Recommend a board game for four players.']],
    ['curly quotes', '“Name the planets in order from the sun.”', ['Name the planets in order from the sun.']],
    ['an answer the model wrote to its own task', 'Task 9: Give a synonym for "happy".\nAnswer: Joyful.', ['Give a synonym for "happy".']],
    [
      'a multi-line task with its input',
      'Task 9: Classify the sentiment of this review.\n\nThe food was cold and the waiter was rude.\nTask 10: Suggest a title for a mystery novel.',
      ['Classify the sentiment of this review.\n\nThe food was cold and the waiter was rude.', 'Suggest a title for a mystery novel.'],
    ],
    [
      'a markdown heading label on its own line',
      '### Task 9\nExplain compound interest.\n\n### Task 10\nName a prime number above 100.',
      ['Explain compound interest.', 'Name a prime number above 100.'],
    ],
    ['a label with a period', 'Task 9. Explain compound interest with an example.', ['Explain compound interest with an example.']],
    ['lower-case label and no space', 'task 9:Recommend three podcasts about history.', ['Recommend three podcasts about history.']],
    ['an empty generation', '', []],
    ['only whitespace after labels', 'Task 9:   \nTask 10:\n', []],
    ['a list marker after the label', 'Task 9: 1. Name a famous bridge in Europe.', ['Name a famous bridge in Europe.']],
  ];
  for (const [name, text, expected] of cases) {
    it(`extracts ${expected.length} instruction(s) from ${name}`, () => {
      expect(parseGeneratedInstructions(text)).toEqual(expected);
    });
  }

  it('drops the last task when the generation was cut off by the token limit', () => {
    const text = 'Write a poem about rain.\nTask 10: Describe how a refrigerator keeps';
    expect(parseGeneratedInstructions(text, { truncated: true })).toEqual(['Write a poem about rain.']);
    expect(parseGeneratedInstructions(text)).toHaveLength(2);
  });
});

describe('chooseDemonstrations', () => {
  const seed = Array.from({ length: 20 }, (_, k) => ({ id: `s${k}`, prompt: `seed ${k}` }));
  const generated = Array.from({ length: 10 }, (_, k) => ({ id: `g${k}`, prompt: `generated ${k}` }));
  const count = (xs: { id: string }[], prefix: string) => xs.filter((x) => x.id.startsWith(prefix)).length;

  it('takes 6 seed and 2 generated prompts, all distinct', () => {
    const demos = chooseDemonstrations(seed, generated, 6, 2, mulberry32(1));
    expect(demos).toHaveLength(8);
    expect(count(demos, 's')).toBe(6);
    expect(count(demos, 'g')).toBe(2);
    expect(new Set(demos.map((d) => d.id)).size).toBe(8);
  });

  it('fills from the seed set when too few generated prompts exist', () => {
    expect(count(chooseDemonstrations(seed, [], 6, 2, mulberry32(1)), 's')).toBe(8);
    const one = chooseDemonstrations(seed, generated.slice(0, 1), 6, 2, mulberry32(1));
    expect([one.length, count(one, 's'), count(one, 'g')]).toEqual([8, 7, 1]);
  });

  it('returns fewer only when both sets together are too small', () => {
    const demos = chooseDemonstrations(seed.slice(0, 3), generated.slice(0, 1), 6, 2, mulberry32(1));
    expect(demos).toHaveLength(4);
  });

  it('is deterministic for a seed, and varies with it', () => {
    const a = chooseDemonstrations(seed, generated, 6, 2, mulberry32(42)).map((d) => d.id);
    const b = chooseDemonstrations(seed, generated, 6, 2, mulberry32(42)).map((d) => d.id);
    const c = chooseDemonstrations(seed, generated, 6, 2, mulberry32(43)).map((d) => d.id);
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('shuffles: generated prompts do not always come last', () => {
    const positions = new Set<number>();
    for (let s = 0; s < 50; s++) {
      chooseDemonstrations(seed, generated, 6, 2, mulberry32(s)).forEach((d, k) => d.id.startsWith('g') && positions.add(k));
    }
    expect(positions.size).toBeGreaterThan(4);
  });
});

describe('mulberry32', () => {
  it('gives the same stream for the same seed, in [0, 1)', () => {
    const a = mulberry32(123);
    const b = mulberry32(123);
    for (let k = 0; k < 1000; k++) {
      const x = a();
      expect(x).toBe(b());
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
  });

  it('is roughly uniform', () => {
    const rng = mulberry32(9);
    const n = 20_000;
    let sum = 0;
    for (let k = 0; k < n; k++) sum += rng();
    expect(sum / n).toBeCloseTo(0.5, 1);
  });
});
