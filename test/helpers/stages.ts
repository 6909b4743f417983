/** Reading a run's published stages back, to compare a faulted run with a fault-free one. */
import * as path from 'node:path';
import { findStage, readStage } from '../../store/artifacts';
import { LocalStore } from '../../store/store';
import { Candidate, EftJudgment, GeneratedPrompt, Judgment, PreferencePair, type RunConfigInput, SftExample } from '../../core/schemas';

/**
 * A one-iteration run small enough to kill processes in (12 prompts, 48 candidates, shards of
 * `shardSize`) with quick failure detection: a lost attempt is noticed after 2 s, retried after
 * 0.5 s, and partial outputs are flushed to the store at every progress event.
 */
export function faultRunConfig(run: string, root: string, shardSize: number): RunConfigInput {
  const repo = path.resolve(__dirname, '../..');
  return {
    run,
    seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl'), maxRanked: 4 },
    iterations: 1,
    prompts: { count: 12, requestsPerRound: 8, maxRounds: 6 },
    durability: { shardSize, heartbeatTimeoutSeconds: 2, retryInitialSeconds: 0.5, partialFlushSeconds: 0 },
    store: { root },
  };
}

const SCHEMAS = {
  prompts: GeneratedPrompt,
  candidates: Candidate,
  judgments: Judgment,
  pairs: PreferencePair,
  'eft-judgments': EftJudgment,
  eft: SftExample,
} as const;
export type StageName = keyof typeof SCHEMAS;

/** Every record of a published stage (sha256-verified), sorted by id; null when unpublished. */
export async function stageRecords(root: string, run: string, iteration: number, stage: StageName): Promise<{ id: string }[] | null> {
  const store = new LocalStore(root);
  const ref = await findStage(store, { run, iteration, stage });
  if (!ref) return null;
  const records = (await readStage(store, ref, SCHEMAS[stage] as never)) as { id: string }[];
  return [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The stages of one iteration (and the EFT stages of iteration 0), for equality checks. */
export async function runRecords(root: string, run: string, iterations: number): Promise<Record<string, { id: string }[] | null>> {
  const out: Record<string, { id: string }[] | null> = {};
  out['0/eft-judgments'] = await stageRecords(root, run, 0, 'eft-judgments');
  out['0/eft'] = await stageRecords(root, run, 0, 'eft');
  for (let t = 1; t <= iterations; t++) {
    for (const s of ['prompts', 'candidates', 'judgments', 'pairs'] as const) out[`${t}/${s}`] = await stageRecords(root, run, t, s);
  }
  return out;
}

/** Ids that occur more than once. */
export function duplicates(records: readonly { id: string }[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const r of records) (seen.has(r.id) ? dup : seen).add(r.id);
  return [...dup];
}
