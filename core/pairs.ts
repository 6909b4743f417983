/**
 * Preference pairs from self-judged candidates (Yuan et al. 2024, section 2.3): per
 * prompt, the candidate with the highest mean judge score is chosen and the one with the
 * lowest is rejected; prompts whose candidates all score the same give no pair.
 */
import { recordId } from './ids';
import type { Candidate, Judgment, PreferencePair } from './schemas';

export interface CandidateScore {
  /** mean of the parsed scores; null when none of its judgments parsed */
  mean: number | null;
  /** judgments with a parsed score */
  valid: number;
  /** all judgments of the candidate */
  total: number;
}

/**
 * Mean score per candidate id, judgments added batch by batch. A judgment that failed to
 * parse is left out, never counted as 0. Sums run in judgment order, as `mean` does.
 */
export class ScoreAccumulator {
  private readonly byCandidate = new Map<string, { sum: number; valid: number; total: number }>();

  add(judgments: readonly Pick<Judgment, 'candidateId' | 'score'>[]): void {
    for (const j of judgments) {
      let entry = this.byCandidate.get(j.candidateId);
      if (!entry) this.byCandidate.set(j.candidateId, (entry = { sum: 0, valid: 0, total: 0 }));
      entry.total++;
      if (j.score !== null) {
        entry.sum += j.score;
        entry.valid++;
      }
    }
  }

  scores(): Map<string, CandidateScore> {
    const out = new Map<string, CandidateScore>();
    for (const [id, { sum, valid, total }] of this.byCandidate) out.set(id, { mean: valid === 0 ? null : sum / valid, valid, total });
    return out;
  }
}

/** Mean score per candidate id. A judgment that failed to parse is left out, never counted as 0. */
export function scoreCandidates(judgments: readonly Judgment[]): Map<string, CandidateScore> {
  const acc = new ScoreAccumulator();
  acc.add(judgments);
  return acc.scores();
}

export const PAIR_DROP_REASONS = ['tie', 'too_few_scored', 'identical_text'] as const;
export type PairDropReason = (typeof PAIR_DROP_REASONS)[number];

export interface PairSelectionOptions {
  /**
   * Length control as in Meta-Rewarding (Wu et al. 2024), off (0) by default as in Yuan et
   * al.: with ρ > 0 the chosen reply is the shortest whose mean is within ρ·(max − min) of
   * the maximum, and the rejected reply is the longest within ρ·(max − min) of the
   * minimum. Length is the candidate's token count, then its characters.
   */
  lengthControlRho?: number;
}

export interface PairSelection {
  pairs: PreferencePair[];
  drops: Record<PairDropReason, number>;
  scores: Map<string, CandidateScore>;
  /** judgments whose candidate is not among `candidates` (ignored) */
  orphanJudgments: number;
}

/** What pair choice needs of a candidate: no texts. */
export interface CandidateInfo {
  id: string;
  promptId: string;
  index: number;
  tokens: number;
  /** characters of the text */
  chars: number;
}

export interface PairChoice<C extends CandidateInfo> {
  chosen: C;
  rejected: C;
  chosenScore: number;
  rejectedScore: number;
}

function checkRho(opts: PairSelectionOptions): number {
  const rho = opts.lengthControlRho ?? 0;
  if (!(rho >= 0 && rho <= 1)) throw new RangeError(`lengthControlRho must be in [0, 1], got ${rho}`);
  return rho;
}

/**
 * The chosen and rejected candidate of one prompt's candidates (each id once), or why there is
 * none. Ties between equal means are broken by candidate index (lower first). The caller still
 * drops a pair whose two texts are the same (`identical_text`).
 */
