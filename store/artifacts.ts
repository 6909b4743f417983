/**
 * Stage outputs and model checkpoints in the artifact store.
 *
 *   runs/<run>/iter-<t>/<stage>/shard-<k>.jsonl + manifest.json   (manifest written last)
 *   models/<lineage>/<model-id>/<files...> + manifest.json        (manifest written last)
 *
 * Readers trust only manifests and verify every shard's sha256.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { z } from 'zod';
import { parseJsonl, toJsonl } from '../core/jsonl';
import { ArtifactRef, ModelManifest, type ModelRef, StageManifest } from '../core/schemas';
import { modelManifestKey, modelPrefix, promotedKey, stageManifestKey, type StageLocation, stageShardKey } from './keys';
import { type ArtifactStore, sha256File, sha256Hex } from './store';

export { modelPrefix, promotedKey, type StageLocation, stagePrefix } from './keys';

export class IntegrityError extends Error {
  override name = 'IntegrityError';
}

/** Returns the published stage's reference, or null when the stage has no manifest yet. */
export async function findStage(store: ArtifactStore, loc: StageLocation): Promise<ArtifactRef | null> {
  const key = stageManifestKey(loc);
  if (!(await store.exists(key))) return null;
  const bytes = await store.getBytes(key);
  const manifest = StageManifest.parse(JSON.parse(bytes.toString('utf8')));
  return { uri: store.uri(key), key, count: manifest.count, sha256: sha256Hex(bytes) };
}

/** Records per stage shard file: a stage is written and read one shard at a time. */
export const STAGE_SHARD_SIZE = 5_000;

export interface StageMeta extends StageLocation {
  recordType: string;
  producer: string;
  configHash: string;
  /** records per shard file (default STAGE_SHARD_SIZE) */
  shardSize?: number;
}

export interface WriteStageInput<T> extends StageMeta {
  records: readonly T[];
  stats?: Record<string, unknown>;
}

/**
 * Writes a stage as it is produced: `add` stores a shard file whenever a shard's worth of
 * records is buffered, `finish` stores the rest and then the manifest, which publishes the
 * stage. Shards of an unfinished writer are unreferenced and overwritten by the next attempt.
 */
export class StageWriter<T> {
  private readonly shardSize: number;
  private readonly shards: StageManifest['shards'] = [];
  private buffer: T[] = [];
  private written = 0;

  constructor(
    private readonly store: ArtifactStore,
    private readonly meta: StageMeta,
  ) {
    this.shardSize = Math.max(1, meta.shardSize ?? STAGE_SHARD_SIZE);
  }

  /** records added so far */
  get count(): number {
    return this.written + this.buffer.length;
  }

  async add(records: readonly T[]): Promise<void> {
    for (const r of records) {
      this.buffer.push(r);
      if (this.buffer.length >= this.shardSize) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const slice = this.buffer;
    this.buffer = [];
    const key = stageShardKey(this.meta, this.shards.length);
    const put = await this.store.putBytes(key, toJsonl(slice));
    this.shards.push({ key, count: slice.length, sha256: put.sha256, bytes: put.bytes });
    this.written += slice.length;
  }

  /** Stores the last shard (an empty one for an empty stage), then the manifest. */
  async finish(stats: Record<string, unknown> = {}): Promise<ArtifactRef> {
    if (this.buffer.length > 0 || this.shards.length === 0) await this.flush();
    const manifest: StageManifest = {
      kind: 'stage',
      run: this.meta.run,
      iteration: this.meta.iteration,
      stage: this.meta.stage,
      recordType: this.meta.recordType,
      count: this.written,
      shards: this.shards,
      producer: this.meta.producer,
      configHash: this.meta.configHash,
      createdAt: new Date().toISOString(),
      stats,
    };
    const key = stageManifestKey(this.meta);
    const put = await this.store.putBytes(key, JSON.stringify(manifest, null, 2) + '\n');
    return { uri: this.store.uri(key), key, count: manifest.count, sha256: put.sha256 };
  }
}

/** Writes the records as JSONL shards, then the manifest: the stage is published only then. */
export async function writeStage<T>(store: ArtifactStore, input: WriteStageInput<T>): Promise<ArtifactRef> {
  const { records, stats, ...meta } = input;
  const writer = new StageWriter<T>(store, meta);
  await writer.add(records);
  return writer.finish(stats);
}

export async function readStageManifest(store: ArtifactStore, ref: ArtifactRef): Promise<StageManifest> {
  const bytes = await store.getBytes(ref.key);
  const digest = sha256Hex(bytes);
  if (digest !== ref.sha256) {
    throw new IntegrityError(`manifest ${ref.uri} changed since it was published (sha256 ${digest}, expected ${ref.sha256})`);
  }
  return StageManifest.parse(JSON.parse(bytes.toString('utf8')));
}

/**
 * The records of a published stage one shard at a time (empty shards skipped), each shard's
 * sha256 verified before its records are parsed and validated.
 */
export async function* readStageShards<T>(store: ArtifactStore, ref: ArtifactRef, schema: z.ZodType<T>): AsyncGenerator<T[]> {
  const manifest = await readStageManifest(store, ref);
  for (const shard of manifest.shards) {
    const bytes = await store.getBytes(shard.key);
    const digest = sha256Hex(bytes);
    if (digest !== shard.sha256) {
      throw new IntegrityError(`shard ${store.uri(shard.key)} is corrupt: sha256 ${digest}, manifest says ${shard.sha256}`);
    }
    if (shard.count === 0) continue;
    yield parseJsonl(bytes.toString('utf8'), schema, store.uri(shard.key));
  }
}

/** Reads and validates every record of a published stage, verifying each shard's sha256. */
export async function readStage<T>(store: ArtifactStore, ref: ArtifactRef, schema: z.ZodType<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const records of readStageShards(store, ref, schema)) for (const r of records) out.push(r);
  return out;
}

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

