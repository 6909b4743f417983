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

export class ObjectCache {
  constructor(readonly dir: string) {}

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
      if (actual !== expected) throw new IntegrityError(`${what}: sha256 of the bytes read is ${actual}, its manifest says ${expected}`, expected, actual);
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
      return dir;
    } catch {
      // build it
    }
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      for (const e of sorted) {
        if (e.path.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new Error(`tree entry "${e.path}" is not a relative path`);
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
      return dir;
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
}
