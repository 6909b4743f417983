import { describe, expect, it } from 'vitest';
import { recordId } from '../../core/ids';
import { PairSelector, PairSummaryAccumulator, scoreCandidates, selectPreferencePairs, summarizePairs } from '../../core/pairs';
import { mulberry32 } from '../../core/selfInstruct';
import { Candidate, Judgment, PreferencePair } from '../../core/schemas';

function candidate(promptId: string, index: number, text = `reply ${index} to ${promptId}`, tokens = 10): Candidate {
  return { id: `${promptId}-c${index}`, promptId, prompt: `prompt ${promptId}`, index, text, tokens, finishReason: 'stop' };
}

/** Judgments for a candidate: one per score, null for a parse failure. */
function judged(c: Candidate, ...scores: (number | null)[]): Judgment[] {
  return scores.map((score, sample) => ({
    id: `${c.id}-j${sample}`,
    candidateId: c.id,
    promptId: c.promptId,
    sample,
    text: score === null ? 'I cannot decide.' : `Fine.\nScore: ${score}`,
    score,
    ...(score === null ? { parseError: 'no score found' } : {}),
  }));
}

describe('scoreCandidates', () => {
  it('averages the parsed scores and leaves parse failures out (not counted as 0)', () => {
    const c = candidate('p', 0);
    expect(scoreCandidates(judged(c, 4, null, 2)).get(c.id)).toEqual({ mean: 3, valid: 2, total: 3 });
  });

  it('gives a null mean when no judgment parsed', () => {
    const c = candidate('p', 0);
    expect(scoreCandidates(judged(c, null, null)).get(c.id)).toEqual({ mean: null, valid: 0, total: 2 });
  });
});

