/**
 * The activities of a self-rewarding run, built by a factory that receives its clients
 * (store, compute backend, reporter) so tests can pass real or fake ones.
 *
 * Every stage activity is idempotent: when the stage's manifest is already published it
 * returns the existing reference without recomputing, so retries and resumed runs reuse
 * completed work.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { buildEftExamples } from '../core/eft';
import { recordId, seedFromId, configHash } from '../core/ids';
import { formatConfigError, toJsonl } from '../core/jsonl';
import { PairSelector, PairSummaryAccumulator } from '../core/pairs';
import { judgePrompt, parseJudgeScore } from '../core/rubric';
import { decideGate, headToHead, judgeQuality, pairwiseJudgePrompt, parsePairwiseVerdict, responseLengths, RewardWatchAccumulator, type ScoredSet } from '../core/eval';
import {
  type ArtifactRef,
  Candidate,
  EftJudgment,
  type EvalJudgeConfig,
  EvalPrompt,
  EvalResponse,
  PairwiseVerdict,
  GeneratedPrompt,
  IftExample,
  Judgment,
  type ModelSource,
  PreferencePair,
  RankedSet,
  RunConfig,
  SftExample,
} from '../core/schemas';
import { loadSeed } from '../inputs/seed';
import { buildSelfInstructRequest, chooseDemonstrations, mulberry32, parseGeneratedInstructions } from '../core/selfInstruct';
import { InstructionFilter } from '../core/filters';
import type { ModelRef } from '../core/schemas';
import type { PartStats } from '../workflows/contract';
import { CandidateSummary, type EvaluationSummary, HeadToHead, IterationSummary, JudgeQuality, JudgmentSummary, ResponseLengths, renderIterationSummaryMarkdown } from '../core/stats';
import { loadEvalPrompts, loadEvalRanked } from '../inputs/eval-data';
import { OpenAICompute } from '../backends/openai-compute';
import {
  findModel,
  promotedKey,
  readPromoted,
  findStage,
  modelDir,
  modelPrefix,
  publishModel,
  readStage,
  readStageManifest,
  readStageShards,
  StageWriter,
  writeStage,
  type StageLocation,
} from '../store/artifacts';
import { type ComputeBackend, type GenerateOutput, type GenerateRequest, localTorchrun, trainDistributed, type TrainJob } from '../backends/compute';
import { recordStageMetrics, recordTrainingMetrics } from './metrics';
import { generateSharded } from './shards';
import { type LiveSignaller, liveSignaller, type ProgressReporter, rates, stageLog, withHeartbeats } from './progress';
import { checkpointsPrefix, findNewestCheckpoint, publishCheckpoint, pruneCheckpoints } from '../store/checkpoints';
import { openStore } from '../store/open-store';
import { REMOTE_NAME_MAX, remoteJobBase } from '../backends/remote-train';
import { remoteTrainPrefix, summaryKey } from '../store/keys';
import type { ArtifactStore } from '../store/store';

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

const PRODUCER = 'srlm/0.1.0';

/** generation requests handed to the compute backend at once (rounded to whole shards) */
const GENERATE_SLICE = 4096;

function invalid(message: string, type = 'InvalidInput'): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, type);
}

function where(config: RunConfig, iteration: number, stage: string): string {
  return `run "${config.run}", iteration ${iteration}, stage ${stage}`;
}

export function lineageOf(config: RunConfig): string {
  return config.lineage ?? config.run;
}

export function modelIdFor(config: RunConfig, name: string): string {
  return `${config.run}.${name}`;
}

