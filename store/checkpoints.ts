/**
 * Training checkpoints in the artifact store.
 *
 *   runs/<run>/train/<name>/checkpoints/<job>/step-000012/<files...> + manifest.json
 *
 * `<job>` is a digest of the training job (base model, data, hyperparameters), so a
 * checkpoint is only ever resumed by the job that wrote it. The compute process writes a
 * complete checkpoint (weights, optimizer, scheduler, RNG states, trainer state) with a
 * manifest of sha256 digests; it is copied here file by file and its manifest is written
 * last. A checkpoint whose manifest is missing, unreadable, or does not match its files is
 * torn: it is reported and skipped, never loaded. On a store that records each object's sha256
 * (S3: the writer's, in the object's metadata) the match is checked from listings and HeadObject
 * alone, so a scan downloads only the checkpoint it resumes from.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { type ArtifactStore, sha256File } from './store';

export const CheckpointManifest = z.object({
  kind: z.literal('train-checkpoint'),
  step: z.number().int().nonnegative(),
  mode: z.string().optional(),
  files: z
    .array(z.object({ path: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().nonnegative() }))
    .min(1),
});
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

export { checkpointsPrefix } from './keys';

export function stepDir(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

export interface FoundCheckpoint {
  step: number;
  prefix: string;
  /** a local directory with the checkpoint's files */
  dir: string;
}

export interface CheckpointScan {
  newest: FoundCheckpoint | null;
  /** checkpoints passed over, with why */
  torn: { prefix: string; reason: string }[];
}

/** Verifies a checkpoint in the store; returns why it is torn, or null when complete. */
async function verify(
  store: ArtifactStore,
  prefix: string,
): Promise<{ reason: string } | { manifest: CheckpointManifest; dir: () => Promise<string> }> {
  const manifestKey = `${prefix}/manifest.json`;
  if (!(await store.exists(manifestKey))) return { reason: 'no manifest.json (never completed)' };
  let manifest: CheckpointManifest;
  try {
    manifest = CheckpointManifest.parse(JSON.parse((await store.getBytes(manifestKey)).toString('utf8')));
  } catch (err) {
    return { reason: `manifest.json is not a valid checkpoint manifest (${(err as Error).message.split('\n')[0]})` };
  }
  // a store that records each object's sha256 (S3) is checked from metadata: a scan reads no
  // checkpoint's bytes, and only the one resumed from is downloaded (verified as it arrives)
  const known = store.describePrefix ? new Map((await store.describePrefix(prefix)).map((o) => [o.path, o])) : null;
  if (known && manifest.files.every((f) => known.get(f.path)?.sha256 !== null)) {
    for (const f of manifest.files) {
      const o = known.get(f.path);
      if (!o) return { reason: `${f.path} is missing` };
      if (o.bytes !== f.bytes) return { reason: `${f.path} has ${o.bytes} bytes, manifest says ${f.bytes}` };
      if (o.sha256 !== f.sha256)
        return {
          reason: `${f.path} sha256 ${o.sha256!.slice(0, 12)}… (recorded by the store) differs from the manifest's ${f.sha256.slice(0, 12)}…`,
        };
    }
    return { manifest, dir: () => store.localDir(prefix) };
  }
  const dir = await store.localDir(prefix);
  for (const f of manifest.files) {
    const full = path.join(dir, f.path);
    const got = await sha256File(full).catch(() => null);
    if (!got) return { reason: `${f.path} is missing` };
    if (got.bytes !== f.bytes) return { reason: `${f.path} has ${got.bytes} bytes, manifest says ${f.bytes}` };
    if (got.sha256 !== f.sha256)
      return { reason: `${f.path} sha256 ${got.sha256.slice(0, 12)}… differs from the manifest's ${f.sha256.slice(0, 12)}…` };
  }
  return { manifest, dir: async () => dir };
}

/** The newest complete checkpoint under a job's prefix; torn ones are listed and skipped. */
export async function findNewestCheckpoint(store: ArtifactStore, prefix: string): Promise<CheckpointScan> {
  const keys = await store.list(prefix);
  const steps = new Set<string>();
  for (const k of keys) {
    const m = /^(step-\d{6})\//.exec(k.slice(prefix.length + 1));
    if (m) steps.add(m[1]!);
  }
  const torn: CheckpointScan['torn'] = [];
  for (const s of [...steps].sort().reverse()) {
    const p = `${prefix}/${s}`;
    const v = await verify(store, p);
    if ('reason' in v) {
      torn.push({ prefix: p, reason: v.reason });
      continue;
    }
    return { newest: { step: v.manifest.step, prefix: p, dir: await v.dir() }, torn };
  }
  return { newest: null, torn };
}

/**
 * Copies a checkpoint the compute process completed (a directory with manifest.json) into
 * the store, verifying every file against the manifest, manifest last. Returns the step.
 */
export async function publishCheckpoint(store: ArtifactStore, prefix: string, localDir: string): Promise<number> {
  const manifest = CheckpointManifest.parse(JSON.parse(await fs.readFile(path.join(localDir, 'manifest.json'), 'utf8')));
  const target = `${prefix}/${stepDir(manifest.step)}`;
  for (const f of manifest.files) {
    const put = await store.putFile(`${target}/${f.path}`, path.join(localDir, f.path));
    if (put.sha256 !== f.sha256 || put.bytes !== f.bytes) {
      throw new Error(
        `checkpoint ${localDir}: ${f.path} changed while it was copied (sha256 ${put.sha256.slice(0, 12)}…, manifest ${f.sha256.slice(0, 12)}…)`,
      );
    }
  }
  await store.putBytes(`${target}/manifest.json`, JSON.stringify(manifest, null, 2) + '\n');
  return manifest.step;
}

/** Removes every checkpoint of the job except those at `keepSteps`. */
export async function pruneCheckpoints(store: ArtifactStore, prefix: string, keepSteps: readonly number[]): Promise<void> {
  const keep = new Set(keepSteps.map(stepDir));
  const keys = await store.list(prefix);
  const dirs = new Set<string>();
  for (const k of keys) {
    const m = /^(step-\d{6})\//.exec(k.slice(prefix.length + 1));
    if (m && !keep.has(m[1]!)) dirs.add(m[1]!);
  }
  // manifest first: a half-deleted checkpoint must look torn, not complete
  for (const d of dirs) {
    await store.delete(`${prefix}/${d}/manifest.json`);
    await store.deletePrefix(`${prefix}/${d}`);
  }
}
