import { describe, expect, it } from 'vitest';
import { buildEftExamples, downsample, EftJudgmentInput, rankingAgrees } from '../../core/eft';
import { judgePrompt } from '../../core/rubric';
import { RankedSet, SftExample } from '../../core/schemas';

describe('rankingAgrees', () => {
  it('agrees when every better-ranked reply scores strictly higher', () => {
    expect(rankingAgrees([0, 1, 2], [5, 3, 1])).toBe(true);
    expect(rankingAgrees([2, 0, 1], [1, 4, 2.5])).toBe(true);
  });

  it('disagrees when any pair is inverted', () => {
    expect(rankingAgrees([0, 1, 2], [5, 1, 3])).toBe(false);
    expect(rankingAgrees([0, 1], [2, 4])).toBe(false);
  });

  it('disagrees on a tie between differently ranked replies', () => {
    expect(rankingAgrees([0, 1], [4, 4])).toBe(false);
    expect(rankingAgrees([0, 1, 2], [5, 3, 3])).toBe(false);
  });

  it('puts no constraint between replies of equal human rank', () => {
    expect(rankingAgrees([0, 1, 1], [5, 2, 3])).toBe(true);
  });

  it('refuses ranks and scores of different lengths', () => {
    expect(() => rankingAgrees([0, 1], [1])).toThrow(/2 ranks but 1 scores/);
  });
});

describe('buildEftExamples', () => {
  const set: RankedSet = {
    id: 'set-1',
    prompt: 'What is the boiling point of water at sea level?',
    replies: [
      { text: 'It is 100 °C (212 °F) at sea level.', rank: 0 },
      { text: 'Water boils when it is hot.', rank: 1 },
    ],
  };
  const j = (replyIndex: number, sample: number, score: number | null, setId = 'set-1'): EftJudgmentInput => ({
    setId,
    replyIndex,
    sample,
    text: score === null ? 'Unclear.' : `Judgment ${replyIndex}/${sample}.\nScore: ${score}`,
    score,
  });

  it('emits one example per reply, judge prompt → judgment text, for an agreeing sample', () => {
    const { examples, stats } = buildEftExamples([set], [j(0, 0, 5), j(1, 0, 2)]);
    expect(examples).toHaveLength(2);
    for (const e of examples) expect(SftExample.parse(e)).toEqual(e);
    expect(examples.map((e) => [e.prompt, e.completion, e.kind])).toEqual([
      [judgePrompt(set.prompt, set.replies[0]!.text), 'Judgment 0/0.\nScore: 5', 'eft'],
      [judgePrompt(set.prompt, set.replies[1]!.text), 'Judgment 1/0.\nScore: 2', 'eft'],
    ]);
    expect(stats).toMatchObject({ sets: 1, judged: 1, complete: 1, agreeing: 1, examples: 2, setsWithoutExample: 0 });
  });

  it('keeps only the samples whose ranking agrees, pairing the s-th judgment of each reply', () => {
    const judgments = [j(0, 0, 2), j(1, 0, 4), j(0, 1, 4), j(1, 1, 3), j(0, 2, 3), j(1, 2, 3)];
    const { examples, stats } = buildEftExamples([set], judgments);
    expect(examples.map((e) => e.completion)).toEqual(['Judgment 0/1.\nScore: 4', 'Judgment 1/1.\nScore: 3']);
    expect(stats).toMatchObject({ judged: 3, agreeing: 1, disagreeing: 2 });
  });

  it('skips a sample where any judgment failed to parse, and counts it', () => {
    const { examples, stats } = buildEftExamples([set], [j(0, 0, 5), j(1, 0, null)]);
    expect(examples).toEqual([]);
    expect(stats).toMatchObject({ parseFailures: 1, agreeing: 0, setsWithoutExample: 1 });
  });

  it('skips a sample missing a reply', () => {
    const { examples, stats } = buildEftExamples([set], [j(0, 0, 5)]);
    expect(examples).toEqual([]);
    expect(stats).toMatchObject({ judged: 1, complete: 0 });
  });

  it('deduplicates identical (prompt, judgment) examples across samples', () => {
    const same = (replyIndex: number, sample: number, score: number): EftJudgmentInput => ({
      setId: 'set-1',
      replyIndex,
      sample,
      text: `Same text ${replyIndex}.\nScore: ${score}`,
      score,
    });
    const { examples, stats } = buildEftExamples([set], [same(0, 0, 5), same(1, 0, 1), same(0, 1, 5), same(1, 1, 1)]);
    expect(examples).toHaveLength(2);
    expect(stats.duplicates).toBe(2);
    expect(new Set(examples.map((e) => e.id)).size).toBe(2);
  });

  it('ignores and counts judgments of unknown sets or replies', () => {
    const { stats } = buildEftExamples([set], [j(0, 0, 5), j(1, 0, 1), j(0, 0, 5, 'nope'), j(7, 0, 3)]);
    expect(stats).toMatchObject({ orphanJudgments: 2, examples: 2 });
  });

  it('uses the human ranks, not the reply order', () => {
    const reordered: RankedSet = { ...set, replies: [set.replies[1]!, set.replies[0]!].map((r, k) => ({ ...r, rank: 1 - k })) };
    expect(buildEftExamples([reordered], [j(0, 0, 1), j(1, 0, 5)]).stats.agreeing).toBe(1);
  });

  describe('downsampling the over-represented score (eft.downsampleScore)', () => {
    // six sets of two replies; the better reply always scores 4, the worse 1, 2 or 3
    const sets: RankedSet[] = Array.from({ length: 6 }, (_, k) => ({ ...set, id: `s${k}`, prompt: `Question ${k}?` }));
    const worse = [1, 2, 3, 1, 2, 1];
    const judgments = sets.flatMap((s, k) => [j(0, 0, 4, s.id), j(1, 0, worse[k]!, s.id)]);
    const scoreOfText = (e: SftExample) => Number(/Score: (\d)/.exec(e.completion)![1]);

    it('cuts score-4 examples to the count of the most frequent other score, and says how many it dropped', () => {
      const { examples, stats } = buildEftExamples(sets, judgments, { downsampleScore: 4 });
      const counts = new Map<number, number>();
      for (const e of examples) counts.set(scoreOfText(e), (counts.get(scoreOfText(e)) ?? 0) + 1);
      expect(Object.fromEntries(counts)).toEqual({ 1: 3, 2: 2, 3: 1, 4: 3 });
      expect(stats).toMatchObject({ downsampled: 3, examples: 9, agreeing: 6 });
    });

    it('keeps the same examples whatever the order of the judgments', () => {
      const a = buildEftExamples(sets, judgments, { downsampleScore: 4 })
        .examples.map((e) => e.id)
        .sort();
      const b = buildEftExamples([...sets].reverse(), [...judgments].reverse(), { downsampleScore: 4 })
        .examples.map((e) => e.id)
        .sort();
      expect(a).toEqual(b);
    });

    it('drops nothing when off, when the score is not over-represented, or when it is the only score', () => {
      expect(buildEftExamples(sets, judgments, { downsampleScore: null }).stats).toMatchObject({ downsampled: 0, examples: 12 });
      expect(buildEftExamples(sets, judgments, { downsampleScore: 1 }).stats).toMatchObject({ downsampled: 0, examples: 12 });
      expect(downsample([{ id: 'a', prompt: 'p', completion: 'c', kind: 'eft' }], new Map([['a', 4]]), 4)).toHaveLength(1);
    });
  });
});