describe('selectPreferencePairs', () => {
  it('chooses the highest mean and rejects the lowest mean', () => {
    const cs = [candidate('p', 0), candidate('p', 1), candidate('p', 2), candidate('p', 3)];
    const js = [...judged(cs[0]!, 3, 3, 3), ...judged(cs[1]!, 5, 4, 5), ...judged(cs[2]!, 1, 2, 1), ...judged(cs[3]!, 4, 4, 3)];
    const { pairs, drops } = selectPreferencePairs(cs, js);
    expect(pairs).toHaveLength(1);
    const pair = pairs[0]!;
    expect(PreferencePair.parse(pair)).toEqual(pair);
    expect(pair).toMatchObject({
      id: recordId('pair', 'p'),
      promptId: 'p',
      prompt: 'prompt p',
      chosenId: 'p-c1',
      rejectedId: 'p-c2',
      chosen: 'reply 1 to p',
      rejected: 'reply 2 to p',
    });
    expect(pair.chosenScore).toBeCloseTo(14 / 3, 12);
    expect(pair.rejectedScore).toBeCloseTo(4 / 3, 12);
    expect(drops).toEqual({ tie: 0, too_few_scored: 0, identical_text: 0 });
  });

  it('drops a prompt whose candidates all have the same mean as a tie', () => {
    const cs = [candidate('p', 0), candidate('p', 1), candidate('p', 2)];
    const js = [...judged(cs[0]!, 4, 4), ...judged(cs[1]!, 5, 3), ...judged(cs[2]!, 4)];
    const { pairs, drops } = selectPreferencePairs(cs, js);
    expect(pairs).toEqual([]);
    expect(drops.tie).toBe(1);
  });

  it('drops a prompt with fewer than 2 scored candidates as too_few_scored', () => {
    const cs = [candidate('p', 0), candidate('p', 1), candidate('p', 2)];
    const js = [...judged(cs[0]!, 5), ...judged(cs[1]!, null, null)]; // c2 never judged
    const { pairs, drops } = selectPreferencePairs(cs, js);
    expect(pairs).toEqual([]);
    expect(drops.too_few_scored).toBe(1);
  });

  it('excludes unparsed judgments instead of scoring them 0: a candidate with only failures is never rejected', () => {
    const cs = [candidate('p', 0), candidate('p', 1), candidate('p', 2)];
    const js = [...judged(cs[0]!, 4), ...judged(cs[1]!, null, null, null), ...judged(cs[2]!, 2, null)];
    const { pairs } = selectPreferencePairs(cs, js);
    expect(pairs[0]).toMatchObject({ chosenId: 'p-c0', rejectedId: 'p-c2', chosenScore: 4, rejectedScore: 2 });
  });

  it('drops the pair when chosen and rejected have identical text', () => {
    const cs = [candidate('p', 0, 'Same answer.'), candidate('p', 1, 'Same answer. ')];
    const { pairs, drops } = selectPreferencePairs(cs, [...judged(cs[0]!, 5), ...judged(cs[1]!, 2)]);
    expect(pairs).toEqual([]);
    expect(drops.identical_text).toBe(1);
  });

  it('breaks ties at the top and bottom by candidate index, whatever the input order', () => {
    const cs = [candidate('p', 0), candidate('p', 1), candidate('p', 2), candidate('p', 3)];
    const js = [...judged(cs[0]!, 2), ...judged(cs[1]!, 5), ...judged(cs[2]!, 2), ...judged(cs[3]!, 5)];
    const forward = selectPreferencePairs(cs, js).pairs;
    const backward = selectPreferencePairs([...cs].reverse(), [...js].reverse()).pairs;
    expect(forward[0]).toMatchObject({ chosenId: 'p-c1', rejectedId: 'p-c0' });
    expect(backward).toEqual(forward);
  });

  it('never pairs a candidate with itself and gives each prompt at most one pair', () => {
    const cs = ['a', 'b', 'c'].flatMap((p) => [0, 1, 2, 3].map((k) => candidate(p, k)));
    const js = cs.flatMap((c, k) => judged(c, (k * 7) % 6 === 5 ? null : (k * 7) % 6, (k * 3) % 6));
    const { pairs } = selectPreferencePairs(cs, js);
    expect(pairs.length).toBeGreaterThan(0);
    for (const p of pairs) expect(p.chosenId).not.toBe(p.rejectedId);
    expect(new Set(pairs.map((p) => p.promptId)).size).toBe(pairs.length);
    for (const p of pairs) expect(p.chosenScore).toBeGreaterThan(p.rejectedScore);
  });

  it('is deterministic: the same records give the same pairs', () => {
    const cs = ['a', 'b'].flatMap((p) => [0, 1, 2, 3].map((k) => candidate(p, k)));
    const js = cs.flatMap((c, k) => judged(c, k % 5, (k + 2) % 5));
    expect(selectPreferencePairs(cs, js)).toEqual(selectPreferencePairs(cs, js));
  });

  it('counts judgments of unknown candidates without using them', () => {
    const cs = [candidate('p', 0), candidate('p', 1)];
    const stray = judged(candidate('q', 0), 5);
    const result = selectPreferencePairs(cs, [...judged(cs[0]!, 1), ...judged(cs[1]!, 3), ...stray]);
    expect(result.orphanJudgments).toBe(1);
    expect(result.pairs).toHaveLength(1);
  });

  it('with length control, chooses the shortest near-top reply and rejects the longest near-bottom one', () => {
    const cs = [
      candidate('p', 0, 'long excellent answer', 300),
      candidate('p', 1, 'short very good answer', 50),
      candidate('p', 2, 'short bad answer', 40),
      candidate('p', 3, 'long bad answer', 400),
    ];
    const js = [...judged(cs[0]!, 5), ...judged(cs[1]!, 4.5), ...judged(cs[2]!, 1), ...judged(cs[3]!, 1.5)];
    expect(selectPreferencePairs(cs, js).pairs[0]).toMatchObject({ chosenId: 'p-c0', rejectedId: 'p-c2' });
    // ρ = 0.2: tiers are within 0.8 of max (≥ 4.2) and of min (≤ 1.8)
    expect(selectPreferencePairs(cs, js, { lengthControlRho: 0.2 }).pairs[0]).toMatchObject({ chosenId: 'p-c1', rejectedId: 'p-c3' });
  });

  it('rejects a length-control ρ outside [0, 1]', () => {
    expect(() => selectPreferencePairs([], [], { lengthControlRho: 2 })).toThrow(/lengthControlRho/);
  });
});