export function choosePair<C extends CandidateInfo>(
  group: Iterable<C>,
  scores: ReadonlyMap<string, CandidateScore>,
  rho: number,
): PairChoice<C> | PairDropReason {
  const scored = [...group]
    .map((c) => ({ c, mean: scores.get(c.id)?.mean ?? null }))
    .filter((s): s is { c: C; mean: number } => s.mean !== null)
    .sort((x, y) => x.c.index - y.c.index || (x.c.id < y.c.id ? -1 : x.c.id > y.c.id ? 1 : 0));
  if (scored.length < 2) return 'too_few_scored';
  const max = Math.max(...scored.map((s) => s.mean));
  const min = Math.min(...scored.map((s) => s.mean));
  if (max - min < EPSILON) return 'tie';
  const margin = rho * (max - min) + EPSILON;
  const top = scored.filter((s) => s.mean >= max - margin);
  const bottom = scored.filter((s) => s.mean <= min + margin);
  // stable sorts: equal lengths keep candidate-index order
  const chosen = rho > 0 ? [...top].sort((x, y) => compareLength(x.c, y.c))[0]! : top[0]!;
  const rejected = rho > 0 ? [...bottom].sort((x, y) => compareLength(y.c, x.c))[0]! : bottom[0]!;
  if (chosen.c.id === rejected.c.id) return 'identical_text';
  return { chosen: chosen.c, rejected: rejected.c, chosenScore: chosen.mean, rejectedScore: rejected.mean };
}

function toPair(promptId: string, choice: PairChoice<CandidateInfo>, prompt: string, chosen: string, rejected: string): PreferencePair {
  return {
    id: recordId('pair', promptId),
    promptId,
    prompt,
    chosen,
    rejected,
    chosenId: choice.chosen.id,
    rejectedId: choice.rejected.id,
    chosenScore: choice.chosenScore,
    rejectedScore: choice.rejectedScore,
  };
}

/**
 * One pair per prompt, in order of the prompts' first appearance in `candidates`.
 * Ties between equal means are broken by candidate index (lower first), so the result
 * depends only on the records, not their order.
 */
export function selectPreferencePairs(
  candidates: readonly Candidate[],
  judgments: readonly Judgment[],
  opts: PairSelectionOptions = {},
): PairSelection {
  const rho = checkRho(opts);
  const scores = scoreCandidates(judgments);
  const drops: Record<PairDropReason, number> = { tie: 0, too_few_scored: 0, identical_text: 0 };

  const byPrompt = new Map<string, Map<string, Candidate & { chars: number }>>();
  for (const c of candidates) {
    let group = byPrompt.get(c.promptId);
    if (!group) byPrompt.set(c.promptId, (group = new Map()));
    if (!group.has(c.id)) group.set(c.id, { ...c, chars: c.text.length }); // a repeated record counts once
  }
  const known = new Set(candidates.map((c) => c.id));
  const orphanJudgments = judgments.filter((j) => !known.has(j.candidateId)).length;

  const pairs: PreferencePair[] = [];
  for (const [promptId, group] of byPrompt) {
    const choice = choosePair(group.values(), scores, rho);
    if (typeof choice === 'string') {
      drops[choice]++;
      continue;
    }
    if (choice.chosen.text.trim() === choice.rejected.text.trim()) {
      drops.identical_text++;
      continue;
    }
    pairs.push(toPair(promptId, choice, choice.chosen.prompt, choice.chosen.text, choice.rejected.text));
  }
  return { pairs, drops, scores, orphanJudgments };
}

/**
 * `selectPreferencePairs` over stages read batch by batch, holding no texts but those of pairs
 * not yet emitted: pass 1 gives every candidate (`addCandidates`) and judgment
 * (`addJudgments`), `choose()` picks each prompt's pair, pass 2 gives the candidates again
 * (`addTexts`, which returns the pairs complete so far, in prompt order). Same pairs and drops.
 */
export class PairSelector {
  private readonly rho: number;
  private readonly byPrompt = new Map<string, Map<string, CandidateInfo>>();
  private readonly acc = new ScoreAccumulator();
  private choices: { promptId: string; choice: PairChoice<CandidateInfo> }[] = [];
  /** texts wanted in pass 2 by candidate id; filled once (the first record of an id counts) */
  private readonly texts = new Map<string, { prompt: string; text: string } | null>();
  private next = 0;
  private promptCount = 0;
  readonly drops: Record<PairDropReason, number> = { tie: 0, too_few_scored: 0, identical_text: 0 };
  pairs = 0;

