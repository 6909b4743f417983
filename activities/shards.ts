/**
 * Sharded, resumable generation.
 *
 * A stage's requests are cut into shards of `shardSize` requests. A shard is the unit of
 * publication: once all its outputs exist they are written to the store in request order
 * and then a small commit record is written next to them. Only a commit (whose sha256 and
 * request digest match) makes a shard count as done, so a crash between the two writes
 * leaves a shard that is simply generated again.
 *
 *   <stage>/parts/<part>/shard-00003.outputs.jsonl   committed outputs (request order)
 *   <stage>/parts/<part>/shard-00003.commit.json     written last
 *   <stage>/parts/<part>/shard-00003.partial.jsonl   outputs flushed so far (best effort)
 *
 * Within a shard, the compute process appends one line per finished request to a local
 * file and skips ids already present when it starts again; the local file is also copied
 * to the store every `partialFlushMs`, so a fresh worker on another host continues the
 * shard from its last flush instead of from its start. Record ids, and the sampling seeds
 * derived from them, do not depend on the attempt, so a redone request replaces its line.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { configHash } from '../core/ids';
import { stagePrefix, type StageLocation } from '../store/artifacts';
import { generationShardKeys } from '../store/keys';
import type { ComputeBackend, ComputeEvent, GenerateOutput, GenerateRequest } from '../backends/compute';
import { type ArtifactStore, sha256Hex } from '../store/store';

export interface ShardCommit {
  kind: 'shard-commit';
  shard: number;
  /** requests in the shard */
  count: number;
  /** digest of the shard's requests: a commit for other requests (a changed config) is ignored */
  requests: string;
  sha256: string;
  bytes: number;
  committedAt: string;
}

export interface ShardedGenerateOptions {
  store: ArtifactStore;
  compute: ComputeBackend;
  workDir: string;
  loc: StageLocation;
  /** sub-directory of the stage's parts (e.g. a self-instruct round) */
  part: string;
  /** the model as the compute backend takes it; a function is called only when a shard needs generating */
  model: string | (() => Promise<string>);
  requests: GenerateRequest[];
  shardSize: number;
  /**
   * number of the first shard (default 0): a caller that hands a part's requests over in
   * consecutive slices of whole shards numbers each slice's shards where the slice starts
   */
  firstShard?: number;
  partialFlushMs: number;
  device: 'auto' | 'cpu' | 'cuda';
  batchSize: number;
  threads: number;
  signal?: AbortSignal;
  /** called with cumulative progress over the whole part */
  onProgress?: (p: ShardProgress) => void;
  log?: (line: string) => void;
}

export interface ShardProgress {
  part: string;
  shards: number;
  shardsCommitted: number;
  /** requests finished (incl. reused) */
  done: number;
  total: number;
  tokens: number;
}

export interface ShardedGenerateResult {
  outputs: Map<string, GenerateOutput>;
  shards: number;
  /** shards found committed before this call */
  shardsReused: number;
  /** requests of uncommitted shards whose outputs were found (local file or store partial) */
  requestsResumed: number;
  /** requests the compute process generated in this call */
  requestsGenerated: number;
  tokens: number;
  seconds: number;
}

/** A generation shard's keys (built in store/keys.ts with every other key). */
export const shardKeys = generationShardKeys;

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Parses output lines, keeping only well-formed lines for the shard's own requests; a torn last line is dropped. */
export function parseOutputLines(text: string, wanted: ReadonlySet<string>): Map<string, GenerateOutput> {
  const out = new Map<string, GenerateOutput>();
  const lines = text.split('\n');
  // without a final newline the last line may be half written
  if (!text.endsWith('\n')) lines.pop();
  for (const line of lines) {
    if (!line.trim()) continue;
    let rec: GenerateOutput;
    try {
      rec = JSON.parse(line) as GenerateOutput;
    } catch {
      continue;
    }
    if (rec && typeof rec.id === 'string' && wanted.has(rec.id) && Array.isArray(rec.outputs)) out.set(rec.id, rec);
  }
  return out;
}

