/**
 * Evaluation fine-tuning (EFT) data, built as in Yuan et al. 2024: the SFT baseline
 * judges human-ranked replies with the rubric, and a prompt's judgments become training
 * examples only where the scores order the replies as the humans did.
 */
import { recordId } from './ids';
import { judgePrompt } from './rubric';
import type { EftJudgment, RankedSet, SftExample } from './schemas';

/**
 * Whether judge scores order the replies the way the human ranks do (rank 0 is best).
 *
 * Strict: for every two replies i, j with rank_i < rank_j the judge must give
 * score_i > score_j. Equal scores for differently ranked replies do not agree, because a
 * judgment that cannot tell them apart teaches nothing about ranking. Replies with equal
 * human ranks place no constraint on each other.
 */
export function rankingAgrees(humanRanks: readonly number[], scores: readonly number[]): boolean {
  if (humanRanks.length !== scores.length) {
    throw new RangeError(`rankingAgrees: ${humanRanks.length} ranks but ${scores.length} scores`);
  }
  for (let i = 0; i < humanRanks.length; i++) {
    for (let j = 0; j < humanRanks.length; j++) {
      if (humanRanks[i]! < humanRanks[j]! && !(scores[i]! > scores[j]!)) return false;
    }
  }
  return true;
}

/**
 * What the builder reads of an EftJudgment (schemas.ts): `replyIndex` is the reply's
 * position in `set.replies`, `sample` the judge sample (0-based), `text` the judge's
 * generated text and `score` its parsed score or null.
 */
export type EftJudgmentInput = Pick<EftJudgment, 'setId' | 'replyIndex' | 'sample' | 'text' | 'score'>;

export type EftStats = {
  sets: number;
  /** (set, sample) combinations looked at */
  judged: number;
  /** ... where every reply had a judgment for that sample */
  complete: number;
  /** ... of those, where at least one judgment failed to parse */
  parseFailures: number;
  /** ... of those fully parsed, where the ranking agreed / disagreed */
  agreeing: number;
  disagreeing: number;
  /** sets with no agreeing sample at all */
  setsWithoutExample: number;
  examples: number;
  /** examples dropped because an identical (prompt, completion) was already emitted */
  duplicates: number;
  /** judgments naming an unknown set or reply */
  orphanJudgments: number;
  /** examples of the over-represented score dropped by downsampling (see downsampleScore) */
  downsampled: number;
};

export interface EftOptions {
  /**
   * The score whose examples are downsampled (the paper's EFT data was skewed towards 4), or
   * null for none: when more examples carry it than carry the most frequent other score, only
   * that many are kept, chosen by id (deterministic, independent of order).
   */
  downsampleScore: number | null;
}

/**
 * For each set and each sample index s, takes the s-th judgment of every reply; when all
 * of them parsed and rankingAgrees, emits one example per reply: the judge prompt for
 * (set.prompt, reply) as prompt and the judgment text as completion.
 */
export function buildEftExamples(
  sets: readonly RankedSet[],
  judgments: readonly EftJudgmentInput[],
  options: EftOptions = { downsampleScore: null },
): { examples: SftExample[]; stats: EftStats } {
  const stats: EftStats = {
    sets: sets.length,
    judged: 0,
    complete: 0,
    parseFailures: 0,
    agreeing: 0,
    disagreeing: 0,
    setsWithoutExample: 0,
    examples: 0,
    duplicates: 0,
    orphanJudgments: 0,
    downsampled: 0,
  };
  const setsById = new Map(sets.map((s) => [s.id, s]));
  // set id -> sample -> reply index -> judgment (the first one wins if repeated)
  const grouped = new Map<string, Map<number, Map<number, EftJudgmentInput>>>();
  for (const j of judgments) {
    const set = setsById.get(j.setId);
    if (!set || !Number.isInteger(j.replyIndex) || j.replyIndex < 0 || j.replyIndex >= set.replies.length) {
      stats.orphanJudgments++;
      continue;
    }
    let bySample = grouped.get(j.setId);
    if (!bySample) grouped.set(j.setId, (bySample = new Map()));
    let byReply = bySample.get(j.sample);
    if (!byReply) bySample.set(j.sample, (byReply = new Map()));
    if (!byReply.has(j.replyIndex)) byReply.set(j.replyIndex, j);
  }

  const examples: SftExample[] = [];
  const scoreOf = new Map<string, number>(); // example id -> its judgment's score
  const emitted = new Set<string>();
  for (const set of sets) {
    const bySample = grouped.get(set.id) ?? new Map<number, Map<number, EftJudgmentInput>>();
    const ranks = set.replies.map((r) => r.rank);
    let agreedOnce = false;
    for (const sample of [...bySample.keys()].sort((a, b) => a - b)) {
      stats.judged++;
      const byReply = bySample.get(sample)!;
      if (byReply.size !== set.replies.length) continue;
      stats.complete++;
      const row = set.replies.map((_, k) => byReply.get(k)!);
      if (row.some((j) => j.score === null)) {
        stats.parseFailures++;
        continue;
      }
      if (
        !rankingAgrees(
          ranks,
          row.map((j) => j.score!),
        )
      ) {
        stats.disagreeing++;
        continue;
      }
      stats.agreeing++;
      agreedOnce = true;
      set.replies.forEach((reply, k) => {
        const prompt = judgePrompt(set.prompt, reply.text);
        const completion = row[k]!.text.trim();
        const id = recordId('eft', prompt, completion);
        if (emitted.has(id)) {
          stats.duplicates++;
          return;
        }
        emitted.add(id);
        scoreOf.set(id, row[k]!.score!);
        examples.push({ id, prompt, completion, kind: 'eft' });
      });
    }
    if (!agreedOnce) stats.setsWithoutExample++;
  }
  const kept = options.downsampleScore === null ? examples : downsample(examples, scoreOf, options.downsampleScore);
  stats.downsampled = examples.length - kept.length;
  stats.examples = kept.length;
  return { examples: kept, stats };
}

/**
 * The examples with those of score `score` cut down to the count of the most frequent other
 * score; the ones kept are those with the smallest ids. Nothing is dropped when no other score
 * occurs (there is nothing to balance against) or when `score` is not over-represented.
 */
export function downsample(examples: readonly SftExample[], scoreOf: ReadonlyMap<string, number>, score: number): SftExample[] {
  const counts = new Map<number, number>();
  for (const e of examples) counts.set(scoreOf.get(e.id)!, (counts.get(scoreOf.get(e.id)!) ?? 0) + 1);
  const others = [...counts].filter(([s]) => s !== score).map(([, n]) => n);
  const over = counts.get(score) ?? 0;
  if (others.length === 0) return [...examples];
  const cap = Math.max(...others);
  if (over <= cap) return [...examples];
  const keep = new Set(
    examples
      .filter((e) => scoreOf.get(e.id) === score)
      .map((e) => e.id)
      .sort()
      .slice(0, cap),
  );
  return examples.filter((e) => scoreOf.get(e.id) !== score || keep.has(e.id));
}
