/**
 * Evaluation metrics of a self-rewarding iteration: a model's quality as a judge of held-out
 * human rankings, head-to-head comparisons judged in both orders, response lengths, signs of
 * reward hacking in the iteration's own judging, and the promotion gate. Pure functions, no I/O.
 * A little over 500 lines: the metrics and the gate that decides on them stay together.
 */
import type { Candidate, GateConfig, Judgment, PreferencePair } from './schemas';
import {
  histogram,
  mean,
  median,
  type GateCheck,
  type GateDecision,
  type HeadToHead,
  type JudgeQuality,
  type ResponseLengths,
  type RewardWatch,
} from './stats';

/**
 * Two mean scores closer than this are equal: means of the same scores summed in another
 * order may differ in the last bit. Gate thresholds are compared with the same slack.
 */
const EPSILON = 1e-9;
/** the top of the 0-5 rubric, as a mean score */
const TOP_SCORE = 5 - EPSILON;

// ---------------------------------------------------------------------------------------
// Correlations
// ---------------------------------------------------------------------------------------

function checkSameLength(name: string, x: readonly unknown[], y: readonly unknown[]): void {
  if (x.length !== y.length) throw new RangeError(`${name}: ${x.length} values against ${y.length}`);
}

function isConstant(values: readonly number[]): boolean {
  return values.every((v) => v === values[0]);
}

/** Population variance; null for no values. */
export function variance(values: readonly number[]): number | null {
  const m = mean(values);
  if (m === null) return null;
  let sum = 0;
  for (const v of values) sum += (v - m) * (v - m);
  return sum / values.length;
}

/** Pearson's r; null when n < 2 or either side is constant. */
export function pearson(x: readonly number[], y: readonly number[]): number | null {
  checkSameLength('pearson', x, y);
  if (x.length < 2 || isConstant(x) || isConstant(y)) return null;
  const mx = mean(x)!;
  const my = mean(y)!;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  // rounding can carry |r| a hair past 1
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Ranks from 1 (smallest value), ties given the mean of the ranks they span. */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v);
  const ranks = new Array<number>(values.length);
  for (let start = 0; start < order.length;) {
    let end = start + 1;
    while (end < order.length && order[end]!.v === order[start]!.v) end++;
    // positions start..end-1 hold ranks start+1..end, whose mean is (start + 1 + end) / 2
    for (let k = start; k < end; k++) ranks[order[k]!.i] = (start + 1 + end) / 2;
    start = end;
  }
  return ranks;
}

/** Spearman's rho with average ranks for ties; null when n < 2 or either side is constant. */
export function spearman(x: readonly number[], y: readonly number[]): number | null {
  checkSameLength('spearman', x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

/** Kendall's tau-b (tie-corrected); null when n < 2 or either side is constant. */
export function kendallTauB(x: readonly number[], y: readonly number[]): number | null {
  checkSameLength('kendallTauB', x, y);
  const n = x.length;
  let concordant = 0;
  let discordant = 0;
  let tiedX = 0; // pairs tied in x (tied in both included)
  let tiedY = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const s = Math.sign(x[i]! - x[j]!) * Math.sign(y[i]! - y[j]!);
      if (x[i] === x[j]) tiedX++;
      if (y[i] === y[j]) tiedY++;
      if (s > 0) concordant++;
      else if (s < 0) discordant++;
    }
  }
  const pairs = (n * (n - 1)) / 2;
  if (n < 2 || tiedX === pairs || tiedY === pairs) return null;
  return Math.max(-1, Math.min(1, (concordant - discordant) / Math.sqrt((pairs - tiedX) * (pairs - tiedY))));
}

// ---------------------------------------------------------------------------------------
// The model as a judge of held-out human rankings
// ---------------------------------------------------------------------------------------

/** One held-out ranked set as judged: human ranks (0 = best; equal = tie) and the model's mean score per reply (null: no parsed score). */
export interface ScoredSet {
  human: readonly number[];
  scores: readonly (number | null)[];
}

/** -1, 0 or 1, with differences within EPSILON taken as 0 */
function scoreSign(d: number): number {
  return d > EPSILON ? 1 : d < -EPSILON ? -1 : 0;
}

