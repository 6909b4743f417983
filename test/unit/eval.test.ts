import { describe, expect, it } from 'vitest';
import {
  averageRanks,
  decideGate,
  GATE_CHECKS,
  headToHead,
  judgeQuality,
  kendallTauB,
  pairwiseJudgePrompt,
  parsePairwiseVerdict,
  pearson,
  responseLengths,
  RewardWatchAccumulator,
  spearman,
  variance,
  type GateInput,
} from '../../core/eval';
import { GateConfig, type Candidate, type Judgment, type PreferencePair } from '../../core/schemas';
import { GateDecision, HeadToHead, JudgeQuality, ResponseLengths, RewardWatch } from '../../core/stats';

describe('variance', () => {
  it('is the population variance, null for no values', () => {
    // mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; 5 / 4
    expect(variance([1, 2, 3, 4])).toBe(1.25);
    expect(variance([7])).toBe(0);
    expect(variance([])).toBeNull();
  });
});

describe('pearson', () => {
  it('is 1 / -1 on exact lines', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBe(1);
    expect(pearson([1, 2, 3], [6, 4, 2])).toBe(-1);
  });

  it('measures linearity only', () => {
    // x mean 2, y = x² mean 14/3; dx = (-1, 0, 1), dy = (-11/3, -2/3, 13/3)
    // sxy = 11/3 + 13/3 = 8, sxx = 2, syy = (121 + 4 + 169) / 9 = 294/9; r = 8 / sqrt(588/9) = 24 / sqrt(588)
    expect(pearson([1, 2, 3], [1, 4, 9])).toBeCloseTo(24 / Math.sqrt(588), 12);
  });

  it('is null for fewer than two values or a constant side, and refuses unequal lengths', () => {
    expect(pearson([], [])).toBeNull();
    expect(pearson([1], [2])).toBeNull();
    expect(pearson([3, 3, 3], [1, 2, 3])).toBeNull();
    expect(pearson([1, 2, 3], [0.5, 0.5, 0.5])).toBeNull();
    expect(() => pearson([1, 2], [1])).toThrow(RangeError);
  });
});

describe('spearman', () => {
  it('averages the ranks of ties', () => {
    expect(averageRanks([10, 20, 20, 5])).toEqual([2, 3.5, 3.5, 1]);
  });

  it('matches 1 - 6Σd²/(n(n²-1)) without ties', () => {
    // ranks are the values; d = (0, 1, 1, 0), Σd² = 2; 1 - 12 / 60 = 0.8
    expect(spearman([1, 2, 3, 4], [1, 3, 2, 4])).toBeCloseTo(0.8, 12);
  });

  it('is 1 for any increasing relation, -1 for a decreasing one', () => {
    expect(spearman([1, 2, 3], [1, 4, 9])).toBe(1);
    expect(spearman([1, 2, 3], [30, 20, 10])).toBe(-1);
  });

  it('uses Pearson on average ranks when there are ties', () => {
    // x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4), both mean 2.5
    // dx = (-1.5, 0, 0, 1.5), dy = (-1.5, -0.5, 0.5, 1.5): sxy = 4.5, sxx = 4.5, syy = 5
    // rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    expect(spearman([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(Math.sqrt(0.9), 12);
  });

  it('is null for fewer than two values or a constant ranking', () => {
    expect(spearman([], [])).toBeNull();
    expect(spearman([4], [1])).toBeNull();
    expect(spearman([5, 5, 5], [0, 1, 2])).toBeNull();
    expect(() => spearman([1], [1, 2])).toThrow(RangeError);
  });
});

