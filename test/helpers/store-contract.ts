/**
 * The behaviour every artifact store must have (local directory, S3): one suite, run by
 * test/unit/store.test.ts for LocalStore and test/infra/s3store.test.ts for S3Store against
 * a real S3-compatible server.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ArtifactStore, sha256Hex } from '../../store/store';

/** `open` returns a fresh, empty store for each test; `largeFile` is a size that needs several parts. */
export function storeContract(name: string, open: () => Promise<ArtifactStore>, opts: { largeFileBytes: number }): void {
  describe(`artifact store contract: ${name}`, () => {
    it('writes and reads bytes back, with their sha256 and size', async () => {
      const store = await open();
      const put = await store.putBytes('runs/a/x.jsonl', '{"a":1}\n');
      expect(put).toEqual({ sha256: sha256Hex('{"a":1}\n'), bytes: 8 });
      expect((await store.getBytes('runs/a/x.jsonl')).toString()).toBe('{"a":1}\n');
      expect(store.uri('runs/a/x.jsonl')).toBe(`${store.rootUri}/runs/a/x.jsonl`);
      const bin = randomBytes(70_000);
      await store.putBytes('runs/a/bin', bin);
      expect((await store.getBytes('runs/a/bin')).equals(bin)).toBe(true);
    });

    it('overwrites a key with the new bytes', async () => {
      const store = await open();
      await store.putBytes('k/v', 'one');
      await store.putBytes('k/v', 'two!');
      expect((await store.getBytes('k/v')).toString()).toBe('two!');
    });

    it('says whether a key exists, and names a missing one when read', async () => {
      const store = await open();
      expect(await store.exists('runs/none/manifest.json')).toBe(false);
      await expect(store.getBytes('runs/none/manifest.json')).rejects.toThrow(
        `artifact ${store.uri('runs/none/manifest.json')} does not exist`,
      );
      await store.putBytes('runs/none/manifest.json', '{}');
      expect(await store.exists('runs/none/manifest.json')).toBe(true);
    });

    it('lists keys under a prefix recursively and sorted, and nothing beside it', async () => {
      const store = await open();
      for (const k of ['p/b/2', 'p/a', 'p/b/1', 'p/b/sub/3', 'pp/x', 'p-other/y']) await store.putBytes(k, k);
      expect(await store.list('p')).toEqual(['p/a', 'p/b/1', 'p/b/2', 'p/b/sub/3']);
      expect(await store.list('p/b')).toEqual(['p/b/1', 'p/b/2', 'p/b/sub/3']);
      expect(await store.list('nothing/here')).toEqual([]);
    });

    it('puts a file and gives the files under a prefix as a local directory, byte for byte', async () => {
      const store = await open();
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-contract-'));
      const small = path.join(tmp, 'config.json');
      fs.writeFileSync(small, '{"hidden_size": 8}');
      const large = path.join(tmp, 'model.safetensors');
      const bytes = randomBytes(opts.largeFileBytes);
      fs.writeFileSync(large, bytes);
      expect(await store.putFile('models/l/m1/config.json', small)).toEqual({ sha256: sha256Hex('{"hidden_size": 8}'), bytes: 18 });
      expect(await store.putFile('models/l/m1/weights/model.safetensors', large)).toEqual({
        sha256: sha256Hex(bytes),
        bytes: bytes.length,
      });
      const dir = await store.localDir('models/l/m1');
      expect(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).toBe('{"hidden_size": 8}');
      expect(sha256Hex(fs.readFileSync(path.join(dir, 'weights', 'model.safetensors')))).toBe(sha256Hex(bytes));
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('deletes one key, and every key under a prefix', async () => {
      const store = await open();
      for (const k of ['d/1', 'd/2/3', 'd/2/4', 'keep/5']) await store.putBytes(k, k);
      await store.delete('d/1');
      await store.delete('d/never-there');
      expect(await store.exists('d/1')).toBe(false);
      await store.deletePrefix('d');
      expect(await store.list('d')).toEqual([]);
      expect(await store.list('keep')).toEqual(['keep/5']);
    });

    it('refuses keys that could escape the store: "..", absolute, empty segments, control characters', async () => {
      const store = await open();
      for (const bad of ['../etc/passwd', 'a/../../b', '/abs/key', 'a//b', 'a/./b', '', 'a/b\u0000c', 'a/\nb', 'a\\b']) {
        await expect(store.putBytes(bad, 'x'), JSON.stringify(bad)).rejects.toThrow(/artifact key/);
        await expect(store.getBytes(bad), JSON.stringify(bad)).rejects.toThrow(/artifact key/);
      }
    });

    it('keeps many concurrent writes apart', async () => {
      const store = await open();
      const keys = Array.from({ length: 24 }, (_, i) => `c/${i % 3}/k${i}`);
      await Promise.all(keys.map((k) => store.putBytes(k, `value of ${k}`)));
      const got = await Promise.all(keys.map(async (k) => (await store.getBytes(k)).toString()));
      expect(got).toEqual(keys.map((k) => `value of ${k}`));
      expect((await store.list('c')).length).toBe(24);
    });
  });
}