export function createActivities(deps: ActivityDeps) {
  const acts = activityFunctions(deps);
  /** the generation activities whose model stays resident on this worker: their result names its queue */
  const place = <I extends { config: RunConfig }, R extends object>(fn: (input: I) => Promise<R>) =>
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

function activityFunctions(deps: ActivityDeps) {
  const hbMs = deps.heartbeatIntervalMs ?? 2000;
  const signalMs = deps.progressSignalMs ?? 10_000;

  /**
   * Runs a stage's generation requests shard by shard (see shards.ts), reporting progress in
   * heartbeats. The items come in batches of any size and are handed to the compute backend in
   * slices of whole shards (`GENERATE_SLICE` requests, rounded to shards), numbered as one part,
   * so the shard keys do not depend on the slicing. `onOutputs` receives each slice's items with
   * their outputs in order, then the slice is dropped: only a slice is held at a time.
   * Committed shards of an earlier attempt are reused.
   */
  async function generateStream<T>(
    config: RunConfig,
    loc: StageLocation,
    model: ModelRef,
    input: {
      batches: AsyncIterable<T[]> | Iterable<T[]>;
      /** items expected (for progress) */
      total: number;
      request: (item: T) => GenerateRequest;
      onOutputs: (items: T[], outputs: GenerateOutput[]) => Promise<void> | void;
      part?: string;
      label?: string;
      /** another engine than the run's (the evaluation judge); `remote`: it serves its own model */
      engine?: { backend: ComputeBackend; remote: boolean };
      /**
       * only the items at these indexes (whole shards: `first` is a multiple of the shard size),
       * numbered where they stand in the stage, so their shards are the stage's own (fleet parts)
       */
      range?: PartRange;
    },
  ) {
    const { part = 'all', label = loc.stage } = input;
    const store = deps.storeFor(config);
    const started = Date.now();
    const previous = Context.current().info.heartbeatDetails as { part?: string; shardsCommitted?: number; done?: number } | undefined;
    const attempt = Context.current().info.attempt;
    const live = liveSignaller(signalMs);
    let last: Parameters<LiveSignaller['update']>[0] | null = null;
    const engine = input.engine ? (input.engine.remote ? input.engine.backend : undefined) : deps.engineFor?.(config);
    const backend = input.engine?.backend ?? engine ?? deps.compute;
    // a remote engine serves its own model: no weights to fetch; fetched when a shard needs generating
    let modelPath: Promise<string> | undefined;
    const modelArg = engine?.servesOwnModel ? model.modelId : () => (modelPath ??= modelDir(store, model));
    const shardSize = Math.max(1, config.durability.shardSize);
    const sliceSize = shardSize * Math.max(1, Math.floor(GENERATE_SLICE / shardSize));
    const range = input.range ?? { first: 0, end: Infinity };
    if (range.first % shardSize !== 0) throw new Error(`${where(config, loc.iteration, loc.stage)}: a part must start at a shard boundary (item ${range.first}, shard size ${shardSize})`);
    const acc = { tokens: 0, seconds: 0, skipped: 0, shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0, requests: 0 };

    const runSlice = async (items: T[]): Promise<void> => {
      const requests = items.map(input.request);
      const before = acc.requests;
      const firstShard = (range.first + before) / shardSize;
      const tokensBefore = acc.tokens;
      const res = await withHeartbeats(async (update, signal) =>
        generateSharded({
          store,
          compute: backend,
          workDir: deps.workDir,
          loc,
          part,
          model: modelArg,
          requests,
          shardSize,
          firstShard,
          partialFlushMs: config.durability.partialFlushSeconds * 1000,
          device: config.compute.device,
          batchSize: config.compute.generationBatchSize,
          threads: config.compute.threads,
          signal,
          log: (line) => stageLog('warn', line, { run: config.run, iteration: loc.iteration, stage: loc.stage }),
          onProgress: (sp) => {
            // over the whole stage: slices before this one are committed
            const total = Math.max(input.total, before + sp.total);
            const done = before + sp.done;
            const shards = Math.max(Math.ceil(total / shardSize), before / shardSize + sp.shards);
            const shardsCommitted = before / shardSize + sp.shardsCommitted;
            const tokens = tokensBefore + sp.tokens;
            const p = { run: config.run, iteration: loc.iteration, stage: label, done, total, tokens, elapsedS: (Date.now() - started) / 1000 };
            update({ ...p, part: sp.part, shards, shardsCommitted });
            last = { iteration: loc.iteration, stage: label, done, total, shards, shardsCommitted, tokens, elapsedS: Math.round(p.elapsedS), ...rates(done, total, tokens, p.elapsedS) };
            live.update(last);
            deps.reporter?.(p);
          },
        }),
      hbMs);
      const outputs = requests.map((r) => {
        const o = res.outputs.get(r.id);
        if (!o) throw ApplicationFailure.retryable(`${where(config, loc.iteration, loc.stage)}: generation output lacks request ${r.id}`);
        if (o.skipped !== undefined) acc.skipped++;
        return o;
      });
      acc.requests += requests.length;
      acc.tokens += res.tokens;
      acc.seconds += res.seconds;
      acc.shards += res.shards;
      acc.shardsReused += res.shardsReused;
      acc.requestsResumed += res.requestsResumed;
      acc.requestsGenerated += res.requestsGenerated;
      await input.onOutputs(items, outputs);
    };

    let slice: T[] = [];
    let index = 0;
    read: for await (const batch of input.batches) {
      for (const item of batch) {
        const i = index++;
        if (i < range.first) continue;
        if (i >= range.end) break read;
        slice.push(item);
        if (slice.length === sliceSize) {
          await runSlice(slice);
          slice = [];
        }
      }
    }
    if (slice.length > 0) await runSlice(slice);
    if (last) await live.finish(last);
    if (attempt > 1 && (acc.shardsReused > 0 || acc.requestsResumed > 0)) {
      deps.reporter?.({ run: config.run, iteration: loc.iteration, stage: label, done: acc.requests, total: acc.requests, tokens: acc.tokens, elapsedS: acc.seconds, note: `attempt ${attempt}: reused ${acc.shardsReused}/${acc.shards} committed shards and ${acc.requestsResumed} partial outputs${previous?.done !== undefined ? ` (last heartbeat: ${previous.done} done)` : ''}` });
    }
    const { requests: _requests, ...stats } = acc;
    return stats;
  }

  /**
   * One part of a generation stage on a fleet: the shards of its range of the stage's requests,
   * generated and committed as the whole stage commits them; nothing when the stage is published.
   */
  async function generatePart<T>(
    config: RunConfig,
    loc: StageLocation,
    at: { model: ModelRef; part: number; parts: number },
    input: { items: () => Promise<number>; batches: () => AsyncIterable<T[]>; request: (item: T) => GenerateRequest },
  ): Promise<PartStats> {
    if (await findStage(deps.storeFor(config), loc)) return NO_PART_WORK;
    const range = partRange(await input.items(), config.durability.shardSize, at.part, at.parts);
    if (range.end <= range.first) return NO_PART_WORK;
    const gen = await generateStream(config, loc, at.model, {
      batches: input.batches(),
      total: range.end - range.first,
      request: input.request,
      onOutputs: () => undefined,
      range,
      label: `${loc.stage} part ${at.part + 1}/${at.parts}`,
    });
    return partStats(gen);
  }

  /** generateStream over requests held in memory (small stages); returns outputs by request id. */
  async function generate(config: RunConfig, loc: StageLocation, model: ModelRef, requests: GenerateRequest[], part = 'all', label = loc.stage, engine?: { backend: ComputeBackend; remote: boolean }) {
    const outputs = new Map<string, GenerateOutput>();
    const stats = await generateStream(config, loc, model, {
      batches: [requests],
      total: requests.length,
      request: (r) => r,
      onOutputs: (reqs, outs) => reqs.forEach((r, i) => outputs.set(r.id, outs[i]!)),
      part,
      label,
      ...(engine ? { engine } : {}),
    });
    return { outputs, ...stats };
  }

  /**
   * One training job (SFT or DPO) from a base model to a published model, with full
   * checkpoints copied into the store every `durability.checkpointEvery` steps. A retried
   * attempt resumes from the newest complete checkpoint of the same job; torn ones are skipped.
   */
  async function trainModel(input: {
    config: RunConfig;
    iteration: number;
    name: string;
    method: 'sft' | 'dpo';
    base: ModelRef;
    /** training records, all at once or batch by batch (written to the job's data file as they come) */
    data: object[] | AsyncIterable<object[]>;
    trainedOn: string[];
    hyper: Pick<TrainJob, 'lr' | 'lr_end' | 'epochs' | 'batch_size' | 'dropout' | 'beta' | 'max_length' | 'seed'>;
    extraMetrics: Record<string, unknown>;
  }): Promise<TrainResult> {
    const { config, iteration, name } = input;
    const store = deps.storeFor(config);
    const lineage = lineageOf(config);
    const modelId = modelIdFor(config, name);
    const label = `${input.method} ${name}`;
    const dir = path.join(deps.workDir, 'runs', config.run, 'train', name);
    await fs.mkdir(dir, { recursive: true });
    const data = path.join(dir, `${input.method}.jsonl`);
    const dataSha256 = await writeJsonlFile(data, Array.isArray(input.data) ? [input.data] : input.data);
    const output = path.join(dir, 'model');
    await fs.rm(output, { recursive: true, force: true });
    const localCheckpoints = path.join(dir, 'checkpoints');
    await fs.rm(localCheckpoints, { recursive: true, force: true });
    await fs.mkdir(localCheckpoints, { recursive: true });

    const every = config.durability.checkpointEvery;
    const multi = localTorchrun(config.compute.training);
    // checkpoints belong to exactly this job: base model, data and every setting that shapes the steps
    // (batch_size is global, so DDP checkpoints resume with any process count; FSDP's, local or remote, are sharded files)
    const jobDigest = configHash({ method: input.method, base: input.base.sha256, data: dataSha256, hyper: input.hyper, every, compute: config.compute.gradientCheckpointing, ...(trainDistributed(config.compute.training)?.strategy === 'fsdp' ? { layout: 'fsdp' } : {}) });
    const ckptPrefix = checkpointsPrefix(config.run, name, jobDigest);
    const scan = every > 0 ? await findNewestCheckpoint(store, ckptPrefix) : { newest: null, torn: [] };
    for (const t of scan.torn) stageLog('warn', `skipping torn checkpoint ${store.uri(t.prefix)}: ${t.reason}`, { run: config.run, iteration, stage: label });
    if (scan.newest) stageLog('info', 'resuming training from a checkpoint', { run: config.run, iteration, stage: label, step: scan.newest.step });
    const resume = scan.newest;
    if (resume) deps.reporter?.({ run: config.run, iteration, stage: label, done: resume.step, total: 0, tokens: 0, elapsedS: 0, note: `resuming from checkpoint at step ${resume.step}` });

    const started = Date.now();
    let lastCheckpoint = resume?.step ?? 0;
    let chain: Promise<void> = Promise.resolve();
    let chainError: unknown = null;
    const live = liveSignaller(signalMs);
    let lastLive: Parameters<LiveSignaller['update']>[0] | null = null;
    // a remote backend (compute.training) runs the job as srlm-<run>-<name>-<digest> with its files under the store
    const trainer = deps.trainerFor?.(config);
    const remotePrefix = remoteTrainPrefix(config.run, name, jobDigest);
    const remote = trainer
      ? { remote: { job_name: remoteJobBase(config.run, name, jobDigest, REMOTE_NAME_MAX), store_prefix: remotePrefix, model_key: input.base.externalPath ? null : modelPrefix(input.base.lineage, input.base.modelId) } }
      : {};
    const done = await withHeartbeats(async (update, signal) =>
      (trainer ?? deps.compute)
        .train(
          {
            mode: input.method,
            // a remote job reads a stored base model from the store itself: nothing to download here
            model: trainer && !input.base.externalPath ? store.uri(modelPrefix(input.base.lineage, input.base.modelId)) : await modelDir(store, input.base),
            ref_model: null,
            data,
            output,
            ...input.hyper,
            grad_accum: 1,
            max_steps: null,
            device: config.compute.device,
            threads: config.compute.threads,
            gradient_checkpointing: config.compute.gradientCheckpointing,
            checkpoint_every: every > 0 ? every : null,
            checkpoint_dir: every > 0 ? localCheckpoints : null,
            resume_from: resume ? resume.dir : null,
            ...remote,
            ...(multi && !trainer ? multi : {}),
          },
          {
            signal,
            onEvent: (ev) => {
              if (ev.event === 'checkpoint' && typeof ev.dir === 'string') {
                const local = ev.dir;
                chain = chain
                  .then(async () => {
                    const step = await publishCheckpoint(store, ckptPrefix, local);
                    // keep the newest complete checkpoint only; the one before goes once this one is whole
                    await pruneCheckpoints(store, ckptPrefix, [step]);
                    await fs.rm(local, { recursive: true, force: true });
                    lastCheckpoint = step;
                  })
                  .catch((err: unknown) => {
                    chainError ??= err;
                  });
                return;
              }
              if (ev.event !== 'progress') return;
              const p = {
                run: config.run,
                iteration,
                stage: label,
                done: Number(ev.step ?? 0),
                total: Number(ev.total_steps ?? 0),
                tokens: 0,
                elapsedS: (Date.now() - started) / 1000,
                note: typeof ev.loss === 'number' ? `loss ${ev.loss.toFixed(4)}` : typeof ev.job_name === 'string' && typeof ev.status === 'string' ? `${ev.job_name}: ${ev.status}` : undefined,
              };
              update({ ...p, loss: ev.loss, checkpointStep: lastCheckpoint, ...(typeof ev.job_name === 'string' ? { job: ev.job_name, jobStatus: ev.status } : {}) });
              lastLive = {
                iteration,
                stage: label,
                done: p.done,
                total: p.total,
                tokens: 0,
                elapsedS: Math.round(p.elapsedS),
                ...rates(p.done, p.total, 0, p.elapsedS),
                ...(typeof ev.loss === 'number' ? { loss: ev.loss } : {}),
                checkpointStep: lastCheckpoint,
              };
              live.update(lastLive);
              recordTrainingMetrics(modelId, { ...(typeof ev.loss === 'number' ? { loss: ev.loss } : {}), checkpointStep: lastCheckpoint });
              deps.reporter?.(p);
            },
          },
        )
        .finally(() => chain),
    hbMs);
    if (lastLive) await live.finish(lastLive);
    if (chainError) throw ApplicationFailure.retryable(`${where(config, iteration, label)}: could not store a checkpoint: ${(chainError as Error).message}`, 'CheckpointFailed');
    const metrics = { ...(await readJson(path.join(output, 'metrics.json'))), ...input.extraMetrics, compute: done };
    const model = await publishModel(store, { lineage, modelId, parent: input.base.modelId, method: input.method, trainedOn: input.trainedOn, metrics, dir: output });
    await fs.rm(output, { recursive: true, force: true });
    await store.deletePrefix(ckptPrefix);
    if (trainer) await store.deletePrefix(remotePrefix);
    stageLog('info', 'model published', { run: config.run, iteration, stage: label, modelId, uri: model.uri });
    return { model, metrics };
  }

  /** Publishes a stage and records its metrics (records, tokens, tokens/s, parse failures, skips). */
  async function publish<T>(store: ArtifactStore, input: Parameters<typeof writeStage<T>>[1]): Promise<ArtifactRef> {
    const { records, stats, ...meta } = input;
    const writer = new StageWriter<T>(store, meta);
    await writer.add(records);
    return publishWriter(writer, meta, stats);
  }

  /** Finishes a streamed stage (manifest last) and records its metrics. */
  async function publishWriter(writer: StageWriter<unknown>, loc: StageLocation, stats: Record<string, unknown> = {}): Promise<ArtifactRef> {
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

  const judgeEngines = new Map<string, OpenAICompute>();
  /** The head-to-head judge: a local model through the local engine, or an OpenAI-compatible endpoint. */
  function judgeEngine(judge: EvalJudgeConfig, judgeModel: ModelRef | null, config: RunConfig, iteration: number): { engine: { backend: ComputeBackend; remote: boolean }; judgeRef: ModelRef; label: string } {
    if (judge.kind === 'model') {
      if (!judgeModel) throw invalid(`${where(config, iteration, 'eval-head-to-head')}: evaluation.judge is a model but none was imported`, 'InvalidConfig');
      return { engine: { backend: deps.compute, remote: false }, judgeRef: judgeModel, label: `model:${describeSource(judge.model)}` };
    }
    const key = JSON.stringify(judge);
    let engine = judgeEngines.get(key);
    if (!engine) {
      engine = new OpenAICompute({ baseUrl: judge.baseUrl, model: judge.model, ...(judge.apiKeyEnv ? { apiKeyEnv: judge.apiKeyEnv } : {}), concurrency: judge.concurrency, timeoutSeconds: judge.timeoutSeconds, maxRetries: judge.maxRetries, wrapped: deps.compute });
      judgeEngines.set(key, engine);
    }
    // the endpoint serves its own model: the reference only names it
    const judgeRef: ModelRef = { modelId: judge.model, lineage: 'external', key: '', uri: judge.baseUrl, sha256: '' };
    return { engine: { backend: engine, remote: true }, judgeRef, label: `openai:${judge.model}@${judge.baseUrl}` };
  }

  function samplingSeed(config: RunConfig, id: string): number {
    return (seedFromId(id) ^ config.randomSeed) >>> 1;
  }

  function candidateRequest(config: RunConfig, iteration: number, p: GeneratedPrompt): GenerateRequest {
    const id = recordId(config.run, iteration, 'candidates', p.id);
    const { n, sampling } = config.candidates;
    return { id, messages: [{ role: 'user', content: p.prompt }], n, temperature: sampling.temperature, top_p: sampling.topP, max_new_tokens: sampling.maxNewTokens, seed: samplingSeed(config, id) };
  }

  function judgeRequest(config: RunConfig, iteration: number, c: Candidate): GenerateRequest {
    const id = recordId(config.run, iteration, 'judge', c.id);
    const { samples, sampling } = config.judge;
    return { id, messages: [{ role: 'user', content: judgePrompt(c.prompt, c.text) }], n: samples, temperature: sampling.temperature, top_p: sampling.topP, max_new_tokens: sampling.maxNewTokens, seed: samplingSeed(config, id) };
  }

  return {
    /** Validates the run config and the seed data, and publishes the seed data as stages. */
    async prepareRun(input: unknown, scheduled?: { runName: string }): Promise<PreparedRun> {
      // a scheduled run is named after its execution; its lineage stays the configured one
      if (scheduled && input && typeof input === 'object') {
        const raw = input as Record<string, unknown>;
        input = { ...raw, run: scheduled.runName, lineage: raw.lineage ?? raw.run };
      }
      const parsed = RunConfig.safeParse(input);
      if (!parsed.success) throw invalid(formatConfigError(parsed.error, 'run config'), 'InvalidConfig');
      const config = parsed.data;
      if ('path' in config.baseModel) {
        const p = config.baseModel.path;
        const ok = await fs.stat(path.join(p, 'config.json')).then(() => true, () => false);
        if (!ok) throw invalid(`run config: "baseModel.path": ${p} is not a Hugging Face model directory (no config.json)`, 'InvalidConfig');
      }
      const store = deps.storeFor(config);
      const hash = configHash(config);
      const seedLoc = { run: config.run, iteration: 0 };

      const { ift, ranked, eft: eftSeed, sources } = await loadSeed(config);

      const seedIft =
        (await findStage(store, { ...seedLoc, stage: 'seed-ift' })) ??
        (await writeStage(store, { ...seedLoc, stage: 'seed-ift', recordType: 'IftExample', records: ift, producer: PRODUCER, configHash: hash, stats: { sources } }));
      const seedRanked =
        ranked.length === 0
          ? null
          : ((await findStage(store, { ...seedLoc, stage: 'seed-ranked' })) ??
            (await writeStage(store, { ...seedLoc, stage: 'seed-ranked', recordType: 'RankedSet', records: ranked, producer: PRODUCER, configHash: hash, stats: { sources } })));
      const seedEft =
        eftSeed.length === 0
          ? null
          : ((await findStage(store, { ...seedLoc, stage: 'seed-eft' })) ??
            (await writeStage(store, { ...seedLoc, stage: 'seed-eft', recordType: 'SftExample', records: eftSeed, producer: PRODUCER, configHash: hash, stats: { sources } })));
      const evaluation = config.evaluation;
      let evalPrompts: ArtifactRef | null = null;
      let evalRanked: ArtifactRef | null = null;
      if (evaluation?.prompts) {
        const cfg = evaluation.prompts;
        evalPrompts =
          (await findStage(store, { ...seedLoc, stage: 'eval-prompts' })) ??
          (await writeStage(store, { ...seedLoc, stage: 'eval-prompts', recordType: 'EvalPrompt', records: await loadEvalPrompts(cfg), producer: PRODUCER, configHash: hash, stats: { sources: [cfg.file] } }));
      }
      if (evaluation?.judgeSet) {
        const cfg = evaluation.judgeSet;
        evalRanked =
          (await findStage(store, { ...seedLoc, stage: 'eval-ranked' })) ??
          (await writeStage(store, { ...seedLoc, stage: 'eval-ranked', recordType: 'RankedSet', records: await loadEvalRanked(cfg), producer: PRODUCER, configHash: hash, stats: { sources: [cfg.ranked ?? cfg.oasst] } }));
      }
      return { config, configHash: hash, lineage: lineageOf(config), seedIft, seedRanked, seedEft, evalPrompts, evalRanked };
    },

    /** Makes a model usable as a run's starting point: a packaged GGUF is converted once and cached. */
    async importModel(input: { config: RunConfig; source: ModelSource; name: string }): Promise<ModelRef> {
      const { config, source } = input;
      const store = deps.storeFor(config);
      const lineage = lineageOf(config);
      const modelId = modelIdFor(config, input.name);
      const existing = await findModel(store, lineage, modelId);
      if (existing) return existing;
      if ('promoted' in source) {
        // the lineage's promoted model is used as it is: no copy, no new manifest
        const promoted = await readPromoted(store, source.promoted);
        if (!promoted) throw invalid(`${where(config, 0, 'import-model')}: lineage "${source.promoted}" has no promoted model yet (${store.uri(promotedKey(source.promoted))} is missing); run it once from a base model`, 'InvalidConfig');
        const ref = await findModel(store, source.promoted, promoted.modelId);
        if (!ref) throw invalid(`${where(config, 0, 'import-model')}: lineage "${source.promoted}" promotes ${promoted.modelId}, which has no manifest`, 'InvalidConfig');
        return ref;
      }
      let dir: string;
      if ('path' in source) {
        dir = path.resolve(source.path);
      } else {
        dir = path.join(deps.cacheDir, 'models', source.packaged);
        const ready = await fs.stat(path.join(dir, 'config.json')).then(() => true, () => false);
        if (!ready) {
          await fs.mkdir(path.dirname(dir), { recursive: true });
          const started = Date.now();
          await withHeartbeats(async (_update, signal) =>
            deps.compute.importModel({ packaged: source.packaged, output: dir }, {
              signal,
              onEvent: (ev) => {
                if (ev.event === 'done') deps.reporter?.({ run: config.run, iteration: 0, stage: 'import-model', done: 1, total: 1, tokens: 0, elapsedS: (Date.now() - started) / 1000, note: source.packaged });
              },
            }),
          hbMs);
        }
      }
      return publishModel(store, { lineage, modelId, parent: null, method: 'path' in source ? 'external' : 'import', trainedOn: [], dir, external: true });
    },

    /** SFT of `base` on IFT (+ EFT) data: the SFT baseline, or M1. */
    async trainSft(input: { config: RunConfig; base: ModelRef; ift: ArtifactRef; eft: ArtifactRef[]; name: string }): Promise<TrainResult> {
      const { config } = input;
      const store = deps.storeFor(config);
      const lineage = lineageOf(config);
      const modelId = modelIdFor(config, input.name);
      const existing = await findModel(store, lineage, modelId);
      if (existing) return { model: existing, metrics: (await readModelMetrics(store, existing)) ?? {} };

      const ift = await readStage(store, input.ift, IftExample);
      const examples: SftExample[] = ift.map((r) => ({ id: r.id, prompt: r.prompt, completion: r.response, kind: 'ift' }));
      for (const ref of input.eft) examples.push(...(await readStage(store, ref, SftExample)));
      return trainModel({
        config,
        iteration: 0,
        name: input.name,
        method: 'sft',
        base: input.base,
        data: examples,
        trainedOn: [input.ift.uri, ...input.eft.map((r) => r.uri)],
        hyper: {
          lr: config.sft.lr,
          lr_end: config.sft.lrEnd,
          epochs: config.sft.epochs,
          batch_size: config.sft.batchSize,
          dropout: config.sft.dropout,
          beta: config.dpo.beta, // unused by SFT
          max_length: config.sft.maxLength,
          seed: config.randomSeed,
        },
        extraMetrics: { examples: examples.length, ift: ift.length, eft: examples.length - ift.length },
      });
    },

    /** EFT step 1: the SFT baseline judges every human-ranked reply. */
    async judgeRankedReplies(input: { config: RunConfig; judge: ModelRef; ranked: ArtifactRef }): Promise<ArtifactRef> {
      const { config } = input;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration: 0, stage: 'eft-judgments' };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      const sets = await readStage(store, input.ranked, RankedSet);
      const requests: GenerateRequest[] = [];
      const keyOf = new Map<string, { setId: string; replyIndex: number }>();
      for (const set of sets) {
        set.replies.forEach((reply, replyIndex) => {
          const id = recordId(config.run, 'eft-judge', set.id, replyIndex);
          keyOf.set(id, { setId: set.id, replyIndex });
          requests.push({
            id,
            messages: [{ role: 'user', content: judgePrompt(set.prompt, reply.text) }],
            n: config.eft.samples,
            temperature: config.eft.sampling.temperature,
            top_p: config.eft.sampling.topP,
            max_new_tokens: config.eft.sampling.maxNewTokens,
            seed: samplingSeed(config, id),
          });
        });
      }
      const gen = await generate(config, loc, input.judge, requests);
      const { outputs, tokens, seconds } = gen;
      const judgments: EftJudgment[] = [];
      for (const req of requests) {
        const k = keyOf.get(req.id)!;
        outputs.get(req.id)!.outputs.forEach((o, sample) => {
          judgments.push({ id: recordId(req.id, sample), setId: k.setId, replyIndex: k.replyIndex, sample, text: o.text, ...scoreOf(o.text) });
        });
      }
      return publish(store, {
        ...loc,
        recordType: 'EftJudgment',
        records: judgments,
        producer: PRODUCER,
        configHash: configHash(config.eft),
        stats: { ...parseStats(judgments), tokens, seconds, ...shardStats(gen) },
      });
    },

    /** EFT step 2: keep judgments whose score ranking agrees with the human ranking. */
    async buildEftData(input: { config: RunConfig; ranked: ArtifactRef; judgments: ArtifactRef }): Promise<ArtifactRef> {
      const { config } = input;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration: 0, stage: 'eft' };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      const sets = await readStage(store, input.ranked, RankedSet);
      const judgments = await readStage(store, input.judgments, EftJudgment);
      const { examples, stats } = buildEftExamples(sets, judgments);
      return publish(store, { ...loc, recordType: 'SftExample', records: examples, producer: PRODUCER, configHash: configHash(config.eft), stats });
    },

    /** Iteration step a: 8-shot self-instruct prompt generation, filtered. */
    async generatePrompts(input: IterationStageInput & { model: ModelRef; seedIft: ArtifactRef; earlier: ArtifactRef[] }): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const cfg = config.prompts;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage: 'prompts' };
      const existing = await findStage(store, loc);
      if (existing) return existing;

      const seed = (await readStage(store, input.seedIft, IftExample)).map((r) => ({ id: r.id, prompt: r.prompt }));
      const earlier: GeneratedPrompt[] = [];
      for (const ref of input.earlier) earlier.push(...(await readStage(store, ref, GeneratedPrompt)));
      const filter = new InstructionFilter([...seed.map((s) => s.prompt), ...earlier.map((p) => p.prompt)], cfg.rougeLThreshold);
      const kept: GeneratedPrompt[] = [];
      let requested = 0;
      let generated = 0;
      let tokens = 0;
      let seconds = 0;
      let rounds = 0;
      const shardTotals = { shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0, skipped: 0 };
      for (let round = 0; round < cfg.maxRounds && kept.length < cfg.count; round++) {
        rounds++;
        const pool = [...earlier, ...kept].map((p) => ({ id: p.id, prompt: p.prompt }));
        const requests: GenerateRequest[] = [];
        const shotsOf = new Map<string, string[]>();
        for (let r = 0; r < cfg.requestsPerRound; r++) {
          const id = recordId(config.run, iteration, 'self-instruct', round, r);
          const rng = mulberry32(samplingSeed(config, id));
          const demos = chooseDemonstrations(seed, pool, cfg.seedShots, cfg.generatedShots, rng);
          shotsOf.set(id, demos.map((d) => d.id));
          requests.push({
            id,
            messages: [{ role: 'user', content: buildSelfInstructRequest(demos.map((d) => d.prompt)) }],
            n: 1,
            temperature: cfg.sampling.temperature,
            top_p: cfg.sampling.topP,
            max_new_tokens: cfg.sampling.maxNewTokens,
            seed: samplingSeed(config, id),
          });
        }
        requested += requests.length;
        const res = await generate(config, loc, input.model, requests, `round-${String(round).padStart(3, '0')}`, `prompts round ${round + 1}`);
        tokens += res.tokens;
        seconds += res.seconds;
        shardTotals.shards += res.shards;
        shardTotals.shardsReused += res.shardsReused;
        shardTotals.requestsResumed += res.requestsResumed;
        shardTotals.requestsGenerated += res.requestsGenerated;
        shardTotals.skipped += res.skipped;
        for (const req of requests) {
          for (const o of res.outputs.get(req.id)!.outputs) {
            // a continuation cut off by the token limit may end in half an instruction
            for (const instruction of parseGeneratedInstructions(o.text, { truncated: o.finish_reason === 'length' })) {
              generated++;
              if (kept.length >= cfg.count) continue;
              if (filter.consider(instruction).kept) {
                kept.push({ id: recordId(config.run, iteration, 'prompt', instruction), prompt: instruction, iteration, shots: shotsOf.get(req.id)! });
              }
            }
          }
        }
      }
      if (kept.length === 0) {
        throw invalid(`${where(config, iteration, 'prompts')}: no generated instruction passed the filters after ${rounds} rounds (${generated} generated; drops ${JSON.stringify(filter.counts())})`, 'NoPrompts');
      }
      return publish(store, {
        ...loc,
        recordType: 'GeneratedPrompt',
        records: kept,
        producer: PRODUCER,
        configHash: configHash(cfg),
        stats: { requested, rounds, generated, kept: kept.length, filters: filter.counts(), tokens, seconds, ...shardTotals },
      });
    },

    /**
     * Iteration step b: N candidate responses per prompt. With a fleet (`fleet`: the results of
     * generateCandidatesPart for every part) the shards are committed already and this only
     * assembles the stage from them.
     */
    async generateCandidates(input: IterationStageInput & { model: ModelRef; prompts: ArtifactRef; fleet?: PartStats[] }): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage: 'candidates' };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      const writer = new StageWriter<Candidate>(store, { ...loc, recordType: 'Candidate', producer: PRODUCER, configHash: configHash(config.candidates) });
      let prompts = 0;
      const gen = await generateStream(config, loc, input.model, {
        batches: readStageShards(store, input.prompts, GeneratedPrompt),
        total: input.prompts.count,
        request: (p: GeneratedPrompt) => candidateRequest(config, iteration, p),
        onOutputs: async (batch, outputs) => {
          prompts += batch.length;
          const candidates: Candidate[] = [];
          batch.forEach((p, i) => {
            outputs[i]!.outputs.forEach((o, index) => {
              candidates.push({
                id: recordId(config.run, iteration, 'candidate', p.id, index),
                promptId: p.id,
                prompt: p.prompt,
                index,
                text: o.text,
                tokens: o.tokens,
                finishReason: o.finish_reason,
              });
            });
          });
          await writer.add(candidates);
        },
      });
      return publishWriter(writer, loc, { prompts, ...generationStats(gen, input.fleet) });
    },

    /**
     * One part of the candidates stage on a fleet (`compute.fleet.parts`): the shards of its
     * range of prompts, committed exactly as generateCandidates commits them.
     */
    async generateCandidatesPart(input: IterationStageInput & { model: ModelRef; prompts: ArtifactRef; part: number; parts: number }): Promise<PartStats> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      return generatePart(config, { run: config.run, iteration, stage: 'candidates' }, input, {
        items: async () => input.prompts.count,
        batches: () => readStageShards(store, input.prompts, GeneratedPrompt),
        request: (p: GeneratedPrompt) => candidateRequest(config, iteration, p),
      });
    },

    /**
     * Iteration step c: the model judges each candidate `samples` times; scores are parsed here.
     * With a fleet (`fleet`: the results of judgeCandidatesPart) it assembles the committed shards.
     */
    async judgeCandidates(input: IterationStageInput & { model: ModelRef; candidates: ArtifactRef; fleet?: PartStats[] }): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage: 'judgments' };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      const writer = new StageWriter<Judgment>(store, { ...loc, recordType: 'Judgment', producer: PRODUCER, configHash: configHash(config.judge) });
      const parsing = new ParseStats();
      let all = 0;
      let judged = 0;
      async function* counted(): AsyncGenerator<Candidate[]> {
        for await (const batch of readStageShards(store, input.candidates, Candidate)) {
          all += batch.length;
          const kept = batch.filter(isJudged);
          judged += kept.length;
          yield kept;
        }
      }
      const gen = await generateStream(config, loc, input.model, {
        batches: counted(),
        total: input.candidates.count,
        request: (c: Candidate) => judgeRequest(config, iteration, c),
        onOutputs: async (batch, outputs) => {
          const judgments: Judgment[] = [];
          batch.forEach((c, i) => {
            outputs[i]!.outputs.forEach((o, sample) => {
              judgments.push({ id: recordId(config.run, iteration, 'judgment', c.id, sample), candidateId: c.id, promptId: c.promptId, sample, text: o.text, ...scoreOf(o.text) });
            });
          });
          parsing.add(judgments);
          await writer.add(judgments);
        },
      });
      return publishWriter(writer, loc, { ...parsing.stats(), ...generationStats(gen, input.fleet), emptyCandidates: all - judged });
    },

    /**
     * One part of the judgments stage on a fleet: the shards of its range of judge requests (one
     * per non-empty candidate), committed exactly as judgeCandidates commits them.
     */
    async judgeCandidatesPart(input: IterationStageInput & { model: ModelRef; candidates: ArtifactRef; part: number; parts: number }): Promise<PartStats> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const judgedOnly = async function* (): AsyncGenerator<Candidate[]> {
        for await (const batch of readStageShards(store, input.candidates, Candidate)) yield batch.filter(isJudged);
      };
      return generatePart(config, { run: config.run, iteration, stage: 'judgments' }, input, {
        // judge requests (one per non-empty candidate): only a pass over the candidates counts them
        items: async () => {
          let n = 0;
          for await (const batch of judgedOnly()) n += batch.length;
          return n;
        },
        batches: judgedOnly,
        request: (c: Candidate) => judgeRequest(config, iteration, c),
      });
    },

    /** Iteration step d: best vs worst candidate per prompt, ties and unscored prompts dropped. */
    async selectPairs(input: IterationStageInput & { candidates: ArtifactRef; judgments: ArtifactRef }): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage: 'pairs' };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      // two passes over the candidates: lengths and ids to choose, then the chosen texts
      const selector = new PairSelector({ lengthControlRho: config.judge.lengthControlRho });
      for await (const batch of readStageShards(store, input.candidates, Candidate)) selector.addCandidates(batch);
      for await (const batch of readStageShards(store, input.judgments, Judgment)) selector.addJudgments(batch);
      selector.choose();
      const writer = new StageWriter<PreferencePair>(store, { ...loc, recordType: 'PreferencePair', producer: PRODUCER, configHash: configHash(config.judge.lengthControlRho === 0 ? {} : { rho: config.judge.lengthControlRho }) });
      for await (const batch of readStageShards(store, input.candidates, Candidate)) await writer.add(selector.addTexts(batch));
      selector.finish();
      return publishWriter(writer, loc, { prompts: selector.prompts, pairs: selector.pairs, dropped: selector.drops });
    },

    /** Iteration step e: DPO from M_t on the pairs, reference model M_t. */
    async trainDpo(input: IterationStageInput & { model: ModelRef; pairs: ArtifactRef }): Promise<TrainResult> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const lineage = lineageOf(config);
      const name = `m${iteration + 1}`;
      const modelId = modelIdFor(config, name);
      const existing = await findModel(store, lineage, modelId);
      if (existing) return { model: existing, metrics: (await readModelMetrics(store, existing)) ?? {} };
      if (input.pairs.count === 0) {
        const manifest = await readStageManifest(store, input.pairs);
        throw invalid(`${where(config, iteration, 'dpo')}: no preference pairs to train on (pair selection dropped ${JSON.stringify(manifest.stats.dropped ?? {})})`, 'NoPreferencePairs');
      }
      return trainModel({
        config,
        iteration,
        name,
        method: 'dpo',
        base: input.model,
        data: (async function* () {
          for await (const pairs of readStageShards(store, input.pairs, PreferencePair)) yield pairs.map((p) => ({ id: p.id, prompt: p.prompt, chosen: p.chosen, rejected: p.rejected }));
        })(),
        trainedOn: [input.pairs.uri],
        hyper: {
          lr: config.dpo.lr,
          lr_end: config.dpo.lrEnd,
          epochs: config.dpo.epochs,
          batch_size: config.dpo.batchSize,
          dropout: config.dpo.dropout,
          beta: config.dpo.beta,
          max_length: config.dpo.maxLength,
          seed: config.randomSeed + iteration,
        },
        extraMetrics: { pairs: input.pairs.count },
      });
    },

    /**
     * Marks a run's final model as the lineage's promoted one (what `{"promoted": lineage}`
     * starts from). A completed run promotes its final model, or with evaluation gates its newest
     * accepted one (`reason` says why it is not the final model).
     */
    async promoteModel(input: { config: RunConfig; model: ModelRef; reason?: string }): Promise<{ lineage: string; modelId: string; previous: string | null }> {
      const store = deps.storeFor(input.config);
      const lineage = input.model.lineage;
      const previous = await readPromoted(store, lineage);
      const record = { lineage, modelId: input.model.modelId, run: input.config.run, promotedAt: new Date().toISOString(), previous: previous?.modelId ?? null, ...(input.reason ? { reason: input.reason } : {}) };
      await store.putBytes(promotedKey(lineage), JSON.stringify(record, null, 2) + '\n');
      return { lineage, modelId: input.model.modelId, previous: record.previous };
    },

    /**
     * Evaluation: a model's responses to the held-out prompts (one each, `evaluation.responses`
     * sampling). Kept once per model (a run-level stage named after it), so M_t's responses from
     * the iteration that trained it are reused when M_{t+1} is compared with it.
     */
    async evalResponses(input: { config: RunConfig; model: ModelRef; prompts: ArtifactRef }): Promise<ArtifactRef> {
      const { config, model } = input;
      const cfg = evaluationOf(config, 'eval-responses');
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration: 0, stage: `eval-responses-${model.modelId}` };
      const existing = await findStage(store, loc);
      if (existing) return existing;
      const prompts = await readStage(store, input.prompts, EvalPrompt);
      const requests = prompts.map((p): GenerateRequest => {
        const id = recordId(config.run, 'eval-response', model.modelId, p.id);
        return { id, messages: [{ role: 'user', content: p.instruction }], n: 1, temperature: cfg.responses.temperature, top_p: cfg.responses.topP, max_new_tokens: cfg.responses.maxNewTokens, seed: samplingSeed(config, id) };
      });
      const gen = await generate(config, loc, model, requests, 'all', `evaluation responses ${model.modelId}`);
      const records: EvalResponse[] = prompts.map((p, i) => {
        const out = gen.outputs.get(requests[i]!.id)!;
        const o = out.outputs[0];
        return { id: recordId(requests[i]!.id, 0), promptId: p.id, model: model.modelId, text: o?.text ?? '', tokens: o?.tokens ?? 0, finishReason: o?.finish_reason ?? 'stop', ...(out.skipped !== undefined ? { skipped: out.skipped } : {}) };
      });
      return publish(store, { ...loc, recordType: 'EvalResponse', records, producer: PRODUCER, configHash: configHash(cfg.responses), stats: { tokens: gen.tokens, seconds: gen.seconds, ...shardStats(gen), lengths: responseLengths(model.modelId, records) } });
    },

    /**
     * Evaluation: a model as a judge of the held-out human rankings. Each reply is judged
     * `judgeSamples` times with the run's rubric; the mean parsed score ranks the replies,
     * compared with the human ranks. Kept once per model.
     */
    async evalJudgeQuality(input: { config: RunConfig; model: ModelRef; ranked: ArtifactRef }): Promise<JudgeQuality> {
      const { config, model } = input;
      const cfg = evaluationOf(config, 'eval-judge');
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration: 0, stage: `eval-judge-${model.modelId}` };
      const existing = await findStage(store, loc);
      if (existing) return JudgeQuality.parse((await readStageManifest(store, existing)).stats.judgeQuality);
      const sets = await readStage(store, input.ranked, RankedSet);
      const requests: GenerateRequest[] = [];
      for (const set of sets) {
        set.replies.forEach((reply, k) => {
          const id = recordId(config.run, 'eval-judge', model.modelId, set.id, k);
          requests.push({ id, messages: [{ role: 'user', content: judgePrompt(set.prompt, reply.text) }], n: cfg.judgeSamples, temperature: cfg.judgeSampling.temperature, top_p: cfg.judgeSampling.topP, max_new_tokens: cfg.judgeSampling.maxNewTokens, seed: samplingSeed(config, id) });
        });
      }
      const gen = await generate(config, loc, model, requests, 'all', `evaluation judge ${model.modelId}`);
      const judgments: EftJudgment[] = [];
      const scored: ScoredSet[] = [];
      let r = 0;
      for (const set of sets) {
        const scores = set.replies.map((_, k) => {
          const req = requests[r++]!;
          const parsed: number[] = [];
          gen.outputs.get(req.id)!.outputs.forEach((o, sample) => {
            const j = scoreOf(o.text);
            judgments.push({ id: recordId(req.id, sample), setId: set.id, replyIndex: k, sample, text: o.text, ...j });
            if (j.score !== null) parsed.push(j.score);
          });
          return parsed.length === 0 ? null : parsed.reduce((a, b) => a + b, 0) / parsed.length;
        });
        scored.push({ human: set.replies.map((x) => x.rank), scores });
      }
      const quality = judgeQuality(model.modelId, scored, { judgments: judgments.length, parsed: judgments.filter((j) => j.score !== null).length });
      await publish(store, { ...loc, recordType: 'EftJudgment', records: judgments, producer: PRODUCER, configHash: configHash({ s: cfg.judgeSamples, p: cfg.judgeSampling }), stats: { judgeQuality: quality, tokens: gen.tokens, seconds: gen.seconds, ...shardStats(gen) } });
      return quality;
    },

    /**
     * Evaluation: M_{t+1}'s responses against an opponent's (a model's, or the prompts' reference
     * outputs) on the held-out prompts, judged by `evaluation.judge` in both orders.
     */
    async evalHeadToHead(input: IterationStageInput & {
      model: ModelRef;
      responses: ArtifactRef;
      prompts: ArtifactRef;
      /** a model id with its responses, or the reference outputs */
      opponent: { id: string; responses: ArtifactRef } | { id: 'reference' };
      /** the judge when `evaluation.judge.kind` is "model" */
      judgeModel: ModelRef | null;
    }): Promise<HeadToHead> {
      const { config, iteration, model, opponent } = input;
      const cfg = evaluationOf(config, 'eval-head-to-head');
      const judgeCfg = cfg.judge;
      if (!judgeCfg) throw invalid(`${where(config, iteration, 'eval-head-to-head')}: evaluation.judge is not configured`, 'InvalidConfig');
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage: `eval-h2h-${opponent.id}` };
      const existing = await findStage(store, loc);
      if (existing) return HeadToHead.parse((await readStageManifest(store, existing)).stats.headToHead);
      const prompts = await readStage(store, input.prompts, EvalPrompt);
      const mine = new Map((await readStage(store, input.responses, EvalResponse)).map((r) => [r.promptId, r.text]));
      const theirs = new Map<string, string>();
      if ('responses' in opponent) for (const r of await readStage(store, opponent.responses, EvalResponse)) theirs.set(r.promptId, r.text);
      else for (const p of prompts) if (p.reference !== undefined) theirs.set(p.id, p.reference);
      const compared = prompts.filter((p) => mine.has(p.id) && theirs.has(p.id));
      if (compared.length === 0) {
        throw invalid(`${where(config, iteration, 'eval-head-to-head')}: no held-out prompt has both a response of ${model.modelId} and one of ${opponent.id}${opponent.id === 'reference' ? ' (the evaluation prompts carry no reference outputs: drop "reference" from evaluation.opponents)' : ''}`, 'InvalidData');
      }
      const requests: GenerateRequest[] = [];
      for (const p of compared) {
        const a = mine.get(p.id)!;
        const b = theirs.get(p.id)!;
        for (const order of ['model-first', 'model-second'] as const) {
          const id = recordId(config.run, iteration, 'eval-h2h', opponent.id, p.id, order);
          const content = order === 'model-first' ? pairwiseJudgePrompt(p.instruction, a, b, cfg.pairwiseMaxChars) : pairwiseJudgePrompt(p.instruction, b, a, cfg.pairwiseMaxChars);
          requests.push({ id, messages: [{ role: 'user', content }], n: 1, temperature: cfg.pairwise.temperature, top_p: cfg.pairwise.topP, max_new_tokens: cfg.pairwise.maxNewTokens, seed: samplingSeed(config, id) });
        }
      }
      const { engine, judgeRef, label } = judgeEngine(judgeCfg, input.judgeModel, config, iteration);
      const gen = await generate(config, loc, judgeRef, requests, 'all', `head-to-head vs ${opponent.id}`, engine);
      const verdicts: PairwiseVerdict[] = [];
      const byPrompt: { modelFirst: 'A' | 'B' | null; modelSecond: 'A' | 'B' | null }[] = [];
      compared.forEach((p, k) => {
        const pair = [0, 1].map((o) => {
          const req = requests[2 * k + o]!;
          const text = gen.outputs.get(req.id)!.outputs[0]?.text ?? '';
          const verdict = parsePairwiseVerdict(text);
          verdicts.push({ id: recordId(req.id, 0), promptId: p.id, order: o === 0 ? 'model-first' : 'model-second', text, verdict });
          return verdict;
        });
        byPrompt.push({ modelFirst: pair[0]!, modelSecond: pair[1]! });
      });
      const result = headToHead(model.modelId, opponent.id, label, byPrompt);
      await publish(store, { ...loc, recordType: 'PairwiseVerdict', records: verdicts, producer: PRODUCER, configHash: configHash({ j: judgeCfg, p: cfg.pairwise, m: cfg.pairwiseMaxChars }), stats: { headToHead: result, tokens: gen.tokens, seconds: gen.seconds, ...shardStats(gen) } });
      return result;
    },

    /** Writes the iteration's summary (JSON + Markdown) next to its artifacts and shows it. */
    async summarizeIteration(input: IterationStageInput & {
      modelIn: ModelRef;
      modelOut: ModelRef;
      prompts: ArtifactRef;
      candidates: ArtifactRef;
      judgments: ArtifactRef;
      pairs: ArtifactRef;
      dpoMetrics: Record<string, unknown>;
      timings: Record<string, number>;
      /** the evaluation's results (absent: no evaluation configured) */
      evaluation?: {
        judgeQuality: JudgeQuality[];
        /** M_t's judge quality, for the gate's accuracy-drop check */
        previousJudgeQuality: JudgeQuality | null;
        headToHead: HeadToHead[];
        /** held-out responses of the models compared (M_{t+1} first) */
        responses: ArtifactRef[];
      };
    }): Promise<IterationSummary> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const promptsM = await readStageManifest(store, input.prompts);
      const pairsM = await readStageManifest(store, input.pairs);
      const candidates = new CandidateSummary();
      const watch = new RewardWatchAccumulator();
      for await (const batch of readStageShards(store, input.candidates, Candidate)) {
        candidates.add(batch);
        watch.addCandidates(batch);
      }
      const judgments = new JudgmentSummary();
      for await (const batch of readStageShards(store, input.judgments, Judgment)) {
        judgments.add(batch);
        watch.addJudgments(batch);
      }
      const pairs = new PairSummaryAccumulator();
      for await (const batch of readStageShards(store, input.pairs, PreferencePair)) {
        pairs.add(batch);
        watch.addPairs(batch);
      }
      let evaluation: EvaluationSummary | null = null;
      if (input.evaluation && config.evaluation) {
        const e = input.evaluation;
        // each evaluation-responses stage carries its lengths in its manifest: no need to read its records again
        const responses = [];
        for (const ref of e.responses) responses.push(ResponseLengths.parse((await readStageManifest(store, ref)).stats.lengths));
        const measured = { model: input.modelOut.modelId, previousModel: input.modelIn.modelId, headToHead: e.headToHead, judgeQuality: e.judgeQuality, previousJudgeQuality: e.previousJudgeQuality, responses, watch: watch.watch() };
        evaluation = {
          model: input.modelOut.modelId,
          judgeQuality: e.judgeQuality,
          headToHead: e.headToHead,
          responses,
          watch: measured.watch,
          gate: config.evaluation.gate ? decideGate(config.evaluation.gate, measured) : null,
        };
      }
      const filters = (promptsM.stats.filters ?? {}) as Record<string, number>;
      const dropped = Object.fromEntries(Object.entries(filters).filter(([k]) => k !== 'kept'));
      const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
      const meanOf = (key: string): unknown => (input.dpoMetrics.mean as Record<string, unknown> | undefined)?.[key];
      const summary: IterationSummary = {
        run: config.run,
        iteration,
        modelIn: input.modelIn.modelId,
        modelOut: input.modelOut.modelId,
        prompts: {
          requested: Number(promptsM.stats.requested ?? 0),
          generated: Number(promptsM.stats.generated ?? 0),
          kept: promptsM.count,
          dropped,
        },
        candidates: candidates.summary(),
        judge: judgments.summary(),
        pairs: { ...pairs.summary(), dropped: (pairsM.stats.dropped ?? {}) as Record<string, number> },
        dpo: {
          loss: num(input.dpoMetrics.train_loss ?? input.dpoMetrics.loss),
          // means over all logged steps of the DPO run
          rewardAccuracy: num(meanOf('rewards/accuracies')),
          rewardMargin: num(meanOf('rewards/margins')),
          steps: num(input.dpoMetrics.steps),
        },
        timings: input.timings,
        skipped: skipCounts(promptsM.stats, (await readStageManifest(store, input.candidates)).stats, (await readStageManifest(store, input.judgments)).stats),
        evaluation,
      };
      await store.putBytes(summaryKey(config.run, iteration, 'json'), JSON.stringify(summary, null, 2) + '\n');
      const md = renderIterationSummaryMarkdown(summary);
      await store.putBytes(summaryKey(config.run, iteration, 'md'), md);
      deps.reporter?.({ run: config.run, iteration, stage: 'summary', done: 1, total: 1, tokens: 0, elapsedS: 0, note: store.uri(summaryKey(config.run, iteration, 'md')) });
      return summary;
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;

