/**
 * Numbers that describe one self-rewarding iteration, its summary record, and the
 * summary rendered as Markdown for people.
 */
import { z } from 'zod';
import type { Candidate, Judgment } from './schemas';

/** Arithmetic mean; null for no values. */
export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Median (mean of the middle two for an even count); null for no values. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Counts of 0-5 scores in bins of `binWidth` (1 or 0.5). A score goes to the bin of its
 * value rounded down to the width ("3" holds 3 ≤ s < 4); 5 has a bin of its own. Every bin
 * is present, zero or not, so tables line up across iterations. Used both for raw
 * judgment scores and for per-candidate means.
 */
export function histogram(scores: readonly number[], binWidth: 1 | 0.5 = 1): Record<string, number> {
  const bins = emptyHistogram(binWidth);
  for (const s of scores) addToHistogram(bins, s, binWidth);
  return bins;
}

function emptyHistogram(binWidth: 1 | 0.5): Record<string, number> {
  const bins: Record<string, number> = {};
  const steps = Math.round(5 / binWidth);
  for (let k = 0; k <= steps; k++) bins[binLabel(k * binWidth)] = 0;
  return bins;
}

function addToHistogram(bins: Record<string, number>, s: number, binWidth: 1 | 0.5): void {
  const steps = Math.round(5 / binWidth);
  if (!Number.isFinite(s) || s < 0 || s > 5) throw new RangeError(`histogram: score ${s} is outside 0..5`);
  const k = Math.min(steps, Math.floor(s / binWidth + 1e-9));
  bins[binLabel(k * binWidth)]!++;
}

