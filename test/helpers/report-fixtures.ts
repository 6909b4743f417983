/**
 * Iteration summaries of one made-up run for the report tests: iteration 1 predates
 * evaluation (no `evaluation` key at all, as older summaries were written), iteration 2 has
 * an evaluation whose gate passes, iteration 3 one whose gate fails, with a hostile model
 * id, nulls in the numbers, and a judge URL. Also what each chart should draw from them.
 */
import { type ArtifactStore, LocalStore } from '../../store/store';
import type { IterationSummary } from '../../core/stats';

export const HOSTILE = '<script>alert(1)</script>';
export const RUN = 'report-fixture';

const base = (iteration: number, modelIn: string, modelOut: string | null) => ({
  run: RUN,
  iteration,
  modelIn,
  modelOut,
  timings: { prompts: 41.5, candidates: 300.2, judgments: 512, pairs: 1.2, dpo: 95.1 },
  skipped: {},
});

/** Iteration 1 as a summary written before evaluation existed: no `evaluation` key. */
export const iteration1 = {
  ...base(1, 'm1', 'm2'),
  prompts: { requested: 60, generated: 58, kept: 40, dropped: { 'too-short': 6, 'rouge-l': 9, 'mentions-image': 3 } },
  candidates: { count: 160, meanTokens: 92.5, medianTokens: 88, meanChars: 402.25 },
  judge: {
    judgments: 480,
    parsed: 450,
    parseRate: 0.9375,
    histogram: { '0': 10, '1': 25, '2': 60, '3': 140, '4': 150, '5': 65 },
    meanScore: 3.34,
  },
  pairs: {
    kept: 31,
    dropped: { tie: 7, 'too-few-scores': 2 },
    meanChosenScore: 4.4,
    meanRejectedScore: 2.1,
    meanChosenChars: 455.5,
    meanRejectedChars: 350.25,
  },
  dpo: { loss: 0.6412, rewardAccuracy: 0.71, rewardMargin: 0.183, steps: 8 },
};

export const iteration2: IterationSummary = {
  ...base(2, 'm2', 'm3'),
  prompts: { requested: 60, generated: 60, kept: 44, dropped: { 'too-short': 4, 'rouge-l': 12 } },
  candidates: { count: 176, meanTokens: 101.2, medianTokens: 97, meanChars: 451.5 },
  judge: {
    judgments: 528,
    parsed: 510,
    parseRate: 0.9659,
    histogram: { '0': 4, '1': 12, '2': 40, '3': 150, '4': 200, '5': 104 },
    meanScore: 3.6,
  },
  pairs: { kept: 38, dropped: { tie: 6 }, meanChosenScore: 4.6, meanRejectedScore: 2.4, meanChosenChars: 520.75, meanRejectedChars: 380 },
  dpo: { loss: 0.5921, rewardAccuracy: 0.76, rewardMargin: 0.241, steps: 9 },
  evaluation: {
    model: 'm3',
    judgeQuality: [
      {
        model: 'm2',
        sets: 40,
        pairs: 150,
        pairwiseAccuracy: 0.58,
        fiveBest: 0.4,
        exactMatch: 0.1,
        spearman: 0.21,
        kendallTau: 0.16,
        correlatedSets: 38,
        judgments: 360,
        parsed: 340,
        parseRate: 0.944,
        histogram: { '0': 1, '1': 3, '2': 20, '3': 50, '4': 40, '5': 6 },
      },
      {
        model: 'm3',
        sets: 40,
        pairs: 150,
        pairwiseAccuracy: 0.62,
        fiveBest: 0.45,
        exactMatch: 0.125,
        spearman: 0.27,
        kendallTau: 0.2,
        correlatedSets: 39,
        judgments: 360,
        parsed: 350,
        parseRate: 0.972,
        histogram: { '0': 0, '1': 2, '2': 18, '3': 52, '4': 42, '5': 6 },
      },
    ],
    headToHead: [
      {
        model: 'm3',
        opponent: 'm2',
        judge: 'model:m3',
        prompts: 50,
        wins: 24,
        losses: 14,
        ties: 12,
        winRate: 0.6,
        orderDisagreements: 10,
        unparsed: 2,
      },
      {
        model: 'm3',
        opponent: 'reference',
        judge: 'model:m3',
        prompts: 50,
        wins: 10,
        losses: 30,
        ties: 10,
        winRate: 0.3,
        orderDisagreements: 8,
        unparsed: 2,
      },
    ],
    responses: [
      { model: 'm2', count: 50, meanChars: 430.5, medianChars: 410, meanTokens: 98.2 },
      { model: 'm3', count: 50, meanChars: 497.25, medianChars: 470, meanTokens: 112.6 },
    ],
    watch: {
      lengthScoreCorrelation: 0.22,
      chosenRejectedCharGap: 140.75,
      topScoreShare: 0.204,
      scoreVariance: 1.12,
      parseFailureRate: 0.034,
    },
    gate: {
      passed: true,
      onFail: 'stop',
      checks: [
        { name: 'minWinRateVsPrevious', value: 0.6, threshold: 0.5, passed: true, message: 'win rate 60.0% against m2 ≥ 50.0%' },
        { name: 'maxLengthScoreCorrelation', value: 0.22, threshold: 0.5, passed: true, message: 'length–score correlation 0.22 ≤ 0.50' },
      ],
    },
  },
};