/**
 * The paper's reward-modelling metrics. Replies without a score are left out of their set;
 * sets with fewer than two scored replies of different human rank are left out (not counted in `sets`).
 * pairwiseAccuracy: over all reply pairs with different human rank, the share where the higher-ranked
 *   reply has the strictly higher score (a score tie is a miss).
 * fiveBest: of replies scored 5 (mean score >= 5 - 1e-9), the share whose human rank is the best in their set (ties for best count).
 * exactMatch: share of sets where for every pair, sign(score difference) equals sign(human preference) (ties must match ties).
 * spearman / kendallTau: mean over sets of the per-set correlation between scores and (negated) human ranks; sets where
 *   it is undefined are left out; correlatedSets counts the rest.
 * judgments/parsed/parseRate: from `parse` (raw judgment samples); histogram: histogram() (core/stats.ts) of the per-reply mean scores.
 *
 * Details: scores within 1e-9 of each other are equal. fiveBest counts the replies of counted sets
 * only, and "best" is the best human rank of the whole set, scored or not (a 5 given to the
 * second-best reply is a miss even when the best one has no score). The histogram holds every
 * scored reply, in counted sets or not. Throws when a set's two arrays differ in length.
 */
export function judgeQuality(model: string, sets: readonly ScoredSet[], parse: { judgments: number; parsed: number }): JudgeQuality {
  let counted = 0;
  let pairs = 0;
  let correctPairs = 0;
  let fives = 0;
  let fivesBest = 0;
  let exact = 0;
  const rhos: number[] = [];
  const taus: number[] = [];
  const replyScores: number[] = [];

  for (const set of sets) {
    checkSameLength('judgeQuality: human ranks and scores', set.human, set.scores);
    const replies: { rank: number; score: number }[] = [];
    set.scores.forEach((score, i) => {
      if (score !== null) replies.push({ rank: set.human[i]!, score });
    });
    replyScores.push(...replies.map((r) => r.score));
    if (!replies.some((r) => r.rank !== replies[0]!.rank)) continue;
    counted++;

    let allMatch = true;
    for (let i = 0; i < replies.length; i++) {
      for (let j = i + 1; j < replies.length; j++) {
        const a = replies[i]!;
        const b = replies[j]!;
        // positive: a is preferred (a lower rank number is better)
        const human = Math.sign(b.rank - a.rank);
        const model = scoreSign(a.score - b.score);
        if (human !== model) allMatch = false;
        if (human === 0) continue;
        pairs++;
        if (model === human) correctPairs++;
      }
    }
    if (allMatch) exact++;

    const best = Math.min(...set.human);
    for (const r of replies) {
      if (r.score < TOP_SCORE) continue;
      fives++;
      if (r.rank === best) fivesBest++;
    }

    const scores = replies.map((r) => r.score);
    const preference = replies.map((r) => -r.rank);
    const rho = spearman(scores, preference);
    const tau = kendallTauB(scores, preference);
    // both are undefined exactly when the scores are constant (the ranks here never are)
    if (rho !== null && tau !== null) {
      rhos.push(rho);
      taus.push(tau);
    }
  }

  return {
    model,
    sets: counted,
    pairs,
    pairwiseAccuracy: pairs === 0 ? null : correctPairs / pairs,
    fiveBest: fives === 0 ? null : fivesBest / fives,
    exactMatch: counted === 0 ? null : exact / counted,
    spearman: mean(rhos),
    kendallTau: mean(taus),
    correlatedSets: rhos.length,
    judgments: parse.judgments,
    parsed: parse.parsed,
    parseRate: parse.judgments === 0 ? null : parse.parsed / parse.judgments,
    histogram: histogram(replyScores),
  };
}

// ---------------------------------------------------------------------------------------
// Head-to-head comparisons
// ---------------------------------------------------------------------------------------

/** Bump when the pairwise judge's prompt changes: verdicts under another version are not comparable. */
export const PAIRWISE_PROMPT_VERSION = 'pairwise-ab-v1';

function cutResponse(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let end = maxChars;
  // never split a surrogate pair
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}\n[… response cut here: ${text.length - end} more characters not shown]`;
}

/**
 * The head-to-head judge's prompt: the instruction and two responses labelled A and B, asking
 * for a short comparison and then a final line `Verdict: A` or `Verdict: B` (no ties). A
 * response longer than `maxChars` characters is cut there, followed by a marker line saying how
 * many characters were left out.
 */
export function pairwiseJudgePrompt(instruction: string, responseA: string, responseB: string, maxChars: number): string {
  if (!Number.isInteger(maxChars) || maxChars < 1)
    throw new RangeError(`pairwiseJudgePrompt: maxChars must be a positive integer, got ${maxChars}`);
  return `Two assistants answered the same user request. Decide which answer serves the user better.