describe('summarizePairs', () => {
  it('averages chosen and rejected scores and lengths, null for no pairs', () => {
    const pair = (chosen: string, rejected: string, cs: number, rs: number): PreferencePair => ({
      id: chosen,
      promptId: chosen,
      prompt: 'p',
      chosen,
      rejected,
      chosenId: 'a',
      rejectedId: 'b',
      chosenScore: cs,
      rejectedScore: rs,
    });
    expect(summarizePairs([pair('aaaa', 'bb', 5, 1), pair('cc', 'dddd', 4, 2)])).toEqual({
      kept: 2,
      meanChosenScore: 4.5,
      meanRejectedScore: 1.5,
      meanChosenChars: 3,
      meanRejectedChars: 3,
    });
    expect(summarizePairs([])).toEqual({
      kept: 0,
      meanChosenScore: null,
      meanRejectedScore: null,
      meanChosenChars: null,
      meanRejectedChars: null,
    });
  });
});

describe('PairSelector (streamed pair selection)', () => {
  /** A generated candidates and judgments stage: prompts interleaved, repeats, ties, parse failures, equal texts. */
  function generatedStage(seed: number): { candidates: Candidate[]; judgments: Judgment[] } {
    const rng = mulberry32(seed);
    const pick = (n: number): number => Math.floor(rng() * n);
    const candidates: Candidate[] = [];
    const judgments: Judgment[] = [];
    for (let p = 0; p < 300; p++) {
      const n = 1 + pick(5);
      for (let i = 0; i < n; i++) {
        const text = pick(6) === 0 ? 'same text' : `reply ${i} to p${p} ${'x'.repeat(pick(40))}`;
        const c = candidate(`p${p}`, i, text, 1 + pick(30));
        candidates.push(c);
        if (pick(10) === 0) candidates.push(c); // a repeated record
        const scores = Array.from({ length: 3 }, () => (pick(8) === 0 ? null : pick(pick(3) === 0 ? 2 : 6)));
        judgments.push(...judged(c, ...scores));
      }
    }
    // prompts' candidates interleaved, judgments shuffled, a judgment of no candidate
    for (let i = candidates.length - 1; i > 0; i -= 1 + pick(3)) {
      const j = pick(i + 1);
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
    }
    for (let i = judgments.length - 1; i > 0; i--) {
      const j = pick(i + 1);
      [judgments[i], judgments[j]] = [judgments[j]!, judgments[i]!];
    }
    judgments.push(...judged(candidate('orphan', 0), 5));
    return { candidates, judgments };
  }

  function batches<T>(items: readonly T[], rng: () => number): T[][] {
    const out: T[][] = [];
    for (let i = 0; i < items.length;) {
      const n = 1 + Math.floor(rng() * 97);
      out.push(items.slice(i, i + n));
      i += n;
    }
    return out;
  }

  for (const rho of [0, 0.25, 1]) {
    it(`gives the same pairs and drops as selectPreferencePairs (rho ${rho})`, () => {
      for (const seed of [1, 2, 3]) {
        const { candidates, judgments } = generatedStage(seed);
        const expected = selectPreferencePairs(candidates, judgments, { lengthControlRho: rho });
        const rng = mulberry32(seed + 100);
        const selector = new PairSelector({ lengthControlRho: rho });
        for (const b of batches(candidates, rng)) selector.addCandidates(b);
        for (const b of batches(judgments, rng)) selector.addJudgments(b);
        selector.choose();
        const pairs: PreferencePair[] = [];
        for (const b of batches(candidates, rng)) pairs.push(...selector.addTexts(b));
        selector.finish();
        expect(expected.pairs.length).toBeGreaterThan(50);
        expect(pairs).toEqual(expected.pairs);
        expect(selector.drops).toEqual(expected.drops);
        expect(selector.pairs).toBe(expected.pairs.length);
        expect(selector.prompts).toBe(new Set(candidates.map((c) => c.promptId)).size);
        const acc = new PairSummaryAccumulator();
        for (const b of batches(pairs, rng)) acc.add(b);
        expect(acc.summary()).toEqual(summarizePairs(expected.pairs));
      }
    });
  }

  it('fails when the second pass lacks a chosen candidate', () => {
    const cs = [candidate('p', 0), candidate('p', 1)];
    const selector = new PairSelector();
    selector.addCandidates(cs);
    selector.addJudgments([...judged(cs[0]!, 5), ...judged(cs[1]!, 1)]);
    selector.choose();
    expect(selector.addTexts([cs[0]!])).toEqual([]);
    expect(() => selector.finish()).toThrow(/lack candidate texts/);
  });
});
