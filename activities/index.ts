/**
 * The activities of a self-rewarding run, one file per stage, built by a factory that
 * receives the worker's clients (store, compute backends, reporter) so tests pass real or
 * fake ones:
 *
 *   run.ts         prepareRun, importModel, promoteModel
 *   sft.ts         trainSft                      eft.ts       judgeRankedReplies, buildEftData
 *   prompts.ts     generatePrompts               candidates.ts generateCandidates(+Part)
 *   judge.ts       judgeCandidates(+Part)        pairs.ts     selectPairs
 *   dpo.ts         trainDpo                      evaluate.ts  evalResponses, evalJudgeQuality, evalHeadToHead
 *   summary.ts     summarizeIteration
 *
 * They share generation.ts and training.ts (the drivers), context.ts (what a stage is built
 * from) and common.ts. Every stage is idempotent: when its output is already published it
 * returns it without recomputing.
 */
import type { RunConfig } from '../core/schemas';
import { candidateActivities } from './candidates';
import type { ActivityDeps } from './common';
import { stageContext } from './context';
import { dpoActivities } from './dpo';
import { eftActivities } from './eft';
import { evaluationActivities } from './evaluate';
import { judgeActivities } from './judge';
import { pairActivities } from './pairs';
import { promptActivities } from './prompts';
import { runActivities } from './run';
import { sftActivities } from './sft';
import { summaryActivities } from './summary';

export {
  type ActivityDeps,
  defaultStoreFor,
  lineageOf,
  modelIdFor,
  type IterationStageInput,
  type PreparedRun,
  type TrainResult,
} from './common';
export { partRange, type PartRange } from './generation';
export type { ModelRef } from '../core/schemas';
export type { PartStats } from '../workflows/contract';

export function createActivities(deps: ActivityDeps) {
  const ctx = stageContext(deps);
  const acts = {
    ...runActivities(ctx),
    ...sftActivities(ctx),
    ...eftActivities(ctx),
    ...promptActivities(ctx),
    ...candidateActivities(ctx),
    ...judgeActivities(ctx),
    ...pairActivities(ctx),
    ...dpoActivities(ctx),
    ...evaluationActivities(ctx),
    ...summaryActivities(ctx),
  };
  /** the generation activities whose model stays resident on this worker: their result names its queue */
  const place =
    <I extends { config: RunConfig }, R extends object>(fn: (input: I) => Promise<R>) =>
    async (input: I): Promise<R & { ranOn?: string }> => {
      const out = await fn(input);
      return deps.hostQueue && input.config.compute.resident ? { ...out, ranOn: deps.hostQueue } : out;
    };
  return {
    ...acts,
    generatePrompts: place(acts.generatePrompts),
    generateCandidates: place(acts.generateCandidates),
    generateCandidatesPart: place(acts.generateCandidatesPart),
    judgeCandidates: place(acts.judgeCandidates),
    judgeCandidatesPart: place(acts.judgeCandidatesPart),
  };
}

export type Activities = ReturnType<typeof createActivities>;
