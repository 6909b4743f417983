/**
 * The Temporal contract: what workflows, activities, workers and clients agree on — task
 * queues, workflow IDs, signal and query definitions, patch names and the types they carry.
 * Deterministic, free of Node built-ins and of the workflow SDK (it imports types only), so
 * workflow code and activity code both import it without loading each other.
 */
import type { QueryDefinition, SignalDefinition } from '@temporalio/common';
import type { ModelRef } from '../core/schemas';
import type { IterationSummary } from '../core/stats';

export type { ModelRef } from '../core/schemas';

/** The same object `defineSignal` (@temporalio/workflow) returns, without loading the workflow SDK. */
function signal<Args extends unknown[] = []>(name: string): SignalDefinition<Args> {
  return { type: 'signal', name } as SignalDefinition<Args>;
}

/** The same object `defineQuery` (@temporalio/workflow) returns. */
function query<Ret>(name: string): QueryDefinition<Ret> {
  return { type: 'query', name } as QueryDefinition<Ret>;
}

export const TASK_QUEUES = {
  /** workflows and light CPU stages (validation, filtering, pair selection, summaries) */
  orchestration: 'srlm-orchestration',
  /** sampling and judging on GPU (or CPU) hosts */
  generation: 'srlm-generation',
  /** SFT / DPO training */
  training: 'srlm-training',
} as const;

export type QueueName = keyof typeof TASK_QUEUES;

export function runWorkflowId(run: string): string {
  return `srlm-${run}`;
}

export function iterationWorkflowId(run: string, iteration: number): string {
  return `srlm-${run}-iter-${iteration}`;
}

export type RunStatus = 'starting' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

export interface RunProgress {
  run: string;
  status: RunStatus;
  /** 0 for the SFT phase, t for iteration M_t -> M_{t+1} */
  iteration: number;
  iterations: number;
  stage: string;
  stagesDone: string[];
  /** hash of the validated run config (set once validated) */
  configHash?: string;
  models: { name: string; modelId: string; uri: string }[];
  summaries: IterationSummary[];
  error?: string;
  /** the model this run promoted in its lineage when it completed */
  promoted?: string;
  /** set while a pause is in effect: no new stage starts until the resume signal */
  paused?: { since: string; reason: string };
  /** the running stage's own progress, as its activity last reported it (absent between stages) */
  live?: LiveStage;
  /** promotion gate decisions, one per evaluated iteration (runs with `evaluation.gate`) */
  gates?: GateOutcome[];
}

export interface GateOutcome {
  iteration: number;
  model: string;
  passed: boolean;
  /** what the run did about a failed gate */
  onFail: 'stop' | 'rollback' | 'continue';
  /** messages of the checks that failed */
  failed: string[];
}

export interface IterationProgress {
  run: string;
  iteration: number;
  stage: string;
  stagesDone: string[];
  paused?: { since: string; reason: string };
  live?: LiveStage;
}

/**
 * Progress of the activity doing a stage's work, signalled by that activity to its workflow
 * (and the run above it) every few seconds and once at its end, so the `progress` query
 * answers with shard counts, tokens/s and an ETA.
 */
export interface LiveStage {
  iteration: number;
  /** the activity's label, e.g. "candidates" or "sft M1" */
  stage: string;
  /** requests (generation) or optimizer steps (training) done, of total */
  done: number;
  total: number;
  shards?: number;
  shardsCommitted?: number;
  tokens: number;
  tokensPerSecond: number;
  /** seconds left at the current rate; absent before the first item is done */
  etaSeconds?: number;
  elapsedS: number;
  loss?: number;
  checkpointStep?: number;
  attempt: number;
  /** when the activity sent it (ISO time, the activity's clock) */
  at: string;
}

export const stageProgressSignal = signal<[LiveStage]>('stageProgress');

export const progressQuery = query<RunProgress>('progress');

/**
 * Pause: the stage that is running finishes (its shards commit, its model is published) and
 * no next stage starts until `resume`. Send to `srlm-<run>`; it reaches the running iteration.
 */
export const pauseSignal = signal<[{ reason?: string }?]>('pause');
export const resumeSignal = signal('resume');
export const iterationProgressQuery = query<IterationProgress>('progress');

/** What one fleet part of a generation stage did (generateCandidatesPart, judgeCandidatesPart). */
export interface PartStats {
  tokens: number;
  seconds: number;
  shards: number;
  shardsReused: number;
  requestsResumed: number;
  requestsGenerated: number;
}

export interface RunResult {
  run: string;
  models: { name: string; model: ModelRef }[];
  summaries: IterationSummary[];
  finalModel: ModelRef;
  /** the model the run promoted (with evaluation gates: its newest accepted model) */
  promoted?: string;
}

/**
 * Custom search attributes a run keeps up to date (when its input says they are registered),
 * for `temporal workflow list --query` and the Web UI's filters.
 */
export const SEARCH_ATTRIBUTES = {
  SrlmRun: 'Keyword',
  SrlmIteration: 'Int',
  SrlmStage: 'Keyword',
  SrlmModel: 'Keyword',
} as const;

/** patched() id of the change that added search attribute upserts */
export const SEARCH_ATTRIBUTES_PATCH = 'srlm-search-attributes-v1';

/** patched() id of the change that promotes a completed run's final model */
export const PROMOTE_PATCH = 'srlm-promote-v1';

/** patched() id of the change that evaluates each iteration's model and gates its promotion */
export const EVALUATION_PATCH = 'srlm-evaluation-v1';

/** patched() id of the change that fans the candidates and judgments stages out over a fleet (`compute.fleet`) */
export const FLEET_PATCH = 'srlm-fleet-v1';

/** Resident-model affinity (`compute.resident`): a model's generation activities go to the worker holding it. */
export const AFFINITY_PATCH = 'srlm-affinity-v1';

/**
 * The task queue of one generation worker process (its resident models live there):
 * `srlm-generation@<host id>`; the workflow sends a model's next activities to it.
 */
export function hostQueue(hostId: string): string {
  return `${TASK_QUEUES.generation}@${hostId}`;
}

/**
 * The run name of a scheduled execution: Temporal Schedules start `srlm-<name>-<time>`, so
 * the name is that workflow ID without the prefix, with characters a run name cannot hold
 * (":" of the time) replaced by "-".
 */
export function scheduledRunName(workflowId: string): string {
  return workflowId
    .replace(/^srlm-/, '')
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/\.\.+/g, '.')
    .slice(0, 100);
}

export function scheduleId(name: string): string {
  return `srlm-schedule-${name}`;
}
