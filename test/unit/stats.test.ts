import { describe, expect, it } from 'vitest';
import type { Candidate, Judgment } from '../../core/schemas';
import {
  JudgmentStageStats,
  PairStageStats,
  PromptStageStats,
  histogram,
  IterationSummary,
  mean,
  median,
  renderIterationSummaryMarkdown,
  CandidateSummary,
  JudgmentSummary,
  summarizeCandidates,
  summarizeJudgments,
} from '../../core/stats';

describe('mean and median', () => {
  it('compute the usual values', () => {
    expect(mean([1, 2, 3, 6])).toBe(3);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('are null for no values', () => {
    expect(mean([])).toBeNull();
    expect(median([])).toBeNull();
  });
});

describe('histogram', () => {
  it('puts 0-5 scores in whole-point bins by rounding down, 5 in its own bin, all bins present', () => {
    expect(histogram([0, 0.5, 3, 3.9, 4, 4.67, 5, 5])).toEqual({ '0': 2, '1': 0, '2': 0, '3': 2, '4': 2, '5': 2 });
    expect(histogram([])).toEqual({ '0': 0, '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 });
  });

  it('supports half-point bins', () => {
    const h = histogram([0.4, 3.5, 3.66, 5], 0.5);
    expect(Object.keys(h)).toHaveLength(11);
    expect(h).toMatchObject({ '0': 1, '3.5': 2, '5': 1, '4.5': 0 });
  });

  it('refuses a score outside 0..5', () => {
    expect(() => histogram([6])).toThrow(/outside 0\.\.5/);
  });
});

const summary: IterationSummary = {
  evaluation: null,
  run: 'demo',
  iteration: 1,
  modelIn: 'M1',
  modelOut: 'M2',
  prompts: { requested: 100, generated: 140, kept: 100, dropped: { too_short: 12, similar_to_existing: 28 } },
  candidates: { count: 400, meanTokens: 211.5, medianTokens: 198, meanChars: 903.25 },
  judge: {
    judgments: 1200,
    parsed: 1150,
    parseRate: 1150 / 1200,
    histogram: { '0': 10, '1': 40, '2': 100, '3': 300, '4': 600, '5': 100 },
    meanScore: 3.4,
  },
  pairs: {
    kept: 80,
    dropped: { tie: 15, too_few_scored: 5 },
    meanChosenScore: 4.6,
    meanRejectedScore: 2.1,
    meanChosenChars: 1000,
    meanRejectedChars: 800,
  },
  dpo: { loss: 0.61, rewardAccuracy: 0.7, rewardMargin: 0.35, steps: 5 },
  timings: { prompts: 120.5, candidates: 300, judge: 250, pairs: 1, dpo: 600 },
  skipped: {},
};

describe('IterationSummary', () => {
  it('accepts a complete summary and one without training results', () => {
    expect(IterationSummary.parse(summary)).toEqual(summary);
    expect(IterationSummary.parse({ ...summary, modelOut: null, dpo: null }).dpo).toBeNull();
  });

  it('rejects a negative count, naming the field', () => {
    const r = IterationSummary.safeParse({ ...summary, pairs: { ...summary.pairs, kept: -1 } });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['pairs', 'kept']);
  });
});

describe('renderIterationSummaryMarkdown', () => {
  const md = renderIterationSummaryMarkdown(summary);

  it('has a title naming run and iteration, and a section per stage', () => {
    expect(md.startsWith('# Run `demo`, iteration 1\n')).toBe(true);
    for (const section of ['## Prompts', '## Candidates', '## Judge', '## Preference pairs', '## DPO', '## Timings']) {
      expect(md).toContain(section);
    }
    expect(md).toContain('`M1` → `M2`');
  });

  it('shows counts, drop reasons, rates and the score histogram in tables', () => {
    expect(md).toContain('| dropped: similar_to_existing | 28 |');
    expect(md).toContain('| parse rate | 95.8% |');
    expect(md).toContain('| score | 0 | 1 | 2 | 3 | 4 | 5 |');
    expect(md).toContain('| judgments | 10 | 40 | 100 | 300 | 600 | 100 |');
    expect(md).toContain('| mean score | 4.60 | 2.10 |');
    expect(md).toContain('| reward accuracy | 70.0% |');
  });

  it('lists skipped requests by reason, and has no such section when nothing was skipped', () => {
    expect(md).not.toContain('## Skipped');
    const withSkips = renderIterationSummaryMarkdown({
      ...summary,
      skipped: { 'prompts over the context': 3, 'empty candidates (not judged)': 2 },
    });
    expect(withSkips).toContain('## Skipped');
    expect(withSkips).toContain('| prompts over the context | 3 |');
    expect(withSkips).toContain('| empty candidates (not judged) | 2 |');
  });

  it('says so when there are no training results, and shows missing numbers as a dash', () => {
    const empty = renderIterationSummaryMarkdown({
      ...summary,
      modelOut: null,
      dpo: null,
      candidates: { count: 0, meanTokens: null, medianTokens: null, meanChars: null },
    });
    expect(empty).toContain('No training results.');
    expect(empty).toContain('(not trained yet)');
    expect(empty).toContain('| mean tokens | – |');
  });
});

describe('summarizeCandidates and summarizeJudgments', () => {
  it('compute the candidate and judge sections of the summary', () => {
    const c = (tokens: number, text: string): Candidate => ({
      id: text,
      promptId: 'p',
      prompt: 'p',
      index: 0,
      text,
      tokens,
      finishReason: 'stop',
    });
    expect(summarizeCandidates([c(10, 'ab'), c(30, 'abcd'), c(20, 'abc')])).toEqual({
      count: 3,
      meanTokens: 20,
      medianTokens: 20,
      meanChars: 3,
    });
    const j = (score: number | null): Judgment => ({ id: String(score), candidateId: 'c', promptId: 'p', sample: 0, text: '', score });
    expect(summarizeJudgments([j(4), j(null), j(3.5), j(5)])).toEqual({
      judgments: 4,
      parsed: 3,
      parseRate: 0.75,
      histogram: { '0': 0, '1': 0, '2': 0, '3': 1, '4': 1, '5': 1 },
      meanScore: 12.5 / 3,
    });
  });
});

describe('CandidateSummary and JudgmentSummary (batch by batch)', () => {
  it('give what summarizeCandidates and summarizeJudgments give on the whole stage', () => {
    const cs: Candidate[] = Array.from({ length: 101 }, (_, i) => ({
      id: `c${i}`,
      promptId: `p${i >> 2}`,
      prompt: 'p',
      index: i % 4,
      text: 'x'.repeat((i * 37) % 53),
      tokens: (i * 7919) % 97,
      finishReason: 'stop',
    }));
    const js: Judgment[] = Array.from({ length: 303 }, (_, i) => ({
      id: `j${i}`,
      candidateId: `c${i % 101}`,
      promptId: 'p',
      sample: 0,
      text: '',
      score: i % 7 === 0 ? null : ((i * 13) % 11) / 2.2,
    }));
    const c = new CandidateSummary();
    const j = new JudgmentSummary();
    for (let i = 0; i < cs.length; i += 10) c.add(cs.slice(i, i + 10));
    for (let i = 0; i < js.length; i += 17) j.add(js.slice(i, i + 17));
    expect(c.summary()).toEqual(summarizeCandidates(cs));
    expect(j.summary()).toEqual(summarizeJudgments(js));
    expect(new CandidateSummary().summary()).toEqual(summarizeCandidates([]));
    expect(new JudgmentSummary().summary()).toEqual(summarizeJudgments([]));
  });
});

describe("stage statistics (a manifest's stats, parsed where read)", () => {
  it('a count a stage published before it existed, or not as a number, reads as 0; unknown fields are kept', () => {
    const parsed = JudgmentStageStats.parse({
      judgments: 12,
      parsed: 10,
      parseRate: 10 / 12,
      parseFailures: { 'no score': 2 },
      tokens: 'many',
      fleetParts: 3,
    });
    expect(parsed).toMatchObject({
      judgments: 12,
      parsed: 10,
      parseFailures: { 'no score': 2 },
      tokens: 0,
      emptyCandidates: 0,
      skipped: 0,
      fleetParts: 3,
    });
  });

  it('per-reason tallies default to none', () => {
    expect(PairStageStats.parse({ prompts: 4, pairs: 3 }).dropped).toEqual({});
    expect(PromptStageStats.parse({ requested: 8, generated: 20, filters: { kept: 5, 'too short': 2 } })).toMatchObject({
      requested: 8,
      generated: 20,
      kept: 0,
      filters: { kept: 5, 'too short': 2 },
    });
  });
});