const NO_PART_WORK: PartStats = { tokens: 0, seconds: 0, shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0 };

function partStats(g: PartStats): PartStats {
  return { tokens: g.tokens, seconds: g.seconds, shards: g.shards, shardsReused: g.shardsReused, requestsResumed: g.requestsResumed, requestsGenerated: g.requestsGenerated };
}

/** Items [first, end) of part `part` of `parts`: consecutive whole shards, as even as shards allow. */
export interface PartRange {
  first: number;
  end: number;
}

export function partRange(items: number, shardSize: number, part: number, parts: number): PartRange {
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(part) || part < 0 || part >= parts) throw new Error(`fleet part ${part} of ${parts}: not a part`);
  const size = Math.max(1, shardSize);
  const shards = Math.ceil(items / size);
  const from = Math.floor((part * shards) / parts);
  const to = Math.floor(((part + 1) * shards) / parts);
  return { first: from * size, end: Math.min(items, to * size) };
}

/** An empty response (or one the engine skipped) has nothing to judge: counted, not judged. */
function isJudged(c: Candidate): boolean {
  return c.text.trim() !== '';
}

/**
 * A generation stage's tokens, time and shard counts. On a fleet the parts generated (the
 * assembling activity finds their shards committed), so their work is added to its own.
 */
