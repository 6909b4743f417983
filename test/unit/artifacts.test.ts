import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { IntegrityError, readStage, readStageManifest, readStageShards, StageWriter, writeStage } from '../../store/artifacts';
import { LocalStore } from '../../store/store';

const Rec = z.strictObject({ id: z.string(), n: z.number() });
type Rec = z.infer<typeof Rec>;
const meta = { run: 'r', iteration: 1, stage: 'candidates', recordType: 'Rec', producer: 'test', configHash: 'h' };
const recs = (n: number): Rec[] => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, n: i }));

describe('StageWriter and readStageShards', () => {
  let store: LocalStore;
  beforeEach(() => {
    store = new LocalStore(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-artifacts-')), 'store'));
  });

  it('writes a shard whenever one is full and the manifest last; reads shard by shard', async () => {
    const writer = new StageWriter<Rec>(store, { ...meta, shardSize: 5 });
    await writer.add(recs(3));
    expect(await store.exists('runs/r/iter-1/candidates/shard-00000.jsonl')).toBe(false);
    await writer.add(recs(12).slice(3));
    expect(await store.exists('runs/r/iter-1/candidates/shard-00001.jsonl')).toBe(true);
    expect(await store.exists('runs/r/iter-1/candidates/manifest.json')).toBe(false);
    const ref = await writer.finish({ x: 1 });
    expect(ref.count).toBe(12);
    const manifest = await readStageManifest(store, ref);
    expect(manifest.shards.map((s) => s.count)).toEqual([5, 5, 2]);
    expect(manifest.stats).toEqual({ x: 1 });
    const batches: Rec[][] = [];
    for await (const b of readStageShards(store, ref, Rec)) batches.push(b);
    expect(batches.map((b) => b.length)).toEqual([5, 5, 2]);
    expect(await readStage(store, ref, Rec)).toEqual(recs(12));
  });

  it('writes one empty shard for an empty stage, and writeStage gives the same manifest as the writer', async () => {
    const ref = await writeStage(store, { ...meta, records: [] });
    expect((await readStageManifest(store, ref)).shards.map((s) => s.count)).toEqual([0]);
    for await (const _ of readStageShards(store, ref, Rec)) throw new Error('no batch expected');
    const again = await writeStage(store, { ...meta, stage: 'other', records: recs(7), shardSize: 3 });
    expect((await readStageManifest(store, again)).shards.map((s) => s.count)).toEqual([3, 3, 1]);
  });

  it('refuses a corrupt shard', async () => {
    const ref = await writeStage(store, { ...meta, records: recs(4), shardSize: 2 });
    fs.appendFileSync(await store.localDir('runs/r/iter-1/candidates/shard-00001.jsonl'), '\n');
    const it = readStageShards(store, ref, Rec);
    expect((await it.next()).value).toHaveLength(2);
    await expect(it.next()).rejects.toThrow(IntegrityError);
  });
});