export async function findModel(store: ArtifactStore, lineage: string, modelId: string): Promise<ModelRef | null> {
  const key = modelManifestKey(lineage, modelId);
  if (!(await store.exists(key))) return null;
  const bytes = await store.getBytes(key);
  const manifest = ModelManifest.parse(JSON.parse(bytes.toString('utf8')));
  return {
    modelId,
    lineage,
    key,
    uri: store.uri(key),
    sha256: sha256Hex(bytes),
    ...(manifest.externalPath ? { externalPath: manifest.externalPath } : {}),
  };
}

export async function readModelManifest(store: ArtifactStore, ref: ModelRef): Promise<ModelManifest> {
  const bytes = await store.getBytes(ref.key);
  return ModelManifest.parse(JSON.parse(bytes.toString('utf8')));
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else out.push(path.relative(dir, full).split(path.sep).join('/'));
    }
  };
  await walk(dir);
  return out.sort();
}

export interface PublishModelInput {
  lineage: string;
  modelId: string;
  parent: string | null;
  method: ModelManifest['method'];
  trainedOn: string[];
  metrics?: Record<string, unknown>;
  /** directory holding the checkpoint */
  dir: string;
  /** keep the files where they are (not copied into the store) */
  external?: boolean;
}

/** Copies a checkpoint directory into the store (unless external) and writes its manifest last. */
export async function publishModel(store: ArtifactStore, input: PublishModelInput): Promise<ModelRef> {
  const prefix = modelPrefix(input.lineage, input.modelId);
  const files: ModelManifest['files'] = [];
  for (const rel of await listFiles(input.dir)) {
    if (rel === 'manifest.json') continue;
    const full = path.join(input.dir, rel);
    const put = input.external ? await sha256File(full) : await store.putFile(`${prefix}/${rel}`, full);
    files.push({ path: rel, sha256: put.sha256, bytes: put.bytes });
  }
  const manifest: ModelManifest = {
    kind: 'model',
    modelId: input.modelId,
    lineage: input.lineage,
    parent: input.parent,
    method: input.method,
    files,
    trainedOn: input.trainedOn,
    metrics: input.metrics ?? {},
    createdAt: new Date().toISOString(),
    ...(input.external ? { externalPath: path.resolve(input.dir) } : {}),
  };
  const key = `${prefix}/manifest.json`;
  const put = await store.putBytes(key, JSON.stringify(manifest, null, 2) + '\n');
  return {
    modelId: input.modelId,
    lineage: input.lineage,
    key,
    uri: store.uri(key),
    sha256: put.sha256,
    ...(input.external ? { externalPath: path.resolve(input.dir) } : {}),
  };
}

/** A local directory with the model's files, for the compute process to load. */
export async function modelDir(store: ArtifactStore, ref: ModelRef): Promise<string> {
  if (ref.externalPath) return ref.externalPath;
  return store.localDir(modelPrefix(ref.lineage, ref.modelId));
}

// ---------------------------------------------------------------------------------------
// Promotion
// ---------------------------------------------------------------------------------------

/** The lineage's promoted model, or null when none was promoted yet. */
export async function readPromoted(
  store: ArtifactStore,
  lineage: string,
): Promise<{ modelId: string; run: string; promotedAt: string } | null> {
  const key = promotedKey(lineage);
  if (!(await store.exists(key))) return null;
  return JSON.parse((await store.getBytes(key)).toString('utf8')) as { modelId: string; run: string; promotedAt: string };
}
