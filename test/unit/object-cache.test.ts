import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { beforeEach, describe, expect, it } from 'vitest';
import { cacheLimitsFromEnv, IntegrityError, ObjectCache } from '../../store/object-cache';
import { sha256Hex } from '../../store/store';

describe('the content-addressed object cache', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-objcache-'));
  });

  const put = async (cache: ObjectCache, bytes: Buffer): Promise<string> => {
    const sha = sha256Hex(bytes);
    await cache.add(sha, Readable.from([bytes]), 'test object');
    return sha;
  };
  const age = (tree: string, hours: number): void => {
    const t = new Date(Date.now() - hours * 3_600_000);
    fs.utimesSync(path.join(tree, '.complete'), t, t);
  };

  it('keeps nothing that does not hash to its name', async () => {
    const cache = new ObjectCache(dir);
    const err = await cache.add('a'.repeat(64), Readable.from([Buffer.from('other bytes')]), 'artifact s3://b/k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/^artifact s3:\/\/b\/k: sha256 of the bytes read is [0-9a-f]{64}, its manifest says a{64}$/);
    expect(await cache.has('a'.repeat(64))).toBe(false);
    expect(fs.readdirSync(path.join(dir, 'objects', 'aa'))).toEqual([]);
  });

  it('builds a directory once per content and shares files between directories', async () => {
    const cache = new ObjectCache(dir);
    const w = await put(cache, Buffer.from('weights'));
    const c = await put(cache, Buffer.from('{"layers": 2}'));
    const a = await cache.tree([
      { path: 'model.safetensors', sha256: w, bytes: 7 },
      { path: 'sub/config.json', sha256: c, bytes: 13 },
    ]);
    expect(
      await cache.tree([
        { path: 'sub/config.json', sha256: c, bytes: 13 },
        { path: 'model.safetensors', sha256: w, bytes: 7 },
      ]),
    ).toBe(a);
    expect(fs.readFileSync(path.join(a, 'sub/config.json'), 'utf8')).toBe('{"layers": 2}');
    expect(fs.statSync(cache.objectPath(w)).nlink).toBe(2);
    await expect(cache.tree([{ path: '../escape', sha256: w, bytes: 7 }])).rejects.toThrow(/not a relative path/);
  });

  it('over its budget, removes the least recently used directories and their files, never a recent one', async () => {
    const cache = new ObjectCache(dir, { keepRecentMs: 3_600_000 });
    const mib = 1024 * 1024;
    const old1 = await put(cache, randomBytes(mib));
    const shared = await put(cache, randomBytes(mib));
    const recent1 = await put(cache, randomBytes(mib));
    const oldTree = await cache.tree([
      { path: 'a', sha256: old1, bytes: mib },
      { path: 'b', sha256: shared, bytes: mib },
    ]);
    const olderTree = await cache.tree([{ path: 'b', sha256: shared, bytes: mib }]);
    const recentTree = await cache.tree([
      { path: 'c', sha256: recent1, bytes: mib },
      { path: 'b', sha256: shared, bytes: mib },
    ]);
    const stray = await put(cache, randomBytes(mib)); // in no directory
    age(oldTree, 3);
    age(olderTree, 5);
    expect(await cache.size()).toBe(4 * mib);
    // within budget: nothing happens
    expect(await cache.prune(4 * mib)).toBe(0);
    // 2 MiB: the stray object goes first, then the oldest tree (its file is still in a recent one), then the next
    const removed = await cache.prune(2 * mib);
    expect(removed).toBe(2 * mib);
    expect(fs.existsSync(olderTree)).toBe(false);
    expect(fs.existsSync(oldTree)).toBe(false);
    expect(await cache.has(stray)).toBe(false);
    expect(await cache.has(old1)).toBe(false);
    expect(fs.readFileSync(path.join(recentTree, 'b')).length).toBe(mib);
    expect(await cache.has(shared)).toBe(true);
    expect(await cache.has(recent1)).toBe(true);
    // a budget below what recent directories hold removes nothing more
    expect(await cache.prune(1)).toBe(0);
    expect(fs.existsSync(recentTree)).toBe(true);
  });

  it('prunes by itself after building a directory when given a budget (SRLM_OBJECT_CACHE_GB)', async () => {
    expect(cacheLimitsFromEnv({ SRLM_OBJECT_CACHE_GB: '0.5' })).toEqual({ maxBytes: 512 * 1024 * 1024 });
    expect(cacheLimitsFromEnv({})).toEqual({});
    const cache = new ObjectCache(dir, { maxBytes: 1024 * 1024, keepRecentMs: 0 });
    const first = await put(cache, randomBytes(1024 * 1024));
    const t1 = await cache.tree([{ path: 'x', sha256: first, bytes: 1024 * 1024 }]);
    age(t1, 1);
    const second = await put(cache, randomBytes(1024 * 1024));
    const t2 = await cache.tree([{ path: 'y', sha256: second, bytes: 1024 * 1024 }]);
    expect(fs.existsSync(t1)).toBe(false);
    expect(fs.existsSync(t2)).toBe(true);
    expect(await cache.size()).toBe(1024 * 1024);
  });
});
