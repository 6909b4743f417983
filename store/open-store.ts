/**
 * Opens the artifact store a run names: a directory (LocalStore) or `s3://bucket/prefix`
 * (S3Store). Stores are kept per location and settings, so a worker reuses one S3 client
 * (and its connections) across activities.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { isS3Uri, parseS3Uri } from '../core/s3uri';
import type { RunConfig } from '../core/schemas';
import { S3Store } from './s3store';
import { type ArtifactStore, LocalStore } from './store';

export type S3Settings = NonNullable<RunConfig['store']['s3']>;

/** Where S3 objects are cached on this host: `$SRLM_CACHE_DIR/objects`, else ~/.cache/srlm/objects. */
export function defaultObjectCacheDir(): string {
  return path.join(process.env.SRLM_CACHE_DIR || path.join(os.homedir(), '.cache', 'srlm'), 'objects');
}

const opened = new Map<string, ArtifactStore>();

export function openStore(root: string, s3: Partial<S3Settings> = {}, cacheDir: string = defaultObjectCacheDir()): ArtifactStore {
  const id = JSON.stringify([root, s3, cacheDir]);
  let store = opened.get(id);
  if (store) return store;
  if (isS3Uri(root)) {
    let loc;
    try {
      loc = parseS3Uri(root);
    } catch (err) {
      throw new Error(`store root ${(err as Error).message}`, { cause: err });
    }
    store = new S3Store({
      ...loc,
      cacheDir,
      ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
      ...(s3.region ? { region: s3.region } : {}),
      ...(s3.forcePathStyle !== undefined ? { forcePathStyle: s3.forcePathStyle } : {}),
      ...(s3.sse ? { sse: s3.sse } : {}),
      ...(s3.kmsKeyId ? { kmsKeyId: s3.kmsKeyId } : {}),
      partSize: (s3.partSizeMiB ?? 16) * 1024 * 1024,
      concurrency: s3.concurrency ?? 8,
    });
  } else {
    store = new LocalStore(root);
  }
  opened.set(id, store);
  return store;
}
