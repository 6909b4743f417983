/**
 * Preference pairs from self-judged candidates (Yuan et al. 2024, section 2.3): per
 * prompt, the candidate with the highest mean judge score is chosen and the one with the
 * lowest is rejected; prompts whose candidates all score the same give no pair.
 */
import { recordId } from './ids';
import { mean } from './stats';
import type { Candidate, Judgment, PreferencePair } from './schemas';

export interface CandidateScore {
  /** mean of the parsed scores; null when none of its judgments parsed */
  mean: number | null;
  /** judgments with a parsed score */
  valid: number;
  /** all judgments of the candidate */
  total: number;
}

/** Mean score per candidate id. A judgment that failed to parse is left out, never counted as 0. */
export function scoreCandidates(judgments: readonly Judgment[]): Map<string, CandidateScore> {
  const byCandidate = new Map<string, { scores: number[]; total: number }>();
  for (const j of judgments) {
    let entry = byCandidate.get(j.candidateId);
    if (!entry) byCandidate.set(j.candidateId, (entry = { scores: [], total: 0 }));
    entry.total++;
    if (j.score !== null) entry.scores.push(j.score);
  }
  const out = new Map<string, CandidateScore>();
  for (const [id, { scores, total }] of byCandidate) {
    out.set(id, { mean: mean(scores), valid: scores.length, total });
  }
  return out;
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
  const rho = opts.lengthControlRho ?? 0;
  if (!(rho >= 0 && rho <= 1)) throw new RangeError(`lengthControlRho must be in [0, 1], got ${rho}`);
  const scores = scoreCandidates(judgments);
  const drops: Record<PairDropReason, number> = { tie: 0, too_few_scored: 0, identical_text: 0 };

  const byPrompt = new Map<string, Map<string, Candidate>>();
  for (const c of candidates) {
    let group = byPrompt.get(c.promptId);
    if (!group) byPrompt.set(c.promptId, (group = new Map()));
    if (!group.has(c.id)) group.set(c.id, c); // a repeated record counts once
  }
  const known = new Set(candidates.map((c) => c.id));
  const orphanJudgments = judgments.filter((j) => !known.has(j.candidateId)).length;

  const pairs: PreferencePair[] = [];
  for (const [promptId, group] of byPrompt) {
    const scored = [...group.values()]
      .map((c) => ({ c, mean: scores.get(c.id)?.mean ?? null }))
      .filter((s): s is { c: Candidate; mean: number } => s.mean !== null)
      .sort((x, y) => x.c.index - y.c.index || (x.c.id < y.c.id ? -1 : x.c.id > y.c.id ? 1 : 0));
    if (scored.length < 2) {
      drops.too_few_scored++;
      continue;
    }
    const max = Math.max(...scored.map((s) => s.mean));
    const min = Math.min(...scored.map((s) => s.mean));
    if (max - min < EPSILON) {
      drops.tie++;
      continue;
    }
    const margin = rho * (max - min) + EPSILON;
    const top = scored.filter((s) => s.mean >= max - margin);
    const bottom = scored.filter((s) => s.mean <= min + margin);
    // stable sorts: equal lengths keep candidate-index order
    const chosen = rho > 0 ? [...top].sort((x, y) => compareLength(x.c, y.c))[0]! : top[0]!;
    const rejected = rho > 0 ? [...bottom].sort((x, y) => compareLength(y.c, x.c))[0]! : bottom[0]!;
    if (chosen.c.id === rejected.c.id || chosen.c.text.trim() === rejected.c.text.trim()) {
      drops.identical_text++;
      continue;
    }
    pairs.push({
      id: recordId('pair', promptId),
      promptId,
      prompt: chosen.c.prompt,
      chosen: chosen.c.text,
      rejected: rejected.c.text,
      chosenId: chosen.c.id,
      rejectedId: rejected.c.id,
      chosenScore: chosen.mean,
      rejectedScore: rejected.mean,
    });
  }
  return { pairs, drops, scores, orphanJudgments };
}

// Means of the same scores summed in another order may differ in the last bit.
const EPSILON = 1e-9;

function compareLength(a: Candidate, b: Candidate): number {
  return a.tokens - b.tokens || a.text.length - b.text.length;
}

export interface PairSummary {
  kept: number;
  meanChosenScore: number | null;
  meanRejectedScore: number | null;
  meanChosenChars: number | null;
  meanRejectedChars: number | null;
}

export function summarizePairs(pairs: readonly PreferencePair[]): PairSummary {
  return {
    kept: pairs.length,
    meanChosenScore: mean(pairs.map((p) => p.chosenScore)),
    meanRejectedScore: mean(pairs.map((p) => p.rejectedScore)),
    meanChosenChars: mean(pairs.map((p) => p.chosen.length)),
    meanRejectedChars: mean(pairs.map((p) => p.rejected.length)),
  };
}