function generationStats(g: PartStats & { skipped: number }, parts?: PartStats[]) {
  if (!parts) return { tokens: g.tokens, seconds: g.seconds, ...shardStats(g) };
  const sum = (k: keyof PartStats): number => parts.reduce((n, p) => n + p[k], g[k]);
  return {
    tokens: sum('tokens'),
    seconds: sum('seconds'),
    shards: g.shards,
    // reused from earlier attempts of a part (the assembling activity finds every shard committed)
    shardsReused: parts.reduce((n, p) => n + p.shardsReused, 0),
    requestsResumed: sum('requestsResumed'),
    requestsGenerated: sum('requestsGenerated'),
    skipped: g.skipped,
    fleetParts: parts.length,
  };
}

/** How a generation stage went in terms of shards: what was reused from earlier attempts, what was skipped. */
function shardStats(g: { shards: number; shardsReused: number; requestsResumed: number; requestsGenerated: number; skipped: number }) {
  return { shards: g.shards, shardsReused: g.shardsReused, requestsResumed: g.requestsResumed, requestsGenerated: g.requestsGenerated, skipped: g.skipped };
}

/** Requests and records left out along the iteration, by reason (only reasons that occurred). */
function skipCounts(prompts: Record<string, unknown>, candidates: Record<string, unknown>, judgments: Record<string, unknown>): Record<string, number> {
  const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const out: Record<string, number> = {
    'self-instruct requests over the context': n(prompts.skipped),
    'prompts over the context': n(candidates.skipped),
    'empty candidates (not judged)': n(judgments.emptyCandidates),
    'judge requests over the context': n(judgments.skipped),
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v > 0));
}

