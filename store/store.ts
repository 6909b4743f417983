/**
 * The artifact store: where stage shards, manifests, summaries and checkpoints live.
 * `LocalStore` keeps them in a directory; an S3 store implements the same interface.
 * Every write is atomic (temporary name, then rename), so a reader never sees half a file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

export interface PutResult {
  sha256: string;
  bytes: number;
}

export interface ArtifactStore {
  /** URI of the store's root, e.g. file:///var/srlm/artifacts */
  readonly rootUri: string;
  uri(key: string): string;
  exists(key: string): Promise<boolean>;
  getBytes(key: string): Promise<Buffer>;
  putBytes(key: string, data: Buffer | string): Promise<PutResult>;
  putFile(key: string, localPath: string): Promise<PutResult>;
  /** Keys under a prefix (recursive), sorted. */
  list(prefix: string): Promise<string[]>;
  /** A local directory holding the files under `prefix` (the store's own for a local store). */
  localDir(prefix: string): Promise<string>;
  /** Removes one object (no error when absent). */
  delete(key: string): Promise<void>;
  /** Removes every object under a prefix. */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Size and recorded sha256 (null: none recorded) of every object under a prefix, paths relative
   * to it, from the store's metadata alone: no object's bytes are read. Absent where reading the
   * files costs no download (a local store).
   */
  describePrefix?(prefix: string): Promise<{ path: string; bytes: number; sha256: string | null }[]>;
}

/** Object keys are built from validated names only; refuse anything that could escape the root. */
export function checkKey(key: string): string {
  if (key.length === 0) throw new Error('artifact key is empty');
  const segments = key.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') throw new Error(`artifact key "${key}" has an empty, "." or ".." segment`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f\\]/.test(s)) throw new Error(`artifact key "${key}" has a control character or backslash`);
  }
  return key;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

export class LocalStore implements ArtifactStore {
  readonly root: string;
  readonly rootUri: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.rootUri = `file://${this.root}`;
  }

  private file(key: string): string {
    return path.join(this.root, checkKey(key));
  }

  uri(key: string): string {
    return `${this.rootUri}/${checkKey(key)}`;
  }

  async exists(key: string): Promise<boolean> {
    try {
      await fs.access(this.file(key));
      return true;
    } catch {
      return false;
    }
  }

  async getBytes(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.file(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`artifact ${this.uri(key)} does not exist`, { cause: err });
      throw err;
    }
  }

  private tempName(target: string): string {
    return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  async putBytes(key: string, data: Buffer | string): Promise<PutResult> {
    const target = this.file(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = this.tempName(target);
    const handle = await fs.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, target);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    return { sha256: sha256Hex(buf), bytes: buf.length };
  }

  async putFile(key: string, localPath: string): Promise<PutResult> {
    const target = this.file(key);
    if (path.resolve(localPath) === target) return sha256File(target);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = this.tempName(target);
    await fs.copyFile(localPath, tmp);
    await fs.rename(tmp, target);
    return sha256File(target);
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.file(prefix);
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const e of entries) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (!e.name.includes('.tmp-')) out.push(path.relative(this.root, full).split(path.sep).join('/'));
      }
    };
    await walk(base);
    return out.sort();
  }

  async localDir(prefix: string): Promise<string> {
    return this.file(prefix);
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.file(key), { force: true });
  }

  async deletePrefix(prefix: string): Promise<void> {
    await fs.rm(this.file(prefix), { recursive: true, force: true });
  }
}