Consider, in this order: does the answer do what the user asked; is what it says correct; is it clear and well organised. Length is no merit in itself: a longer answer wins only when the extra text helps the user. The order in which the answers appear means nothing.

<request>
${instruction}
</request>

<response_a>
${cutResponse(responseA, maxChars)}
</response_a>

<response_b>
${cutResponse(responseB, maxChars)}
</response_b>

Compare the two answers in no more than 80 words. Then end with a final line written exactly as "Verdict: <letter>", where <letter> is A or B. You must pick one, even when they are close.`;
}

const PREFIX_WORD = String.raw`(?:response|output|assistant|option|answer|model|candidate)`;
/** a verdict label anywhere in a line, then its separator */
const VERDICT_LABEL = new RegExp(
  String.raw`(?<![A-Za-z])(?:verdict|winner|better response|preferred response|preference|choice|decision)[*_]*[ \t]*(?::|=|：|[-–—](?=\s)|(?<=\s)is\b[ \t]*:?)`,
  'gi',
);
const OPENING = /^[\s*_`"'[({<]*/;
const CLOSING = /^[\s*_`"')\]}>.!?,;:]*/;
const NO_WINNER = /^(?:it'?s\s+)?(?:a\s+)?(?:tie|draw|neither|both|equal|equally|none|same)\b/i;
const CHOICE = new RegExp(String.raw`^(?:${PREFIX_WORD}[\s*_]*[([]?\s*)?([ab])(?![A-Za-z0-9])`, 'i');
const SECOND_CHOICE = new RegExp(
  String.raw`^\s*(?:/|&|\+|=|,|\bor\b|\band\b|\bvs\b\.?)[\s*_\x60"'[({<]*(?:${PREFIX_WORD}[\s*_]*[([]?\s*)?[ab](?![A-Za-z0-9])`,
  'i',
);
/** a line that is nothing but a letter in markup: "B", "**A**", "[[B]]", "(A)." */
const BARE_LETTER = /^[\s#>*_`"'[({<-]*([ab])[\s*_`"')\]}>.!]*$/i;

/**
 * The verdict a labelled statement's value gives: 'A' / 'B'; null for an explicit tie or a
 * contradiction; undefined when the value is not a verdict at all (the statement is ignored).
 */
function readVerdictValue(value: string): 'A' | 'B' | null | undefined {
  const v = value.replace(OPENING, '');
  if (NO_WINNER.test(v)) return null;
  const m = CHOICE.exec(v);
  if (m === null) return undefined;
  const letter = m[1]!;
  const rest = v.slice(m[0].length);
  if (SECOND_CHOICE.test(rest.replace(/^[*_`"')\]}>]*/, ''))) return null;
  // a lone lower-case "a" opens prose ("a close call") unless nothing follows it
  const prefixed = m[0].length > 1;
  if (letter === letter.toLowerCase() && !prefixed && rest.replace(CLOSING, '') !== '') return undefined;
  return letter.toUpperCase() as 'A' | 'B';
}

/**
 * The verdict in the head-to-head judge's generated text: 'A', 'B', or null when it gives none,
 * calls a tie, or names both. The LAST verdict line wins.
 *
 * A verdict line is either
 * - a labelled statement: `Verdict`, `Winner`, `Better response`, `Preferred response`,
 *   `Preference`, `Choice` or `Decision` (any case, anywhere in the line, so "Final verdict"
 *   and "My final verdict is" work; possibly in markdown emphasis), a separator (`:`, `=`,
 *   a dash with a space after it, or `is`), then the value: the letter A or B, possibly after
 *   a word such as "Response", "Output" or "Assistant", possibly in emphasis, brackets or
 *   quotes (`**A**`, `[[B]]`, `"Response A"`, `Output (b)`), followed by closing markup,
 *   punctuation or (for an upper-case letter or a prefixed one) any explanation; or
 * - a line holding nothing but the letter in markup (`B`, `**A**`, `[[B]]`, `(A).`).
 *
 * The last verdict line of the text wins, and within a line its last statement. A statement
 * whose value names no single winner makes the verdict null: a tie (`Verdict: tie`, `both`,
 * `neither`, `equal`, `none`) or both letters (`A/B`, `A or B`, `A and B`, `A, B`).
 * Values that are neither (`Verdict: depends on the reader`, `verdict: a close call`) are not
 * statements and are skipped. A lower-case bare `a` counts only when nothing but markup or
 * punctuation follows it, so the article is never read as a verdict.
 */
export function parsePairwiseVerdict(text: string): 'A' | 'B' | null {
  let verdict: 'A' | 'B' | null = null;
  for (const line of text.split(/\r?\n|\r/)) {
    let found: 'A' | 'B' | null | undefined;
    for (const m of line.matchAll(VERDICT_LABEL)) {
      const value = readVerdictValue(line.slice(m.index + m[0].length));
      if (value !== undefined) found = value;
    }
    if (found === undefined) {
      const bare = BARE_LETTER.exec(line);
      if (bare !== null) found = bare[1]!.toUpperCase() as 'A' | 'B';
    }
    if (found !== undefined) verdict = found;
  }
  return verdict;
}

/**
 * One verdict pair per prompt: `modelFirst` = verdict when the model's response was shown as A; `modelSecond` = when it was B.
 * Win: both orders prefer the model; loss: both prefer the opponent; otherwise a tie (disagreement, or any null).
 * winRate = (wins + ties/2) / prompts (null for none); orderDisagreements counts both-parsed-but-different; unparsed counts nulls.
 *
 * "Different" means the two orders prefer different responses (the same letter twice: the judge
 * followed the position, not the content).
 */
export function headToHead(
  model: string,
  opponent: string,
  judge: string,
  verdicts: readonly { modelFirst: 'A' | 'B' | null; modelSecond: 'A' | 'B' | null }[],
): HeadToHead {
  let wins = 0;
  let losses = 0;
  let ties = 0;
  let orderDisagreements = 0;
  let unparsed = 0;
  for (const { modelFirst, modelSecond } of verdicts) {
    if (modelFirst === null) unparsed++;
    if (modelSecond === null) unparsed++;
    // true: this order preferred the model
    const first = modelFirst === null ? null : modelFirst === 'A';
    const second = modelSecond === null ? null : modelSecond === 'B';
    if (first === true && second === true) wins++;
    else if (first === false && second === false) losses++;
    else {
      ties++;
      if (first !== null && second !== null) orderDisagreements++;
    }
  }
  const prompts = verdicts.length;
  return {
    model,
    opponent,
    judge,
    prompts,
    wins,
    losses,
    ties,
    winRate: prompts === 0 ? null : (wins + ties / 2) / prompts,
    orderDisagreements,
    unparsed,
  };
}

/** Lengths of a model's responses on the held-out prompts (characters as UTF-16 code units, as everywhere in srlm). */
export function responseLengths(model: string, responses: readonly { text: string; tokens: number }[]): ResponseLengths {
  const chars = responses.map((r) => r.text.length);
  return {
    model,
    count: responses.length,
    meanChars: mean(chars),
    medianChars: median(chars),
    meanTokens: mean(responses.map((r) => r.tokens)),
  };
}

// ---------------------------------------------------------------------------------------
// Reward watch
// ---------------------------------------------------------------------------------------

/**
 * Streams over an iteration's candidates, judgments and pairs (any order, batch by batch; stages can be 100k+ records,
 * so keep per-candidate numbers only: length and score sum/count by candidate id, not texts) and gives the RewardWatch:
 * lengthScoreCorrelation = pearson(chars, mean score) over candidates with at least one parsed score;
 * chosenRejectedCharGap = mean chosen chars - mean rejected chars (null without pairs);
 * topScoreShare = share of parsed judgments with score >= 5 - 1e-9; scoreVariance = variance of parsed judgment scores;
 * parseFailureRate = 1 - parsed/judgments (null for none).
 *
 * A candidate id given twice keeps its first length; judgments of candidates never given count
 * in every figure but the length correlation.
 */
export class RewardWatchAccumulator {
  /** characters by candidate id */
  private readonly chars = new Map<string, number>();
  /** parsed scores by candidate id: [sum, count] */
  private readonly scores = new Map<string, [number, number]>();
  private judgments = 0;
  private parsed = 0;
  private top = 0;
  // Welford's running mean and sum of squared deviations of the parsed scores
  private scoreMean = 0;
  private scoreM2 = 0;
  /** pairs, and the sum of their chosen-minus-rejected characters */
  private gap = { pairs: 0, sum: 0 };

  addCandidates(batch: readonly Candidate[]): void {
    for (const c of batch) if (!this.chars.has(c.id)) this.chars.set(c.id, c.text.length);
  }

  addJudgments(batch: readonly Judgment[]): void {
    for (const j of batch) {
      this.judgments++;
      if (j.score === null) continue;
      this.parsed++;
      if (j.score >= TOP_SCORE) this.top++;
      const delta = j.score - this.scoreMean;
      this.scoreMean += delta / this.parsed;
      this.scoreM2 += delta * (j.score - this.scoreMean);
      const entry = this.scores.get(j.candidateId);
      if (entry) {
        entry[0] += j.score;
        entry[1]++;
      } else this.scores.set(j.candidateId, [j.score, 1]);
    }
  }

  addPairs(batch: readonly PreferencePair[]): void {
    for (const p of batch) this.gap = { pairs: this.gap.pairs + 1, sum: this.gap.sum + p.chosen.length - p.rejected.length };
  }

  watch(): RewardWatch {
    const lengths: number[] = [];
    const means: number[] = [];
    for (const [id, [sum, count]] of this.scores) {
      const chars = this.chars.get(id);
      if (chars === undefined) continue;
      lengths.push(chars);
      means.push(sum / count);
    }
    return {
      lengthScoreCorrelation: pearson(lengths, means),
      chosenRejectedCharGap: this.gap.pairs === 0 ? null : this.gap.sum / this.gap.pairs,
      topScoreShare: this.parsed === 0 ? null : this.top / this.parsed,
      scoreVariance: this.parsed === 0 ? null : Math.max(0, this.scoreM2 / this.parsed),
      parseFailureRate: this.judgments === 0 ? null : 1 - this.parsed / this.judgments,
    };
  }
}

// ---------------------------------------------------------------------------------------
// Promotion gate
// ---------------------------------------------------------------------------------------

export interface GateInput {
  model: string;
  previousModel: string;
  headToHead: readonly HeadToHead[];
  judgeQuality: readonly JudgeQuality[];
  previousJudgeQuality: JudgeQuality | null;
  responses: readonly ResponseLengths[];
  watch: RewardWatch;
}

/** The gate's thresholds, in GateConfig's field order. */
export const GATE_CHECKS = [
  'minWinRateVsPrevious',
  'minWinRateVsReference',
  'maxJudgeAccuracyDrop',
  'maxTopScoreShare',
  'minJudgeParseRate',
  'maxLengthGrowth',
] as const;
export type GateCheckName = (typeof GATE_CHECKS)[number];

/** Two decimals, or up to six where two would show a failing value equal to its threshold. */
function figures(value: number, threshold: number): [string, string] {
  for (let digits = 2; digits < 6; digits++) {
    const [v, t] = [value.toFixed(digits), threshold.toFixed(digits)];
    if (v !== t) return [v, t];
  }
  return [value.toFixed(6), threshold.toFixed(6)];
}

/** `subject` measured `value`, which must be at least (min) or at most (max) `threshold`. */
function compare(name: GateCheckName, kind: 'min' | 'max', threshold: number, subject: string, value: number, detail = ''): GateCheck {
  const passed = kind === 'min' ? value >= threshold - EPSILON : value <= threshold + EPSILON;
  const [v, t] = passed ? [value.toFixed(2), threshold.toFixed(2)] : figures(value, threshold);
  const op = passed ? (kind === 'min' ? '>=' : '<=') : kind === 'min' ? '<' : '>';
  return { name, value, threshold, passed, message: `${subject} ${v} ${op} ${t}${detail}` };
}

function unmeasured(name: GateCheckName, threshold: number, message: string): GateCheck {
  return { name, value: null, threshold, passed: false, message };
}

function gateCheck(name: GateCheckName, threshold: number, input: GateInput): GateCheck {
  const { model, previousModel } = input;
  switch (name) {
    case 'minWinRateVsPrevious':
    case 'minWinRateVsReference': {
      const opponent = name === 'minWinRateVsPrevious' ? previousModel : 'reference';
      const against = name === 'minWinRateVsPrevious' ? `against ${previousModel}` : 'against the reference outputs';
      const rate = input.headToHead.find((h) => h.opponent === opponent)?.winRate ?? null;
      if (rate === null) {
        const source = name === 'minWinRateVsPrevious' ? '"previous"' : '"reference"';
        return unmeasured(
          name,
          threshold,
          `win rate ${against} was not measured (evaluation.prompts, evaluation.judge and ${source} in evaluation.opponents provide it)`,
        );
      }
      return compare(name, 'min', threshold, `win rate ${against}`, rate);
    }
    case 'maxJudgeAccuracyDrop': {
      const before = input.previousJudgeQuality?.pairwiseAccuracy ?? null;
      const after = input.judgeQuality.find((q) => q.model === model)?.pairwiseAccuracy ?? null;
      if (before === null || after === null) {
        const missing = [before === null ? previousModel : null, after === null ? model : null].filter((m) => m !== null).join(' and ');
        return unmeasured(
          name,
          threshold,
          `judge accuracy drop was not measured: no pairwise accuracy of ${missing} on held-out human rankings (evaluation.judgeSet provides it)`,
        );
      }
      return compare(
        name,
        'max',
        threshold,
        `judge pairwise accuracy drop from ${previousModel} to ${model}`,
        before - after,
        ` (${before.toFixed(2)} → ${after.toFixed(2)})`,
      );
    }
    case 'maxTopScoreShare': {
      const share = input.watch.topScoreShare;
      if (share === null)
        return unmeasured(
          name,
          threshold,
          `share of judgments scoring 5 was not measured: the iteration has no parsed judgments (the judge stage, config section judge)`,
        );
      return compare(name, 'max', threshold, 'share of judgments scoring 5 is', share);
    }
    case 'minJudgeParseRate': {
      const failures = input.watch.parseFailureRate;
      if (failures === null)
        return unmeasured(
          name,
          threshold,
          `judge parse rate was not measured: the iteration has no judgments (the judge stage, config section judge)`,
        );
      return compare(name, 'min', threshold, 'judge parse rate', 1 - failures);
    }
    case 'maxLengthGrowth': {
      const before = input.responses.find((r) => r.model === previousModel)?.meanChars ?? null;
      const after = input.responses.find((r) => r.model === model)?.meanChars ?? null;
      if (before === null || after === null) {
        const missing = [before === null ? previousModel : null, after === null ? model : null].filter((m) => m !== null).join(' and ');
        return unmeasured(
          name,
          threshold,
          `response length growth was not measured: no responses of ${missing} on held-out prompts (evaluation.prompts provides them)`,
        );
      }
      if (before === 0 && after > 0) {
        return unmeasured(
          name,
          threshold,
          `response length growth from ${previousModel} to ${model} is unbounded: ${previousModel}'s responses average 0 characters`,
        );
      }
      const growth = before === 0 ? 1 : after / before;
      return compare(
        name,
        'max',
        threshold,
        `mean response length growth from ${previousModel} to ${model}`,
        growth,
        ` (${Math.round(before)} → ${Math.round(after)} characters)`,
      );
    }
  }
}

/**
 * The promotion gate: one GateCheck per threshold set in `gate` (absent ones are not checked), in GateConfig's field order.
 * minWinRateVsPrevious: the headToHead entry whose opponent === input.previousModel; minWinRateVsReference: opponent === 'reference';
 * maxJudgeAccuracyDrop: previousJudgeQuality.pairwiseAccuracy - (judgeQuality of input.model).pairwiseAccuracy must be <= threshold;
 * maxTopScoreShare / minJudgeParseRate (1 - parseFailureRate) from watch; maxLengthGrowth: meanChars(model) / meanChars(previousModel) from responses.
 * A needed value that is missing/null FAILS its check with a message saying what was not measured and which config section provides it.
 * Messages are one human sentence with the figures, e.g. "win rate against demo.m1 0.42 < 0.50". passed = every check passed (true with no checks).
 *
 * Details: a value within 1e-9 of its threshold passes (0.8 - 0.7 is 0.10000000000000009); the
 * first matching entry of a list is used; growth from an all-empty previous model is 1 when the
 * new one is empty too, otherwise unbounded (a failure with a null value).
 */
export function decideGate(gate: GateConfig, input: GateInput): GateDecision {
  const checks: GateCheck[] = [];
  for (const name of GATE_CHECKS) {
    const threshold = gate[name];
    if (threshold !== undefined) checks.push(gateCheck(name, threshold, input));
  }
  return { passed: checks.every((c) => c.passed), checks, onFail: gate.onFail };
}