describe('kendallTauB', () => {
  it('is (C - D) / pairs without ties', () => {
    // 6 pairs; only (2nd, 3rd) is discordant (x 2<3, y 3>2): (5 - 1) / 6
    expect(kendallTauB([1, 2, 3, 4], [1, 3, 2, 4])).toBeCloseTo(2 / 3, 12);
  });

  it('corrects for ties on one side', () => {
    // pair (2nd, 3rd) tied in x only; the other 5 concordant: 5 / sqrt((6 - 1)(6 - 0))
    expect(kendallTauB([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(5 / Math.sqrt(30), 12);
  });

  it('corrects for pairs tied on both sides', () => {
    // (1st, 2nd) tied in both; the two others discordant: -2 / sqrt((3 - 1)(3 - 1)) = -1
    expect(kendallTauB([1, 1, 2], [3, 3, 1])).toBe(-1);
  });

  it('is null for fewer than two values or a constant ranking', () => {
    expect(kendallTauB([], [])).toBeNull();
    expect(kendallTauB([1], [1])).toBeNull();
    expect(kendallTauB([1, 2, 3], [2, 2, 2])).toBeNull();
    expect(() => kendallTauB([1, 2], [1, 2, 3])).toThrow(RangeError);
  });
});

describe('judgeQuality', () => {
  /*
   * Per set, scored replies only; "pairs" are those of different human rank (a lower rank is better).
   * s1 human (0,1,2) scores (5,3,4): pairs 0>1 ok, 0>2 ok, 1>2 miss (3 < 4) -> 3 pairs, 2 right, not exact.
   *    The 5 went to rank 0, the best: a hit. Scores ranks (3,1,2) vs preference (0,-1,-2) ranks (3,2,1):
   *    d = (0,-1,1), rho = 1 - 6*2/(3*8) = 0.5; tau: C = 2, D = 1 of 3 pairs -> 1/3.
   * s2 human (0,1,2,3) scores (4,4,null,2): scored r0 r1 r3. 0>1 miss (a score tie), 0>3 ok, 1>3 ok
   *    -> 3 pairs, 2 right, not exact. Score ranks (2.5,2.5,1), preference (0,-1,-3) ranks (3,2,1):
   *    dx = (.5,.5,-1), dy = (1,0,-1): sxy = 1.5, sxx = 1.5, syy = 2 -> rho = 1.5/sqrt(3) = sqrt(3)/2;
   *    tau: one pair tied in scores, 2 concordant -> 2/sqrt((3-1)*3) = 2/sqrt(6).
   * s3 human (0,1) scores (5,5), a constant ranking: 1 pair, a miss; not exact; two 5s, one at the best
   *    rank (hit), one not (miss); correlation undefined -> left out of the means.
   * s4 human (0,1,2) scores (null,1,null): one scored reply -> not counted (its 1 still in the histogram).
   * s5 human (1,0) scores (2,3.5): the better reply scored higher -> 1 pair right, exact, rho = tau = 1.
   * s6 human (0,0,1) scores (3,3,1): a human tie matched by a score tie; 2 pairs, both right, exact;
   *    score and preference ranks are the same (2.5,2.5,1) -> rho 1; tau: 1 pair tied on both sides,
   *    2 concordant -> 2/sqrt(2*2) = 1.
   * s7 empty -> not counted.
   * s8 human (0,1,2) scores (null,5,4): 1 pair right, exact, rho = tau = 1; the 5 went to rank 1 while
   *    the set's best (rank 0, unscored) is 0 -> a miss.
   * Totals: counted sets 6 (s1 s2 s3 s5 s6 s8); pairs 3+3+1+1+2+1 = 11, right 2+2+0+1+2+1 = 8;
   * fives 4, best 2 (s1, s3 r0); exact 3 of 6; correlated sets 5 (all but s3):
   * rho mean (0.5 + sqrt(3)/2 + 1 + 1 + 1) / 5; tau mean (1/3 + 2/sqrt(6) + 3) / 5.
   * Histogram of all 16 scored replies: 1: (1, 1); 2: (2, 2); 3: (3, 3.5, 3, 3); 4: (4, 4, 4, 4); 5: (5, 5, 5, 5).
   */
  const sets = [
    { human: [0, 1, 2], scores: [5, 3, 4] },
    { human: [0, 1, 2, 3], scores: [4, 4, null, 2] },
    { human: [0, 1], scores: [5, 5] },
    { human: [0, 1, 2], scores: [null, 1, null] },
    { human: [1, 0], scores: [2, 3.5] },
    { human: [0, 0, 1], scores: [3, 3, 1] },
    { human: [], scores: [] },
    { human: [0, 1, 2], scores: [null, 5, 4] },
  ];

  it('computes the paper metrics on hand-worked sets', () => {
    const q = JudgeQuality.parse(judgeQuality('demo.m1', sets, { judgments: 60, parsed: 48 }));
    expect(q).toMatchObject({
      model: 'demo.m1',
      sets: 6,
      pairs: 11,
      exactMatch: 0.5,
      fiveBest: 0.5,
      correlatedSets: 5,
      judgments: 60,
      parsed: 48,
      parseRate: 0.8,
      histogram: { '0': 0, '1': 2, '2': 2, '3': 4, '4': 4, '5': 4 },
    });
    expect(q.pairwiseAccuracy).toBeCloseTo(8 / 11, 12);
    expect(q.spearman).toBeCloseTo((0.5 + Math.sqrt(3) / 2 + 3) / 5, 12);
    expect(q.kendallTau).toBeCloseTo((1 / 3 + 2 / Math.sqrt(6) + 3) / 5, 12);
  });

  it('gives nulls and zeros for no sets and no judgments', () => {
    const q = JudgeQuality.parse(judgeQuality('demo.m1', [], { judgments: 0, parsed: 0 }));
    expect(q).toEqual({
      model: 'demo.m1',
      sets: 0,
      pairs: 0,
      pairwiseAccuracy: null,
      fiveBest: null,
      exactMatch: null,
      spearman: null,
      kendallTau: null,
      correlatedSets: 0,
      judgments: 0,
      parsed: 0,
      parseRate: null,
      histogram: { '0': 0, '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 },
    });
  });

  it('counts no set when no reply has a score', () => {
    const q = judgeQuality('demo.m1', [{ human: [0, 1], scores: [null, null] }], { judgments: 6, parsed: 0 });
    expect(q).toMatchObject({ sets: 0, pairs: 0, pairwiseAccuracy: null, exactMatch: null, parseRate: 0 });
  });

  it('a constant ranking: every pair a miss, no correlation, no exact match', () => {
    // 3 pairs, all score ties -> accuracy 0; constant scores -> no correlation; three 5s, one of them best -> 1/3
    const q = judgeQuality('demo.m1', [{ human: [0, 1, 2], scores: [5, 5, 5] }], { judgments: 3, parsed: 3 });
    expect(q).toMatchObject({ sets: 1, pairs: 3, pairwiseAccuracy: 0, exactMatch: 0, spearman: null, kendallTau: null, correlatedSets: 0 });
    expect(q.fiveBest).toBeCloseTo(1 / 3, 12);
  });

  it('takes means within 1e-9 as equal and a mean within 1e-9 of 5 as a 5', () => {
    const q = judgeQuality('demo.m1', [{ human: [0, 1, 2], scores: [5 - 1e-12, 3, 3 + 1e-12] }], { judgments: 3, parsed: 3 });
    // 0>1 ok, 0>2 ok, 1 vs 2 a score tie -> miss: 2 of 3; exact fails on the tie; the 5 is the best -> 1
    expect(q.pairwiseAccuracy).toBeCloseTo(2 / 3, 12);
    expect(q).toMatchObject({ exactMatch: 0, fiveBest: 1 });
  });

  it('refuses a set whose ranks and scores differ in length', () => {
    expect(() => judgeQuality('demo.m1', [{ human: [0, 1], scores: [3] }], { judgments: 1, parsed: 1 })).toThrow(RangeError);
  });
});

describe('pairwiseJudgePrompt', () => {
  it('shows the request and both responses under their own tags and asks for a final verdict line', () => {
    const p = pairwiseJudgePrompt('Name a prime.', 'Seven.', 'Nine.', 100);
    expect(p).toContain('<request>\nName a prime.\n</request>');
    expect(p).toContain('<response_a>\nSeven.\n</response_a>');
    expect(p).toContain('<response_b>\nNine.\n</response_b>');
    expect(p).toContain('"Verdict: <letter>"');
  });

  it('does not itself parse as a verdict', () => {
    expect(parsePairwiseVerdict(pairwiseJudgePrompt('Pick a colour.', 'Red.', 'Blue.', 100))).toBeNull();
  });

  it('cuts a response longer than maxChars with a visible marker, never inside a surrogate pair', () => {
    const p = pairwiseJudgePrompt('q', 'x'.repeat(10), 'y'.repeat(4), 4);
    expect(p).toContain('<response_a>\nxxxx\n[… response cut here: 6 more characters not shown]\n</response_a>');
    expect(p).toContain('<response_b>\nyyyy\n</response_b>');
    // 'ab😀cd' is 6 code units; a cut at 3 would split the emoji, so it cuts at 2
    expect(pairwiseJudgePrompt('q', 'ab😀cd', 'z', 3)).toContain('<response_a>\nab\n[… response cut here: 4 more characters not shown]');
  });

  it('refuses a maxChars that is not a positive integer', () => {
    expect(() => pairwiseJudgePrompt('q', 'a', 'b', 0)).toThrow(RangeError);
  });
});

describe('parsePairwiseVerdict', () => {
  const accepted: [string, string, 'A' | 'B'][] = [
    ['the requested line', 'A is correct and B is not.\nVerdict: A', 'A'],
    ['lower case', 'verdict: b', 'B'],
    ['upper case', 'VERDICT: B', 'B'],
    ['bold label', '**Verdict:** A', 'A'],
    ['bold statement', '**Verdict: B**', 'B'],
    ['bold letter', 'Verdict: **A**', 'A'],
    ['double brackets', 'Verdict: [[B]]', 'B'],
    ['quoted', 'Verdict: "A"', 'A'],
    ['trailing period', 'Verdict: B.', 'B'],
    ['trailing explanation', 'Verdict: A (it answers the question)', 'A'],
    ['response word', 'Verdict: Response B', 'B'],
    ['output in brackets', 'Verdict: Output (a)', 'A'],
    ['no space after the colon', 'Verdict:A', 'A'],
    ['final verdict', 'Final verdict: B', 'B'],
    ['"is" as separator', 'My final verdict is [[A]].', 'A'],
    ['winner label', 'Winner = B', 'B'],
    ['better response label', 'The better response is B!', 'B'],
    ['heading', '## Verdict: A', 'A'],
    ['verdict on the next line', 'Verdict:\n**B**', 'B'],
    ['a bare letter line', 'Both are fine but the second is clearer.\n\nB', 'B'],
    ['the last verdict wins', 'Verdict: A\nOn reflection, A has an error.\nVerdict: B', 'B'],
    ['the last statement in a line wins', 'Verdict: A? No. Verdict: B', 'B'],
    ['prose after the verdict is skipped', 'Verdict: A\nThe verdict depends on nothing else.', 'A'],
    ['CRLF line ends', 'Reasoning.\r\nVerdict: B\r\n', 'B'],
  ];
  for (const [name, text, want] of accepted) {
    it(`reads ${name}`, () => expect(parsePairwiseVerdict(text)).toBe(want));
  }

  const refused: [string, string][] = [
    ['no verdict', 'Both responses are reasonable.'],
    ['empty text', ''],
    ['a tie', 'Verdict: tie'],
    ['a tie after a letter', 'Verdict: A\nActually, on reflection: Verdict: A tie.'],
    ['both', 'Verdict: Both'],
    ['neither', '**Verdict:** neither'],
    ['both letters with a slash', 'Verdict: A/B'],
    ['both letters with "or"', 'Verdict: A or B'],
    ['both letters with "and"', 'Verdict: Response A and Response B'],
    ['a placeholder', 'Verdict: <letter>'],
    ['an article, not a letter', 'verdict: a close call'],
    ['a word starting with the letter', 'Verdict: Apples'],
    ['a letter inside prose', 'Response A is better than B in some ways.'],
    ['a section header', 'Response A:\nGood.\nResponse B:\nWorse.'],
  ];
  for (const [name, text] of refused) {
    it(`gives null for ${name}`, () => expect(parsePairwiseVerdict(text)).toBeNull());
  }
});

describe('headToHead', () => {
  it('counts wins, losses and ties over both orders', () => {
    // 1 {A,B}: both orders prefer the model -> win
    // 2 {B,A}: both prefer the opponent -> loss
    // 3 {A,A}: first prefers the model, second the opponent -> tie, order disagreement
    // 4 {null,B}: a tie, 1 unparsed
    // 5 {null,null}: a tie, 2 unparsed
    // 6 {B,B}: first prefers the opponent, second the model -> tie, order disagreement
    // win rate (1 + 4/2) / 6 = 0.5
    const h = HeadToHead.parse(
      headToHead('demo.m2', 'demo.m1', 'model:gemma3-270m', [
        { modelFirst: 'A', modelSecond: 'B' },
        { modelFirst: 'B', modelSecond: 'A' },
        { modelFirst: 'A', modelSecond: 'A' },
        { modelFirst: null, modelSecond: 'B' },
        { modelFirst: null, modelSecond: null },
        { modelFirst: 'B', modelSecond: 'B' },
      ]),
    );
    expect(h).toEqual({
      model: 'demo.m2',
      opponent: 'demo.m1',
      judge: 'model:gemma3-270m',
      prompts: 6,
      wins: 1,
      losses: 1,
      ties: 4,
      winRate: 0.5,
      orderDisagreements: 2,
      unparsed: 3,
    });
  });

  it('has a null win rate for no prompts', () => {
    const h = HeadToHead.parse(headToHead('demo.m2', 'reference', 'j', []));
    expect(h).toMatchObject({ prompts: 0, wins: 0, losses: 0, ties: 0, winRate: null, orderDisagreements: 0, unparsed: 0 });
  });
});

describe('responseLengths', () => {
  it('gives count, mean and median characters and mean tokens', () => {
    // chars 3, 5, 0 -> mean 8/3, median 3; tokens 1, 2, 0 -> mean 1
    const r = ResponseLengths.parse(
      responseLengths('demo.m2', [
        { text: 'abc', tokens: 1 },
        { text: 'hello', tokens: 2 },
        { text: '', tokens: 0 },
      ]),
    );
    expect(r).toMatchObject({ model: 'demo.m2', count: 3, medianChars: 3, meanTokens: 1 });
    expect(r.meanChars).toBeCloseTo(8 / 3, 12);
  });

  it('is null for no responses', () => {
    expect(ResponseLengths.parse(responseLengths('demo.m2', []))).toEqual({
      model: 'demo.m2',
      count: 0,
      meanChars: null,
      medianChars: null,
      meanTokens: null,
    });
  });
});

function candidate(id: string, chars: number): Candidate {
  return { id, promptId: 'p', prompt: 'q', index: 0, text: 'x'.repeat(chars), tokens: chars, finishReason: 'stop' };
}

let judgmentCount = 0;
function judgment(candidateId: string, score: number | null): Judgment {
  return { id: `j${judgmentCount++}`, candidateId, promptId: 'p', sample: 0, text: '', score };
}

function pair(chosenChars: number, rejectedChars: number): PreferencePair {
  return {
    id: `pair${chosenChars}-${rejectedChars}`,
    promptId: 'p',
    prompt: 'q',
    chosen: 'x'.repeat(chosenChars),
    rejected: 'x'.repeat(rejectedChars),
    chosenId: 'c',
    rejectedId: 'r',
    chosenScore: 4,
    rejectedScore: 1,
  };
}

describe('RewardWatchAccumulator', () => {
  /*
   * c1 10 chars (scores 2, 4 -> mean 3), c2 20 chars (4), c3 30 chars (5, 4 -> 4.5), c4 40 chars (null only),
   * c1 again with 99 chars (ignored: the first length counts), c9 never given (score 1: counted everywhere
   * but the correlation).
   * Correlation over c1..c3: x = (10, 20, 30), y = (3, 4, 4.5); dx = (-10, 0, 10), dy = (-5/6, 1/6, 2/3);
   *   sxy = 25/3 + 20/3 = 15, sxx = 200, syy = (25 + 1 + 16)/36 = 7/6 -> r = 15 / sqrt(700/3) = sqrt(27/28).
   * Parsed scores (2, 4, 4, 5, 4, 1) of 7 judgments: top share 1/6; mean 20/6; E[s²] = 78/6 = 13;
   *   variance 13 - 100/9 = 17/9; parse failures 1/7.
   * Pairs: chosen 4 vs rejected 2, chosen 1 vs rejected 7 -> gap ((4-2) + (1-7)) / 2 = -2.
   */
  const candidates = [candidate('c1', 10), candidate('c2', 20), candidate('c3', 30), candidate('c4', 40), candidate('c1', 99)];
  const judgments = [
    judgment('c1', 2),
    judgment('c1', 4),
    judgment('c2', 4),
    judgment('c3', 5),
    judgment('c3', 4),
    judgment('c4', null),
    judgment('c9', 1),
  ];
  const pairs = [pair(4, 2), pair(1, 7)];

  function check(w: RewardWatch): void {
    expect(RewardWatch.parse(w)).toEqual(w);
    expect(w.lengthScoreCorrelation).toBeCloseTo(Math.sqrt(27 / 28), 12);
    expect(w.chosenRejectedCharGap).toBe(-2);
    expect(w.topScoreShare).toBeCloseTo(1 / 6, 12);
    expect(w.scoreVariance).toBeCloseTo(17 / 9, 12);
    expect(w.scoreVariance).toBeCloseTo(variance([2, 4, 4, 5, 4, 1])!, 12);
    expect(w.parseFailureRate).toBeCloseTo(1 / 7, 12);
  }

  it('computes the watch figures on hand-worked records', () => {
    const acc = new RewardWatchAccumulator();
    acc.addCandidates(candidates);
    acc.addJudgments(judgments);
    acc.addPairs(pairs);
    check(acc.watch());
  });

  it('gives the same figures for records in any order and batch size', () => {
    const acc = new RewardWatchAccumulator();
    acc.addPairs(pairs.slice(1));
    for (const j of [...judgments].reverse()) acc.addJudgments([j]);
    acc.addCandidates(candidates.slice(0, 2));
    acc.addPairs(pairs.slice(0, 1));
    acc.addCandidates(candidates.slice(2));
    check(acc.watch());
  });

  it('is null throughout with nothing added', () => {
    const w = RewardWatch.parse(new RewardWatchAccumulator().watch());
    expect(w).toEqual({
      lengthScoreCorrelation: null,
      chosenRejectedCharGap: null,
      topScoreShare: null,
      scoreVariance: null,
      parseFailureRate: null,
    });
  });

  it('has no correlation and zero variance for a constant judge', () => {
    const acc = new RewardWatchAccumulator();
    acc.addCandidates([candidate('a', 5), candidate('b', 50)]);
    acc.addJudgments([judgment('a', 3), judgment('b', 3), judgment('b', null)]);
    // parsed 2 of 3; no 5s
    const w = acc.watch();
    expect(w).toMatchObject({ lengthScoreCorrelation: null, chosenRejectedCharGap: null, topScoreShare: 0, scoreVariance: 0 });
    expect(w.parseFailureRate).toBeCloseTo(1 / 3, 12);
  });
});

describe('decideGate', () => {
  const quality = (model: string, pairwiseAccuracy: number | null): JudgeQuality =>
    JudgeQuality.parse({ ...judgeQuality(model, [], { judgments: 0, parsed: 0 }), pairwiseAccuracy });
  const h2h = (opponent: string, winRate: number | null): HeadToHead => ({ ...headToHead('demo.m2', opponent, 'j', []), winRate });
  const lengths = (model: string, meanChars: number | null): ResponseLengths => ({ ...responseLengths(model, []), meanChars });

  const good: GateInput = {
    model: 'demo.m2',
    previousModel: 'demo.m1',
    headToHead: [h2h('demo.m1', 0.62), h2h('reference', 0.3)],
    judgeQuality: [quality('demo.m2', 0.7)],
    previousJudgeQuality: quality('demo.m1', 0.8),
    responses: [lengths('demo.m1', 800), lengths('demo.m2', 1000)],
    watch: { lengthScoreCorrelation: 0.2, chosenRejectedCharGap: 40, topScoreShare: 0.2, scoreVariance: 1, parseFailureRate: 0.04 },
  };
  const all = GateConfig.parse({
    minWinRateVsPrevious: 0.5,
    minWinRateVsReference: 0.25,
    maxJudgeAccuracyDrop: 0.1,
    maxTopScoreShare: 0.25,
    minJudgeParseRate: 0.95,
    maxLengthGrowth: 1.5,
    onFail: 'rollback',
  });

  it('passes with no checks when no threshold is set', () => {
    const d = GateDecision.parse(decideGate(GateConfig.parse({}), good));
    expect(d).toEqual({ passed: true, checks: [], onFail: 'stop' });
  });

  it('checks every threshold set, in GateConfig field order, with the figures in each message', () => {
    const d = GateDecision.parse(decideGate(all, good));
    expect(d.checks.map((c) => c.name)).toEqual([...GATE_CHECKS]);
    expect(Object.keys(GateConfig.shape).filter((k) => k !== 'onFail')).toEqual([...GATE_CHECKS]);
    expect(d.passed).toBe(true);
    expect(d.onFail).toBe('rollback');
    expect(d.checks.map((c) => c.message)).toEqual([
      'win rate against demo.m1 0.62 >= 0.50',
      'win rate against the reference outputs 0.30 >= 0.25',
      // 0.8 - 0.7 is 0.10000000000000009 in floating point: within 1e-9 of the threshold, so it passes
      'judge pairwise accuracy drop from demo.m1 to demo.m2 0.10 <= 0.10 (0.80 → 0.70)',
      'share of judgments scoring 5 is 0.20 <= 0.25',
      'judge parse rate 0.96 >= 0.95',
      // 1000 / 800 = 1.25
      'mean response length growth from demo.m1 to demo.m2 1.25 <= 1.50 (800 → 1000 characters)',
    ]);
    expect(d.checks.map((c) => c.value)).toEqual([0.62, 0.3, 0.8 - 0.7, 0.2, 0.96, 1.25]);
  });

  it('fails a check whose value is past its threshold, and says by how much', () => {
    const d = GateDecision.parse(
      decideGate(all, {
        ...good,
        headToHead: [h2h('demo.m1', 0.42), h2h('reference', 0.249)],
        judgeQuality: [quality('demo.m2', 0.6)],
        responses: [lengths('demo.m1', 100), lengths('demo.m2', 162)],
        watch: { ...good.watch, topScoreShare: 0.31, parseFailureRate: 0.1 },
      }),
    );
    expect(d.passed).toBe(false);
    expect(d.checks.every((c) => !c.passed)).toBe(true);
    expect(d.checks.map((c) => c.message)).toEqual([
      'win rate against demo.m1 0.42 < 0.50',
      // 0.249 shows as 0.25 at two decimals, so it gets three
      'win rate against the reference outputs 0.249 < 0.250',
      'judge pairwise accuracy drop from demo.m1 to demo.m2 0.20 > 0.10 (0.80 → 0.60)',
      'share of judgments scoring 5 is 0.31 > 0.25',
      'judge parse rate 0.90 < 0.95',
      'mean response length growth from demo.m1 to demo.m2 1.62 > 1.50 (100 → 162 characters)',
    ]);
  });

  it('fails every check whose value was not measured, naming the config section that measures it', () => {
    const d = GateDecision.parse(
      decideGate(all, {
        ...good,
        headToHead: [h2h('demo.m1', null)],
        judgeQuality: [],
        previousJudgeQuality: null,
        responses: [lengths('demo.m2', 900)],
        watch: {
          lengthScoreCorrelation: null,
          chosenRejectedCharGap: null,
          topScoreShare: null,
          scoreVariance: null,
          parseFailureRate: null,
        },
      }),
    );
    expect(d.passed).toBe(false);
    expect(d.checks.map((c) => [c.passed, c.value])).toEqual(GATE_CHECKS.map(() => [false, null]));
    const [vsPrevious, vsReference, accuracy, top, parse, growth] = d.checks.map((c) => c.message);
    expect(vsPrevious).toBe(
      'win rate against demo.m1 was not measured (evaluation.prompts, evaluation.judge and "previous" in evaluation.opponents provide it)',
    );
    expect(vsReference).toMatch(/against the reference outputs was not measured .*"reference" in evaluation.opponents/);
    expect(accuracy).toBe(
      'judge accuracy drop was not measured: no pairwise accuracy of demo.m1 and demo.m2 on held-out human rankings (evaluation.judgeSet provides it)',
    );
    expect(top).toMatch(/not measured.*config section judge/);
    expect(parse).toMatch(/judge parse rate was not measured/);
    expect(growth).toBe(
      'response length growth was not measured: no responses of demo.m1 on held-out prompts (evaluation.prompts provides them)',
    );
  });

  it('takes growth from empty responses to empty ones as 1, to longer ones as unmeasurable', () => {
    const gate = GateConfig.parse({ maxLengthGrowth: 1.5 });
    const still = decideGate(gate, { ...good, responses: [lengths('demo.m1', 0), lengths('demo.m2', 0)] });
    expect(still.checks[0]).toMatchObject({ value: 1, passed: true });
    const grown = GateDecision.parse(decideGate(gate, { ...good, responses: [lengths('demo.m1', 0), lengths('demo.m2', 10)] }));
    expect(grown.checks[0]).toMatchObject({ value: null, passed: false });
    expect(grown.checks[0]!.message).toMatch(/unbounded/);
  });
});