function binLabel(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// ---------------------------------------------------------------------------------------
// Iteration summary
// ---------------------------------------------------------------------------------------

const Count = z.number().int().nonnegative();
const MaybeNumber = z.number().nullable();

/** A model as a judge of held-out human rankings (the paper's reward-modelling metrics). */
export const JudgeQuality = z.strictObject({
  model: z.string().min(1),
  /** ranked sets with at least two replies of different human rank */
  sets: Count,
  /** reply pairs the humans ordered (ties in human rank left out) */
  pairs: Count,
  /** share of those pairs the model's mean scores order the same way (a model tie counts as a miss) */
  pairwiseAccuracy: MaybeNumber,
  /** of the replies the model scored a perfect 5, the share humans ranked best in their set */
  fiveBest: MaybeNumber,
  /** share of sets whose order by the model's scores is exactly the human order (ties must match ties) */
  exactMatch: MaybeNumber,
  /** mean over sets of Spearman's rho / Kendall's tau-b between scores and human ranks (sets where either is constant left out) */
  spearman: MaybeNumber,
  kendallTau: MaybeNumber,
  /** sets with a defined correlation */
  correlatedSets: Count,
  judgments: Count,
  parsed: Count,
  parseRate: MaybeNumber,
  /** per-reply mean scores, bins of 1 (see histogram()) */
  histogram: z.record(z.string(), Count),
});
export type JudgeQuality = z.infer<typeof JudgeQuality>;

/** M_{t+1} against an opponent on held-out prompts, each pair judged in both orders. */
export const HeadToHead = z.strictObject({
  model: z.string().min(1),
  /** a model id, or "reference" (the evaluation set's reference outputs) */
  opponent: z.string().min(1),
  /** who judged, e.g. "model:gemma3-270m" or "openai:gpt-4o@https://..." */
  judge: z.string().min(1),
  prompts: Count,
  /** both orders prefer the model / the opponent */
  wins: Count,
  losses: Count,
  /** the two orders disagree, or a verdict could not be read */
  ties: Count,
  /** (wins + ties / 2) / prompts */
  winRate: MaybeNumber,
  orderDisagreements: Count,
  /** verdicts (one per order) the judge's text gave none */
  unparsed: Count,
});
export type HeadToHead = z.infer<typeof HeadToHead>;

/** Response lengths of a model on the held-out prompts. */
export const ResponseLengths = z.strictObject({
  model: z.string().min(1),
  count: Count,
  meanChars: MaybeNumber,
  medianChars: MaybeNumber,
  meanTokens: MaybeNumber,
});
export type ResponseLengths = z.infer<typeof ResponseLengths>;

/** Signs of length drift and reward hacking in the iteration's own judging. */
export const RewardWatch = z.strictObject({
  /** Pearson correlation of a candidate's length (characters) and its mean judge score */
  lengthScoreCorrelation: MaybeNumber,
  /** mean characters of chosen minus rejected responses */
  chosenRejectedCharGap: MaybeNumber,
  /** share of parsed judgments scoring 5 */
  topScoreShare: MaybeNumber,
  /** population variance of the parsed judgment scores */
  scoreVariance: MaybeNumber,
  /** share of judgments without a readable score */
  parseFailureRate: MaybeNumber,
});
export type RewardWatch = z.infer<typeof RewardWatch>;

export const GateCheck = z.strictObject({
  /** the GateConfig field, e.g. "minWinRateVsPrevious" */
  name: z.string().min(1),
  value: MaybeNumber,
  threshold: z.number(),
  passed: z.boolean(),
  message: z.string(),
});
export type GateCheck = z.infer<typeof GateCheck>;

export const GateDecision = z.strictObject({
  passed: z.boolean(),
  checks: z.array(GateCheck),
  onFail: z.enum(['stop', 'rollback', 'continue']),
});
export type GateDecision = z.infer<typeof GateDecision>;

export const EvaluationSummary = z.strictObject({
  /** the model evaluated: the iteration's output M_{t+1} */
  model: z.string().min(1),
  /** judge quality of the models evaluated in this iteration (M_t at the first iteration, M_{t+1}) */
  judgeQuality: z.array(JudgeQuality),
  headToHead: z.array(HeadToHead),
  responses: z.array(ResponseLengths),
  watch: RewardWatch,
  /** null when no gate is configured */
  gate: GateDecision.nullable(),
});
export type EvaluationSummary = z.infer<typeof EvaluationSummary>;

// ---------------------------------------------------------------------------------------
// Stage statistics: what a stage's manifest records about how it went (its `stats`), one
// schema per kind of stage, parsed where they are read. A count a stage published before it
// existed (or as something else than a number) reads as 0; fields not listed are kept.
// ---------------------------------------------------------------------------------------

const Tally = z.number().catch(0);
const Tallies = z.record(z.string(), z.number()).catch({});

/** A generating stage: tokens, time, and shards reused from earlier attempts or generated. */
export const GenerationStageStats = z.looseObject({
  tokens: Tally,
  seconds: Tally,
  shards: Tally,
  shardsReused: Tally,
  requestsResumed: Tally,
  requestsGenerated: Tally,
  /** requests the engine skipped (over the context) */
  skipped: Tally,
});
export type GenerationStageStats = z.infer<typeof GenerationStageStats>;

export const PromptStageStats = GenerationStageStats.extend({
  requested: Tally,
  rounds: Tally,
  generated: Tally,
  kept: Tally,
  /** instructions dropped per filter (and `kept`) */
  filters: Tallies,
});
export type PromptStageStats = z.infer<typeof PromptStageStats>;

export const CandidateStageStats = GenerationStageStats.extend({ prompts: Tally });
export type CandidateStageStats = z.infer<typeof CandidateStageStats>;

export const JudgmentStageStats = GenerationStageStats.extend({
  judgments: Tally,
  parsed: Tally,
  parseRate: Tally,
  parseFailures: Tallies,
  /** candidates with an empty response: counted, not judged */
  emptyCandidates: Tally,
});
export type JudgmentStageStats = z.infer<typeof JudgmentStageStats>;

export const PairStageStats = z.looseObject({
  prompts: Tally,
  pairs: Tally,
  /** prompts dropped per reason */
  dropped: Tallies,
});
export type PairStageStats = z.infer<typeof PairStageStats>;

export const IterationSummary = z.strictObject({
  run: z.string().min(1),
  iteration: z.number().int().nonnegative(),
  modelIn: z.string().min(1),
  /** null until training produced the next model */
  modelOut: z.string().min(1).nullable(),
  prompts: z.strictObject({
    requested: Count,
    generated: Count,
    kept: Count,
    dropped: z.record(z.string(), Count),
  }),
  candidates: z.strictObject({
    count: Count,
    meanTokens: MaybeNumber,
    medianTokens: MaybeNumber,
    meanChars: MaybeNumber,
  }),
  judge: z.strictObject({
    judgments: Count,
    parsed: Count,
    parseRate: MaybeNumber,
    /** raw parsed scores, as from histogram() */
    histogram: z.record(z.string(), Count),
    meanScore: MaybeNumber,
  }),
  pairs: z.strictObject({
    kept: Count,
    dropped: z.record(z.string(), Count),
    meanChosenScore: MaybeNumber,
    meanRejectedScore: MaybeNumber,
    meanChosenChars: MaybeNumber,
    meanRejectedChars: MaybeNumber,
  }),
  dpo: z
    .strictObject({
      // null where the trainer did not report the metric
      loss: MaybeNumber,
      rewardAccuracy: MaybeNumber,
      rewardMargin: MaybeNumber,
      steps: Count.nullable(),
    })
    .nullable(),
  /** seconds per stage */
  timings: z.record(z.string(), z.number().nonnegative()),
  /** requests and records left out, by reason (prompt over the model's context, empty response, ...) */
  skipped: z.record(z.string(), Count).default({}),
  /** evaluation of the iteration's model (null: none configured) */
  evaluation: EvaluationSummary.nullable().default(null),
});
export type IterationSummary = z.infer<typeof IterationSummary>;

/** summarizeCandidates over batches: token counts are kept (for the median), texts are not. */
export class CandidateSummary {
  private readonly tokens: number[] = [];
  private chars = 0;

  add(candidates: readonly Candidate[]): void {
    for (const c of candidates) {
      this.tokens.push(c.tokens);
      this.chars += c.text.length;
    }
  }

  summary(): IterationSummary['candidates'] {
    const n = this.tokens.length;
    return { count: n, meanTokens: mean(this.tokens), medianTokens: median(this.tokens), meanChars: n === 0 ? null : this.chars / n };
  }
}

export function summarizeCandidates(candidates: readonly Candidate[]): IterationSummary['candidates'] {
  const acc = new CandidateSummary();
  acc.add(candidates);
  return acc.summary();
}

/** summarizeJudgments over batches. */
export class JudgmentSummary {
  private judgments = 0;
  private parsed = 0;
  private sum = 0;
  private readonly bins = emptyHistogram(1);

  add(judgments: readonly Judgment[]): void {
    for (const j of judgments) {
      this.judgments++;
      if (j.score === null) continue;
      addToHistogram(this.bins, j.score, 1);
      this.parsed++;
      this.sum += j.score;
    }
  }

  summary(): IterationSummary['judge'] {
    return {
      judgments: this.judgments,
      parsed: this.parsed,
      parseRate: this.judgments === 0 ? null : this.parsed / this.judgments,
      histogram: { ...this.bins },
      meanScore: this.parsed === 0 ? null : this.sum / this.parsed,
    };
  }
}

export function summarizeJudgments(judgments: readonly Judgment[]): IterationSummary['judge'] {
  const acc = new JudgmentSummary();
  acc.add(judgments);
  return acc.summary();
}

/** The summary as a Markdown page: a title, then one short table per stage. */
export function renderIterationSummaryMarkdown(summary: IterationSummary): string {
  const s = IterationSummary.parse(summary);
  const out: string[] = [];
  out.push(`# Run \`${s.run}\`, iteration ${s.iteration}`, '');
  out.push(`Model \`${s.modelIn}\` → ${s.modelOut === null ? '(not trained yet)' : `\`${s.modelOut}\``}`, '');

  out.push('## Prompts', '');
  out.push(
    ...table(
      ['', 'count'],
      [
        ['requested', s.prompts.requested],
        ['generated', s.prompts.generated],
        ['kept', s.prompts.kept],
        ...sortedEntries(s.prompts.dropped).map(([k, v]) => [`dropped: ${k}`, v] as Row),
      ],
    ),
    '',
  );

  out.push('## Candidates', '');
  out.push(
    ...table(
      ['', 'value'],
      [
        ['responses', s.candidates.count],
        ['mean tokens', s.candidates.meanTokens],
        ['median tokens', s.candidates.medianTokens],
        ['mean characters', s.candidates.meanChars],
      ],
    ),
    '',
  );

  out.push('## Judge', '');
  out.push(
    ...table(
      ['', 'value'],
      [
        ['judgments', s.judge.judgments],
        ['parsed', s.judge.parsed],
        ['parse rate', percent(s.judge.parseRate)],
        ['mean score', s.judge.meanScore],
      ],
    ),
    '',
  );
  const bins = Object.entries(s.judge.histogram).sort(([a], [b]) => Number(a) - Number(b));
  if (bins.length > 0) {
    out.push(...table(['score', ...bins.map(([k]) => k)], [['judgments', ...bins.map(([, v]) => v)]]), '');
  }

  out.push('## Preference pairs', '');
  out.push(
    ...table(['', 'value'], [['pairs', s.pairs.kept], ...sortedEntries(s.pairs.dropped).map(([k, v]) => [`dropped: ${k}`, v] as Row)]),
    '',
  );
  out.push(
    ...table(
      ['', 'chosen', 'rejected'],
      [
        ['mean score', s.pairs.meanChosenScore, s.pairs.meanRejectedScore],
        ['mean characters', s.pairs.meanChosenChars, s.pairs.meanRejectedChars],
      ],
    ),
    '',
  );

  out.push('## DPO', '');
  if (s.dpo === null) out.push('No training results.', '');
  else {
    out.push(
      ...table(
        ['', 'value'],
        [
          ['steps', s.dpo.steps],
          ['final loss', s.dpo.loss],
          ['reward accuracy', percent(s.dpo.rewardAccuracy)],
          ['reward margin', s.dpo.rewardMargin],
        ],
      ),
      '',
    );
  }

  if (Object.keys(s.skipped).length > 0) {
    out.push('## Skipped', '');
    out.push(
      ...table(
        ['reason', 'count'],
        sortedEntries(s.skipped).map(([k, v]) => [k, v] as Row),
      ),
      '',
    );
  }

  if (s.evaluation) out.push(...renderEvaluationMarkdown(s.evaluation));

  out.push('## Timings', '');
  const timings = Object.entries(s.timings);
  if (timings.length === 0) out.push('No timings recorded.', '');
  else
    out.push(
      ...table(
        ['stage', 'seconds'],
        timings.map(([k, v]) => [k, v] as Row),
      ),
      '',
    );
  return out.join('\n');
}

/** The evaluation section of an iteration summary: head-to-head, judge quality, lengths, watch, gate. */
function renderEvaluationMarkdown(e: EvaluationSummary): string[] {
  const out: string[] = ['## Evaluation', ''];
  if (e.headToHead.length > 0) {
    out.push(`Head-to-head on held-out prompts, each judged in both orders (a disagreement is a tie):`, '');
    out.push(
      ...table(
        ['opponent', 'judge', 'prompts', 'wins', 'ties', 'losses', 'win rate'],
        e.headToHead.map((h) => [h.opponent, h.judge, h.prompts, h.wins, h.ties, h.losses, percent(h.winRate)] as Row),
      ),
      '',
    );
  }
  if (e.judgeQuality.length > 0) {
    out.push('The model as a judge of held-out human rankings:', '');
    out.push(
      ...table(
        ['model', 'sets', 'pairwise acc.', '5-best', 'exact match', 'Spearman', 'Kendall τ', 'parse rate'],
        e.judgeQuality.map(
          (j) =>
            [
              j.model,
              j.sets,
              percent(j.pairwiseAccuracy),
              percent(j.fiveBest),
              percent(j.exactMatch),
              j.spearman,
              j.kendallTau,
              percent(j.parseRate),
            ] as Row,
        ),
      ),
      '',
    );
  }
  if (e.responses.length > 0) {
    out.push(
      ...table(
        ['held-out responses of', 'count', 'mean chars', 'median chars', 'mean tokens'],
        e.responses.map((r) => [r.model, r.count, r.meanChars, r.medianChars, r.meanTokens] as Row),
      ),
      '',
    );
  }
  out.push(
    ...table(
      ['reward-hacking watch', 'value'],
      [
        ['length–score correlation', e.watch.lengthScoreCorrelation],
        ['chosen − rejected characters', e.watch.chosenRejectedCharGap],
        ['share of scores at 5', percent(e.watch.topScoreShare)],
        ['score variance', e.watch.scoreVariance],
        ['judge parse failures', percent(e.watch.parseFailureRate)],
      ],
    ),
    '',
  );
  if (e.gate) {
    out.push(`**Promotion gate: ${e.gate.passed ? 'passed' : `held the model back (on failure: ${e.gate.onFail})`}**`, '');
    out.push(
      ...table(
        ['check', 'value', 'threshold', 'result'],
        e.gate.checks.map((c) => [c.message, c.value, c.threshold, c.passed ? 'pass' : 'not met'] as Row),
      ),
      '',
    );
  }
  return out;
}

type Cell = string | number | null;
type Row = Cell[];

function table(header: string[], rows: Row[]): string[] {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, k) => (k === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const row of rows) lines.push(`| ${row.map(cell).join(' | ')} |`);
  return lines;
}

function cell(value: Cell): string {
  if (value === null) return '–';
  if (typeof value === 'string') return value.replace(/\|/g, '\\|');
  return Number.isInteger(value) ? String(value) : value.toFixed(value !== 0 && Math.abs(value) < 0.01 ? 4 : 2);
}

function percent(value: number | null): string | null {
  return value === null ? null : `${(value * 100).toFixed(1)}%`;
}

function sortedEntries(record: Record<string, number>): [string, number][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