/** The score parsed from a judge's generated text, or null with the reason. */
/** The run's evaluation settings, for an evaluation activity (a run without them has none to run). */
function evaluationOf(config: RunConfig, stage: string): NonNullable<RunConfig['evaluation']> {
  if (!config.evaluation) throw invalid(`run "${config.run}", stage ${stage}: the run config has no "evaluation" section`, 'InvalidConfig');
  return config.evaluation;
}

function describeSource(source: ModelSource): string {
  if ('packaged' in source) return source.packaged;
  if ('promoted' in source) return `promoted:${source.promoted}`;
  return path.basename(source.path);
}

function scoreOf(text: string): { score: number | null; parseError?: string } {
  const parsed = parseJudgeScore(text);
  return parsed.score === null ? { score: null, parseError: parsed.error } : { score: parsed.score };
}

/** Parse counts of judgments, accumulated batch by batch. */
class ParseStats {
  private judgments = 0;
  private parsed = 0;
  private readonly parseFailures: Record<string, number> = {};

  add(judgments: readonly { score: number | null; parseError?: string }[]): void {
    for (const j of judgments) {
      this.judgments++;
      if (j.score !== null) this.parsed++;
      else this.parseFailures[j.parseError ?? 'unknown'] = (this.parseFailures[j.parseError ?? 'unknown'] ?? 0) + 1;
    }
  }

  stats() {
    return { judgments: this.judgments, parsed: this.parsed, parseRate: this.judgments ? this.parsed / this.judgments : 0, parseFailures: this.parseFailures };
  }
}

function parseStats(judgments: readonly { score: number | null; parseError?: string }[]) {
  const p = new ParseStats();
  p.add(judgments);
  return p.stats();
}

/** Writes batches of records to a JSONL file; returns the sha256 of its text. */
async function writeJsonlFile(file: string, batches: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<string> {
  const hash = createHash('sha256');
  const out = await fs.open(file, 'w');
  try {
    for await (const batch of batches) {
      const text = toJsonl(batch);
      hash.update(text);
      await out.write(text);
    }
  } finally {
    await out.close();
  }
  return hash.digest('hex');
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function readModelMetrics(store: ArtifactStore, ref: ModelRef): Promise<Record<string, unknown> | null> {
  const bytes = await store.getBytes(ref.key);
  const parsed = JSON.parse(bytes.toString('utf8')) as { metrics?: Record<string, unknown> };
  return parsed.metrics ?? null;
}

export type { ModelRef } from '../core/schemas';
export type { PartStats } from '../workflows/contract';
