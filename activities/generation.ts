/**
 * The generation driver every generating stage goes through: a stage's requests, streamed in
 * slices of whole shards to the compute backend (shards.ts commits them), with heartbeats,
 * live progress signals and reuse of an earlier attempt's committed shards; and the fleet
 * part arithmetic (which shards a part generates, what it reports).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ModelRef, RunConfig } from '../core/schemas';
import type { ComputeBackend, GenerateOutput, GenerateRequest } from '../backends/compute';
import { findStage, modelDir, type StageLocation } from '../store/artifacts';
import type { PartStats } from '../workflows/contract';
import { type ActivityDeps, intervals, where } from './common';
import { type LiveSignaller, liveSignaller, rates, stageLog, withHeartbeats } from './progress';
import { generateSharded } from './shards';

/** generation requests handed to the compute backend at once (rounded to whole shards) */
const GENERATE_SLICE = 4096;

export type GenerationDriver = ReturnType<typeof generationDriver>;

export function generationDriver(deps: ActivityDeps) {
  const { hbMs, signalMs } = intervals(deps);

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
    if (range.first % shardSize !== 0)
      throw new Error(
        `${where(config, loc.iteration, loc.stage)}: a part must start at a shard boundary (item ${range.first}, shard size ${shardSize})`,
      );
    const acc = { tokens: 0, seconds: 0, skipped: 0, shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0, requests: 0 };

    const runSlice = async (items: T[]): Promise<void> => {
      const requests = items.map(input.request);
      const before = acc.requests;
      const firstShard = (range.first + before) / shardSize;
      const tokensBefore = acc.tokens;
      const res = await withHeartbeats(
        async (update, signal) =>
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
              const p = {
                run: config.run,
                iteration: loc.iteration,
                stage: label,
                done,
                total,
                tokens,
                elapsedS: (Date.now() - started) / 1000,
              };
              update({ ...p, part: sp.part, shards, shardsCommitted });
              last = {
                iteration: loc.iteration,
                stage: label,
                done,
                total,
                shards,
                shardsCommitted,
                tokens,
                elapsedS: Math.round(p.elapsedS),
                ...rates(done, total, tokens, p.elapsedS),
              };
              live.update(last);
              deps.reporter?.(p);
            },
          }),
        hbMs,
      );
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
      deps.reporter?.({
        run: config.run,
        iteration: loc.iteration,
        stage: label,
        done: acc.requests,
        total: acc.requests,
        tokens: acc.tokens,
        elapsedS: acc.seconds,
        note: `attempt ${attempt}: reused ${acc.shardsReused}/${acc.shards} committed shards and ${acc.requestsResumed} partial outputs${previous?.done !== undefined ? ` (last heartbeat: ${previous.done} done)` : ''}`,
      });
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
  async function generate(
    config: RunConfig,
    loc: StageLocation,
    model: ModelRef,
    requests: GenerateRequest[],
    part = 'all',
    label = loc.stage,
    engine?: { backend: ComputeBackend; remote: boolean },
  ) {
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

  return { generateStream, generatePart, generate };
}

const NO_PART_WORK: PartStats = { tokens: 0, seconds: 0, shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0 };

function partStats(g: PartStats): PartStats {
  return {
    tokens: g.tokens,
    seconds: g.seconds,
    shards: g.shards,
    shardsReused: g.shardsReused,
    requestsResumed: g.requestsResumed,
    requestsGenerated: g.requestsGenerated,
  };
}

/** Items [first, end) of part `part` of `parts`: consecutive whole shards, as even as shards allow. */
export interface PartRange {
  first: number;
  end: number;
}

export function partRange(items: number, shardSize: number, part: number, parts: number): PartRange {
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(part) || part < 0 || part >= parts)
    throw new Error(`fleet part ${part} of ${parts}: not a part`);
  const size = Math.max(1, shardSize);
  const shards = Math.ceil(items / size);
  const from = Math.floor((part * shards) / parts);
  const to = Math.floor(((part + 1) * shards) / parts);
  return { first: from * size, end: Math.min(items, to * size) };
}

/**
 * A generation stage's tokens, time and shard counts. On a fleet the parts generated (the
 * assembling activity finds their shards committed), so their work is added to its own.
 */
export function generationStats(g: PartStats & { skipped: number }, parts?: PartStats[]) {
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
export function shardStats(g: {
  shards: number;
  shardsReused: number;
  requestsResumed: number;
  requestsGenerated: number;
  skipped: number;
}) {
  return {
    shards: g.shards,
    shardsReused: g.shardsReused,
    requestsResumed: g.requestsResumed,
    requestsGenerated: g.requestsGenerated,
    skipped: g.skipped,
  };
}