function serialize(requests: readonly GenerateRequest[], outputs: Map<string, GenerateOutput>): string {
  return requests.map((r) => JSON.stringify(outputs.get(r.id)) + '\n').join('');
}

async function readText(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** A committed shard's outputs, or null when there is no valid commit for exactly these requests. */
export async function readCommittedShard(
  store: ArtifactStore,
  loc: StageLocation,
  part: string,
  shard: number,
  requests: readonly GenerateRequest[],
  log?: (line: string) => void,
): Promise<Map<string, GenerateOutput> | null> {
  const keys = shardKeys(loc, part, shard);
  if (!(await store.exists(keys.commit))) return null;
  let commit: ShardCommit;
  try {
    commit = JSON.parse((await store.getBytes(keys.commit)).toString('utf8')) as ShardCommit;
  } catch (err) {
    log?.(`shard ${store.uri(keys.commit)}: unreadable commit (${(err as Error).message}); generating it again`);
    return null;
  }
  if (commit.requests !== configHash(requests)) {
    log?.(`shard ${store.uri(keys.commit)}: committed for other requests (the config changed); generating it again`);
    return null;
  }
  const bytes = await store.getBytes(keys.outputs).catch(() => null);
  if (!bytes || sha256Hex(bytes) !== commit.sha256) {
    log?.(`shard ${store.uri(keys.outputs)}: missing or sha256 differs from its commit; generating it again`);
    return null;
  }
  const outputs = parseOutputLines(bytes.toString('utf8'), new Set(requests.map((r) => r.id)));
  if (outputs.size !== requests.length) {
    log?.(`shard ${store.uri(keys.outputs)}: holds ${outputs.size} of ${requests.length} outputs; generating it again`);
    return null;
  }
  return outputs;
}

/** Generates every request of a part, shard by shard, reusing committed shards and partial outputs. */
export async function generateSharded(opts: ShardedGenerateOptions): Promise<ShardedGenerateResult> {
  const started = Date.now();
  const { store, loc, part } = opts;
  const shards = chunk(opts.requests, Math.max(1, opts.shardSize));
  const first = opts.firstShard ?? 0;
  const outputs = new Map<string, GenerateOutput>();
  const localDir = path.join(opts.workDir, stagePrefix(loc), 'parts', part);
  await fs.mkdir(localDir, { recursive: true });

  let shardsCommitted = 0;
  let requestsResumed = 0;
  const pending: { k: number; input: string; output: string; ids: Set<string> }[] = [];
  for (const [k, reqs] of shards.entries()) {
    const committed = await readCommittedShard(store, loc, part, first + k, reqs, opts.log);
    if (committed) {
      for (const [id, o] of committed) outputs.set(id, o);
      shardsCommitted++;
      continue;
    }
    const ids = new Set(reqs.map((r) => r.id));
    const name = `shard-${String(first + k).padStart(5, '0')}`;
    const input = path.join(localDir, `${name}.requests.jsonl`);
    const output = path.join(localDir, `${name}.outputs.jsonl`);
    await fs.writeFile(input, reqs.map((r) => JSON.stringify(r) + '\n').join(''));
    // Union of what this host flushed and what any host copied to the store.
    const local = parseOutputLines(await readText(output), ids);
    const keys = shardKeys(loc, part, first + k);
    const remote = (await store.exists(keys.partial))
      ? parseOutputLines((await store.getBytes(keys.partial)).toString('utf8'), ids)
      : new Map();
    for (const [id, o] of remote) if (!local.has(id)) local.set(id, o);
    const kept = reqs.filter((r) => local.has(r.id));
    await fs.writeFile(output, serialize(kept, local));
    requestsResumed += kept.length;
    pending.push({ k, input, output, ids });
  }
  const reused = shardsCommitted;
  const total = opts.requests.length;
  const pendingTotal = pending.reduce((n, p) => n + shards[p.k]!.length, 0);
  // requests of shards committed before this call; the compute process counts the rest
  const doneBefore = total - pendingTotal;

  const commit = async (k: number): Promise<void> => {
    const p = pending.find((x) => x.k === k)!;
    const reqs = shards[k]!;
    const got = parseOutputLines(await readText(p.output), p.ids);
    const missing = reqs.filter((r) => !got.has(r.id));
    if (missing.length > 0)
      throw new Error(
        `${stagePrefix(loc)}/parts/${part} shard ${first + k}: compute finished without outputs for ${missing.length} requests (first ${missing[0]!.id})`,
      );
    const body = serialize(reqs, got);
    const keys = shardKeys(loc, part, first + k);
    const put = await store.putBytes(keys.outputs, body);
    const record: ShardCommit = {
      kind: 'shard-commit',
      shard: first + k,
      count: reqs.length,
      requests: configHash(reqs),
      sha256: put.sha256,
      bytes: put.bytes,
      committedAt: new Date().toISOString(),
    };
    await store.putBytes(keys.commit, JSON.stringify(record, null, 2) + '\n');
    for (const [id, o] of got) outputs.set(id, o);
    shardsCommitted++;
  };

  let tokens = 0;
  let requestsGenerated = 0;
  if (pending.length > 0) {
    let chain: Promise<void> = Promise.resolve();
    let chainError: unknown = null;
    const committedHere = new Set<number>();
    const enqueue = (fn: () => Promise<void>): void => {
      chain = chain.then(fn).catch((err: unknown) => {
        chainError ??= err;
      });
    };
    let lastFlush = Date.now();
    let flushing = false;
    const flushPartial = (k: number): void => {
      if (flushing || Date.now() - lastFlush < opts.partialFlushMs) return;
      flushing = true;
      lastFlush = Date.now();
      const p = pending.find((x) => x.k === k);
      if (!p) return;
      enqueue(async () => {
        try {
          const text = await readText(p.output);
          const cut = text.lastIndexOf('\n') + 1;
          if (cut > 0 && !committedHere.has(k)) await store.putBytes(shardKeys(loc, part, first + k).partial, text.slice(0, cut));
        } finally {
          flushing = false;
        }
      });
    };
    const onEvent = (ev: ComputeEvent): void => {
      const idx = typeof ev.shard === 'number' ? ev.shard : 0;
      const k = pending[idx]?.k;
      if (k === undefined) return;
      if (ev.event === 'shard_done') {
        committedHere.add(k);
        enqueue(() => commit(k));
      } else if (ev.event === 'progress') {
        if (typeof ev.tokens === 'number') tokens = ev.tokens;
        flushPartial(k);
        opts.onProgress?.({
          part,
          shards: shards.length,
          shardsCommitted,
          done: Math.min(total, doneBefore + Number(ev.done ?? 0)),
          total,
          tokens,
        });
      }
    };
    const done = await opts.compute
      .generate(
        {
          model: typeof opts.model === 'string' ? opts.model : await opts.model(),
          shards: pending.map((p) => ({ input: p.input, output: p.output })),
          device: opts.device,
          batch_size: opts.batchSize,
          threads: opts.threads,
        },
        { onEvent, ...(opts.signal ? { signal: opts.signal } : {}) },
      )
      .finally(async () => {
        await chain;
      });
    await chain;
    if (chainError) throw chainError;
    // a backend that reports no shard_done events: commit what is left now
    for (const p of pending) if (!committedHere.has(p.k)) await commit(p.k);
    tokens = Number(done.tokens ?? tokens);
    requestsGenerated = pendingTotal - requestsResumed;
    opts.onProgress?.({ part, shards: shards.length, shardsCommitted, done: total, total, tokens });
  }
  return {
    outputs,
    shards: shards.length,
    shardsReused: reused,
    requestsResumed,
    requestsGenerated,
    tokens,
    seconds: (Date.now() - started) / 1000,
  };
}