export const iteration3: IterationSummary = {
  ...base(3, 'm3', HOSTILE),
  prompts: { requested: 60, generated: 59, kept: 38, dropped: { 'too-short': 5, 'rouge-l': 14, 'starts-with-punctuation': 2 } },
  candidates: { count: 152, meanTokens: 140.8, medianTokens: 131, meanChars: 640.5 },
  judge: {
    judgments: 456,
    parsed: 400,
    parseRate: 0.877,
    histogram: { '0': 2, '1': 4, '2': 10, '3': 60, '4': 124, '5': 200 },
    meanScore: 4.2,
  },
  pairs: {
    kept: 25,
    dropped: { tie: 11, 'too-few-scores': 2 },
    meanChosenScore: 4.9,
    meanRejectedScore: 3.5,
    meanChosenChars: 810.25,
    meanRejectedChars: 402.5,
  },
  dpo: { loss: null, rewardAccuracy: null, rewardMargin: null, steps: 9 },
  evaluation: {
    model: HOSTILE,
    judgeQuality: [
      // the new model agrees with no human order well enough to define Kendall's tau
      {
        model: HOSTILE,
        sets: 40,
        pairs: 150,
        pairwiseAccuracy: 0.41,
        fiveBest: null,
        exactMatch: 0,
        spearman: -0.12,
        kendallTau: null,
        correlatedSets: 0,
        judgments: 360,
        parsed: 200,
        parseRate: 0.556,
        histogram: { '0': 0, '1': 0, '2': 5, '3': 10, '4': 30, '5': 75 },
      },
    ],
    headToHead: [
      {
        model: HOSTILE,
        opponent: 'm3',
        judge: 'openai:gpt-4o@https://judge.example/v1',
        prompts: 50,
        wins: 9,
        losses: 29,
        ties: 12,
        winRate: 0.3,
        orderDisagreements: 12,
        unparsed: 4,
      },
      {
        model: HOSTILE,
        opponent: 'reference',
        judge: 'openai:gpt-4o@https://judge.example/v1',
        prompts: 0,
        wins: 0,
        losses: 0,
        ties: 0,
        winRate: null,
        orderDisagreements: 0,
        unparsed: 0,
      },
    ],
    responses: [
      { model: 'm3', count: 50, meanChars: 497.25, medianChars: 470, meanTokens: 112.6 },
      { model: HOSTILE, count: 50, meanChars: 780, medianChars: null, meanTokens: 170.1 },
    ],
    watch: {
      lengthScoreCorrelation: 0.71,
      chosenRejectedCharGap: 407.75,
      topScoreShare: 0.5,
      scoreVariance: null,
      parseFailureRate: 0.123,
    },
    gate: {
      passed: false,
      onFail: 'rollback',
      checks: [
        {
          name: 'minWinRateVsPrevious',
          value: 0.3,
          threshold: 0.5,
          passed: false,
          message: `win rate 30.0% against m3 < 50.0%: ${HOSTILE}`,
        },
        { name: 'maxLengthScoreCorrelation', value: 0.71, threshold: 0.5, passed: false, message: 'length–score correlation 0.71 > 0.50' },
        { name: 'minJudgePairwiseAccuracy', value: 0.41, threshold: 0.4, passed: true, message: 'pairwise accuracy 41.0% ≥ 40.0%' },
      ],
    },
  },
};

/** The summaries as files would hold them (iteration 1 without `evaluation`). */
export const summaryFiles: Record<number, unknown> = { 1: iteration1, 2: iteration2, 3: iteration3 };

/** How many values each chart draws (bars or points with data-value) from iterations 1-3. */
export const expectedCounts: Record<string, number> = {
  // 3 iterations × 6 bins
  'judge-histogram': 18,
  // 4 head-to-head rows × win/tie/loss
  'head-to-head': 12,
  // models m2, m3, HOSTILE × 4 metrics, less HOSTILE's null Kendall tau
  'judge-quality': 11,
  // candidates, chosen, rejected in 3 iterations + held-out of the evaluated model in iterations 2, 3
  lengths: 11,
  // models m2, m3 (latest: iteration 3), HOSTILE × mean, median, less HOSTILE's null median
  'held-out-lengths': 5,
  // 3 + 2 + 3 reasons
  'prompts-dropped': 8,
  // 2 + 1 + 2 reasons
  'pairs-dropped': 5,
};

/**
 * A store (a directory, or the store given) holding the fixture run: the three summaries, manifests of m1-m3 (lineage
 * "fixture", m3 promoted over m2), and a summary of another run that must not be read.
 */
export async function seedReportStore(where: string | ArtifactStore): Promise<ArtifactStore> {
  const store = typeof where === 'string' ? new LocalStore(where) : where;
  for (const [t, s] of Object.entries(summaryFiles))
    await store.putBytes(`runs/${RUN}/iter-${t}/summary.json`, JSON.stringify(s, null, 2) + '\n');
  await store.putBytes(`runs/${RUN}-other/iter-1/summary.json`, JSON.stringify({ ...iteration1, run: `${RUN}-other` }));
  const models: [string, string | null, 'import' | 'sft' | 'dpo', Record<string, number>][] = [
    ['m1', null, 'sft', { train_loss: 1.21, steps: 40 }],
    ['m2', 'm1', 'dpo', { train_loss: 0.6412, steps: 8 }],
    ['m3', 'm2', 'dpo', { train_loss: 0.5921, steps: 9 }],
  ];
  for (const [modelId, parent, method, metrics] of models) {
    await store.putBytes(
      `models/fixture/${modelId}/manifest.json`,
      JSON.stringify({
        kind: 'model',
        modelId,
        lineage: 'fixture',
        parent,
        method,
        files: [],
        trainedOn: [],
        metrics,
        createdAt: `2026-11-2${models.findIndex((m) => m[0] === modelId)}T10:00:00.000Z`,
      }),
    );
  }
  await store.putBytes(
    'models/fixture/promoted.json',
    JSON.stringify({ lineage: 'fixture', modelId: 'm3', run: RUN, promotedAt: '2026-11-23T10:00:00.000Z', previous: 'm2' }),
  );
  return store;
}
