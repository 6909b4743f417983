/**
 * A local, content-addressed cache of store objects, shared by every store and run on a host:
 * `<dir>/objects/<aa>/<sha256>` holds each distinct file once, verified when it arrived.
 * A directory view of a store prefix (what the compute process loads a model from) is a tree
 * of hard links `<dir>/trees/<digest of (path, sha256) pairs>/`, built once and never changed,
 * so a worker that already holds a checkpoint's files downloads nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';

export interface TreeEntry {
  /** path inside the tree, '/'-separated */
  path: string;
  sha256: string;
  bytes: number;
}

export class IntegrityError extends Error {
  constructor(
    message: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(message);
    this.name = 'IntegrityError';
  }
}

export interface CacheLimits {
  /** bytes the cache may hold before trees and objects not used lately are removed (default: no limit) */
  maxBytes?: number;
  /** a tree used this recently is never removed, whatever the size (default 1 hour): a compute process may still be opening its files */
  keepRecentMs?: number;
}

/** `SRLM_OBJECT_CACHE_GB` as the cache's byte budget (unset: no limit). */
export function cacheLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): CacheLimits {
  const gb = Number(env.SRLM_OBJECT_CACHE_GB);
  return env.SRLM_OBJECT_CACHE_GB && gb > 0 ? { maxBytes: Math.round(gb * 1024 ** 3) } : {};
}

export class ObjectCache {
  constructor(
    readonly dir: string,
    readonly limits: CacheLimits = {},
  ) {}

  objectPath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: "${sha256}"`);
    return path.join(this.dir, 'objects', sha256.slice(0, 2), sha256);
  }

  async has(sha256: string, bytes?: number): Promise<boolean> {
    try {
      const st = await fs.stat(this.objectPath(sha256));
      return bytes === undefined || st.size === bytes;
    } catch {
      return false;
    }
  }

  /**
   * Stores a stream under its sha256, hashing while writing; a stream whose bytes do not hash
   * to `expected` is discarded with an IntegrityError naming `what`.
   */
  async add(expected: string, body: Readable, what: string): Promise<string> {
    const target = this.objectPath(expected);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const hash = createHash('sha256');
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(tmp),
      );
      const actual = hash.digest('hex');
      if (actual !== expected)
        throw new IntegrityError(`${what}: sha256 of the bytes read is ${actual}, its manifest says ${expected}`, expected, actual);
      await fs.rename(tmp, target);
      return target;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /** Links a local file into the cache under its (already computed) sha256. */
  async adopt(sha256: string, file: string): Promise<void> {
    if (await this.has(sha256)) return;
    const target = this.objectPath(sha256);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await fs.link(file, tmp).catch(() => fs.copyFile(file, tmp));
      await fs.rename(tmp, target);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /** The directory for a set of cached objects, built from hard links the first time. */
  async tree(entries: TreeEntry[]): Promise<string> {
    const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const digest = createHash('sha256')
      .update(sorted.map((e) => `${e.path}\0${e.sha256}\n`).join(''))
      .digest('hex')
      .slice(0, 32);
    const dir = path.join(this.dir, 'trees', digest);
    try {
      await fs.access(path.join(dir, '.complete'));
      await this.touch(dir);
      return dir;
    } catch {
      // build it
    }
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      for (const e of sorted) {
        if (e.path.split('/').some((s) => s === '' || s === '.' || s === '..'))
          throw new Error(`tree entry "${e.path}" is not a relative path`);
        const file = path.join(tmp, ...e.path.split('/'));
        await fs.mkdir(path.dirname(file), { recursive: true });
        await fs.link(this.objectPath(e.sha256), file).catch(() => fs.copyFile(this.objectPath(e.sha256), file));
      }
      await fs.mkdir(tmp, { recursive: true });
      await fs.writeFile(path.join(tmp, '.complete'), sorted.map((e) => `${e.sha256}  ${e.path}`).join('\n') + '\n');
      await fs.rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
        // another process built the same tree first
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
      await this.touch(dir);
      if (this.limits.maxBytes) await this.prune(this.limits.maxBytes, dir);
      return dir;
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  /** Marks a tree as used now (its `.complete` mtime): pruning removes the least recently used first. */
  private async touch(tree: string): Promise<void> {
    const now = new Date();
    await fs.utimes(path.join(tree, '.complete'), now, now).catch(() => undefined);
  }

  /** Bytes held: every object file (a tree's files are hard links to them). */
  async size(): Promise<number> {
    let total = 0;
    for (const f of await this.objectFiles()) total += f.size;
    return total;
  }

  private async objectFiles(): Promise<{ file: string; size: number; links: number; mtimeMs: number }[]> {
    const root = path.join(this.dir, 'objects');
    const out: { file: string; size: number; links: number; mtimeMs: number }[] = [];
    for (const sub of await fs.readdir(root).catch(() => [] as string[])) {
      for (const name of await fs.readdir(path.join(root, sub)).catch(() => [] as string[])) {
        if (name.includes('.tmp-')) continue;
        const file = path.join(root, sub, name);
        const st = await fs.stat(file).catch(() => null);
        if (st) out.push({ file, size: st.size, links: st.nlink, mtimeMs: st.mtimeMs });
      }
    }
    return out;
  }

  /**
   * Brings the cache under `maxBytes`: removes the least recently used trees (never `keep`, nor
   * one used within `keepRecentMs`), then every object no remaining tree links to, oldest first.
   * Returns the bytes removed. Objects still linked from a kept tree stay, so a directory a
   * compute process is reading is never taken away from under it.
   */
  async prune(maxBytes: number, keep?: string): Promise<number> {
    let objects = await this.objectFiles();
    let total = objects.reduce((n, o) => n + o.size, 0);
    if (total <= maxBytes) return 0;
    const before = total;
    const recent = Date.now() - (this.limits.keepRecentMs ?? 3_600_000);
    const treesDir = path.join(this.dir, 'trees');
    const trees: { dir: string; usedMs: number }[] = [];
    for (const name of await fs.readdir(treesDir).catch(() => [] as string[])) {
      if (name.includes('.tmp-')) continue;
      const dir = path.join(treesDir, name);
      const st = await fs.stat(path.join(dir, '.complete')).catch(() => null);
      if (st && dir !== keep && st.mtimeMs < recent) trees.push({ dir, usedMs: st.mtimeMs });
    }
    trees.sort((a, b) => a.usedMs - b.usedMs);
    const dropUnlinked = async (): Promise<void> => {
      objects = await this.objectFiles();
      for (const o of objects.filter((x) => x.links <= 1).sort((a, b) => a.mtimeMs - b.mtimeMs)) {
        if (total <= maxBytes) return;
        await fs.rm(o.file, { force: true });
        total -= o.size;
      }
    };
    await dropUnlinked();
    for (const t of trees) {
      if (total <= maxBytes) break;
      await fs.rm(t.dir, { recursive: true, force: true });
      await dropUnlinked();
    }
    return before - total;
  }
}
