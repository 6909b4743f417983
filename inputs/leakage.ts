/**
 * The held-out leakage check of a run's validation: evaluation prompts and ranked sets must
 * share no id and no normalised prompt with what the run trains on (core/leakage.ts).
 */
import * as fs from 'node:fs/promises';
import { ApplicationFailure } from '@temporalio/common';
import { describeLeaks, findLeaks, type LeakItem, lineOfRecord } from '../core/leakage';
import type { EvalPrompt, RankedSet, RunConfig } from '../core/schemas';
import { loadEvalPrompts, loadEvalRanked } from './eval-data';
import { loadSeed, type SeedData } from './seed';

/**
 * A run's data as validation reads it: the seed data, the held-out prompts and ranked sets (after
 * their offsets and caps), checked for leakage. The CLI calls it before it starts anything, and
 * the run's first activity before it publishes the data.
 */
export async function loadRunData(
  config: RunConfig,
): Promise<{ seed: SeedData; prompts: EvalPrompt[] | null; ranked: RankedSet[] | null }> {
  const seed = await loadSeed(config);
  const prompts = config.evaluation?.prompts ? await loadEvalPrompts(config.evaluation.prompts) : null;
  const ranked = config.evaluation?.judgeSet ? await loadEvalRanked(config.evaluation.judgeSet) : null;
  await checkHeldOut(config, seed, prompts, ranked);
  return { seed, prompts, ranked };
}

/** Throws a non-retryable InvalidData error naming every leak (both records, file:line) of the held-out data. */
export async function checkHeldOut(
  config: RunConfig,
  seed: Pick<SeedData, 'training'>,
  prompts: readonly EvalPrompt[] | null,
  ranked: readonly RankedSet[] | null,
): Promise<void> {
  const evaluation = config.evaluation;
  const heldOut: LeakItem[] = [];
  if (prompts && evaluation?.prompts) {
    const file = evaluation.prompts.file;
    for (const p of prompts) heldOut.push({ kind: 'evaluation prompt', id: p.id, text: p.instruction, file });
  }
  if (ranked && evaluation?.judgeSet) {
    const file = evaluation.judgeSet.ranked ?? evaluation.judgeSet.oasst!;
    for (const r of ranked) heldOut.push({ kind: 'evaluation ranked set', id: r.id, text: r.prompt, file });
  }
  const leaks = findLeaks(seed.training, heldOut);
  if (leaks.length === 0) return;
  const texts = new Map<string, string>();
  for (const l of leaks) {
    for (const item of [l.heldOut, l.training]) {
      if (!texts.has(item.file)) texts.set(item.file, await fs.readFile(item.file, 'utf8').catch(() => ''));
    }
  }
  const where = (item: LeakItem): string => {
    const line = lineOfRecord(texts.get(item.file) ?? '', item);
    return line > 0 ? `${item.file}:${line}` : item.file;
  };
  throw ApplicationFailure.nonRetryable(
    `held-out data leaks into training: ${leaks.length} record(s) of ${[...new Set(leaks.map((l) => l.heldOut.file))].join(', ')} share an id or prompt with the training data (evaluate on data the run does not train on: change evaluation.*.offset/max or the seed caps, or remove the records)\n${describeLeaks(leaks, where)}`,
    'InvalidData',
  );
}