  constructor(opts: PairSelectionOptions = {}) {
    this.rho = checkRho(opts);
  }

  /** prompts seen in pass 1 */
  get prompts(): number {
    return Math.max(this.promptCount, this.byPrompt.size);
  }

  addCandidates(candidates: readonly Candidate[]): void {
    for (const c of candidates) {
      let group = this.byPrompt.get(c.promptId);
      if (!group) this.byPrompt.set(c.promptId, (group = new Map()));
      if (!group.has(c.id)) group.set(c.id, { id: c.id, promptId: c.promptId, index: c.index, tokens: c.tokens, chars: c.text.length });
    }
  }

  addJudgments(judgments: readonly Judgment[]): void {
    this.acc.add(judgments);
  }

  choose(): void {
    const scores = this.acc.scores();
    for (const [promptId, group] of this.byPrompt) {
      const choice = choosePair(group.values(), scores, this.rho);
      if (typeof choice === 'string') {
        this.drops[choice]++;
        continue;
      }
      this.choices.push({ promptId, choice });
      this.texts.set(choice.chosen.id, null);
      this.texts.set(choice.rejected.id, null);
    }
    this.promptCount = this.byPrompt.size;
    this.byPrompt.clear();
  }

  addTexts(candidates: readonly Candidate[]): PreferencePair[] {
    for (const c of candidates) if (this.texts.get(c.id) === null) this.texts.set(c.id, { prompt: c.prompt, text: c.text });
    const out: PreferencePair[] = [];
    for (; this.next < this.choices.length; this.next++) {
      const { promptId, choice } = this.choices[this.next]!;
      const chosen = this.texts.get(choice.chosen.id);
      const rejected = this.texts.get(choice.rejected.id);
      if (!chosen || !rejected) break;
      this.texts.delete(choice.chosen.id);
      this.texts.delete(choice.rejected.id);
      if (chosen.text.trim() === rejected.text.trim()) this.drops.identical_text++;
      else out.push(toPair(promptId, choice, chosen.prompt, chosen.text, rejected.text));
    }
    this.pairs += out.length;
    return out;
  }

  /** Throws when pass 2 lacked a chosen or rejected candidate (the stage changed between passes). */
  finish(): void {
    if (this.next < this.choices.length)
      throw new Error(`pair selection: ${this.choices.length - this.next} chosen pairs lack candidate texts in the second pass`);
    this.choices = [];
  }
}

// Means of the same scores summed in another order may differ in the last bit.
const EPSILON = 1e-9;

function compareLength(a: CandidateInfo, b: CandidateInfo): number {
  return a.tokens - b.tokens || a.chars - b.chars;
}

export interface PairSummary {
  kept: number;
  meanChosenScore: number | null;
  meanRejectedScore: number | null;
  meanChosenChars: number | null;
  meanRejectedChars: number | null;
}

/** summarizePairs over batches. */
export class PairSummaryAccumulator {
  private kept = 0;
  private chosenScore = 0;
  private rejectedScore = 0;
  private chosenChars = 0;
  private rejectedChars = 0;

  add(pairs: readonly PreferencePair[]): void {
    for (const p of pairs) {
      this.kept++;
      this.chosenScore += p.chosenScore;
      this.rejectedScore += p.rejectedScore;
      this.chosenChars += p.chosen.length;
      this.rejectedChars += p.rejected.length;
    }
  }

  summary(): PairSummary {
    const m = (sum: number): number | null => (this.kept === 0 ? null : sum / this.kept);
    return {
      kept: this.kept,
      meanChosenScore: m(this.chosenScore),
      meanRejectedScore: m(this.rejectedScore),
      meanChosenChars: m(this.chosenChars),
      meanRejectedChars: m(this.rejectedChars),
    };
  }
}

export function summarizePairs(pairs: readonly PreferencePair[]): PairSummary {
  const acc = new PairSummaryAccumulator();
  acc.add(pairs);
  return acc.summary();
}
