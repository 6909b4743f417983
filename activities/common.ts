/**
 * What the stage activities share: the dependencies their factory receives, the run-level
 * types, the names of things (lineage, model ids, the "where" of an error message), the one
 * request builder and the publishing of a stage's output.
 */
import { seedFromId } from '../core/ids';
import type { ArtifactRef, ModelRef, RunConfig, SamplingConfig } from '../core/schemas';
import type { ComputeBackend, GenerateRequest } from '../backends/compute';
import { StageWriter, type StageLocation, type writeStage } from '../store/artifacts';
import { openStore } from '../store/open-store';
import type { ArtifactStore } from '../store/store';
import { recordStageMetrics } from './metrics';
import { type ProgressReporter, stageLog } from './progress';

export { invalid } from '../inputs/invalid';

export interface ActivityDeps {
  /** store for a run's config (`store.root`), defaulting to the worker's */
  storeFor: (config: RunConfig) => ArtifactStore;
  compute: ComputeBackend;
  /** the generation backend a run's config asks for (`compute.engine`); undefined: `compute` */
  engineFor?: (config: RunConfig) => ComputeBackend | undefined;
  /** the training backend a run's config asks for (`compute.training`); undefined: `compute` */
  trainerFor?: (config: RunConfig) => ComputeBackend | undefined;
  /** scratch space for job files and compute outputs */
  workDir: string;
  /** where imported packaged models are kept across runs */
  cacheDir: string;
  reporter?: ProgressReporter;
  heartbeatIntervalMs?: number;
  /** least time between two stage progress signals to the workflow (default 10 s) */
  progressSignalMs?: number;
  /**
   * this worker process's own generation queue (workflows/contract.ts hostQueue): with
   * `compute.resident`, generation activities answer it as `ranOn`, and the workflow sends the
   * model's next activities there
   */
  hostQueue?: string;
  /** the worker's resident model servers (compute.resident), stopped when the worker is done */
  residents?: { stopAll(): Promise<void> };
}

/**
 * The store of a run: `store.root` of its config (a directory or s3://bucket/prefix), else the
 * worker's default root. S3 objects are cached on the host in `cacheDir`.
 */
export function defaultStoreFor(defaultRoot: string, cacheDir?: string): (config: RunConfig) => ArtifactStore {
  return (config) => openStore(config.store.root ?? defaultRoot, config.store.root ? config.store.s3 : {}, cacheDir);
}

export interface PreparedRun {
  config: RunConfig;
  configHash: string;
  lineage: string;
  seedIft: ArtifactRef;
  seedRanked: ArtifactRef | null;
  seedEft: ArtifactRef | null;
  /** held-out evaluation data (absent in runs started before evaluation existed) */
  evalPrompts?: ArtifactRef | null;
  evalRanked?: ArtifactRef | null;
}

export interface TrainResult {
  model: ModelRef;
  metrics: Record<string, unknown>;
}

export interface IterationStageInput {
  config: RunConfig;
  iteration: number;
}

/** Heartbeat interval of long activities, and the least time between two progress signals to the workflow (ms). */
export function intervals(deps: ActivityDeps): { hbMs: number; signalMs: number } {
  return { hbMs: deps.heartbeatIntervalMs ?? 2000, signalMs: deps.progressSignalMs ?? 10_000 };
}

export const PRODUCER = 'srlm/0.1.0';

export function where(config: RunConfig, iteration: number, stage: string): string {
  return `run "${config.run}", iteration ${iteration}, stage ${stage}`;
}

export function lineageOf(config: RunConfig): string {
  return config.lineage ?? config.run;
}

export function modelIdFor(config: RunConfig, name: string): string {
  return `${config.run}.${name}`;
}

export function samplingSeed(config: RunConfig, id: string): number {
  return (seedFromId(id) ^ config.randomSeed) >>> 1;
}

/** The request for one single-turn prompt, sampled `n` times with a stage's sampling settings and a seed derived from its id. */
export function sampledRequest(config: RunConfig, id: string, content: string, n: number, sampling: SamplingConfig): GenerateRequest {
  return {
    id,
    messages: [{ role: 'user', content }],
    n,
    temperature: sampling.temperature,
    top_p: sampling.topP,
    max_new_tokens: sampling.maxNewTokens,
    seed: samplingSeed(config, id),
  };
}

/** Publishes a stage and records its metrics (records, tokens, tokens/s, parse failures, skips). */
export async function publish<T>(store: ArtifactStore, input: Parameters<typeof writeStage<T>>[1]): Promise<ArtifactRef> {
  const { records, stats, ...meta } = input;
  const writer = new StageWriter<T>(store, meta);
  await writer.add(records);
  return publishWriter(writer, meta, stats);
}

/** Finishes a streamed stage (manifest last) and records its metrics. */
export async function publishWriter(
  writer: StageWriter<unknown>,
  loc: StageLocation,
  stats: Record<string, unknown> = {},
): Promise<ArtifactRef> {
  const ref = await writer.finish(stats);
  stageLog('info', 'stage published', { run: loc.run, iteration: loc.iteration, stage: loc.stage, records: writer.count, uri: ref.uri });
  const n = (k: string): number => (typeof stats[k] === 'number' ? (stats[k] as number) : 0);
  recordStageMetrics(loc.stage, {
    records: writer.count,
    tokens: n('tokens'),
    seconds: n('seconds'),
    parseFailures: n('judgments') - n('parsed'),
    skipped: n('skipped') + n('emptyCandidates'),
    requestsGenerated: n('requestsGenerated'),
  });
  return ref;
}
