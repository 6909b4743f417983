import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { GenerateRequest } from '../../backends/compute';
import { chunk, generateSharded, parseOutputLines, readCommittedShard, shardKeys } from '../../activities/shards';
import { LocalStore } from '../../store/store';
import { FakeCompute } from '../../testing/fake-compute';

const req = (i: number): GenerateRequest => ({
  id: `q${i}`,
  messages: [{ role: 'user', content: `question ${i}` }],
  n: 2,
  temperature: 0.7,
  top_p: 0.9,
  max_new_tokens: 16,
  seed: i,
});
const loc = { run: 'r', iteration: 1, stage: 'candidates' };

describe('parseOutputLines', () => {
  it('keeps complete lines of the wanted ids and drops a torn last line', () => {
    const text = '{"id":"q1","outputs":[]}\n{"id":"other","outputs":[]}\nnot json\n{"id":"q2","outp';
    expect([...parseOutputLines(text, new Set(['q1', 'q2'])).keys()]).toEqual(['q1']);
  });
});

describe('chunk', () => {
  it('cuts into shards of the given size, the last one shorter', () => {
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
  });
});

describe('generateSharded (FakeCompute)', () => {
  let tmp: string;
  let store: LocalStore;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-shards-'));
    store = new LocalStore(path.join(tmp, 'store'));
  });

  const run = (fake: FakeCompute, requests: GenerateRequest[], workDir = path.join(tmp, 'work')) =>
    generateSharded({
      store,
      compute: fake,
      workDir,
      loc,
      part: 'all',
      model: tmp,
      requests,
      shardSize: 3,
      partialFlushMs: 0,
      device: 'cpu',
      batchSize: 4,
      threads: 1,
    });

  it('commits every shard and reuses committed shards on a second call', async () => {
    const requests = Array.from({ length: 7 }, (_, i) => req(i));
    const fake = new FakeCompute();
    const first = await run(fake, requests);
    expect(first.shards).toBe(3);
    expect(first.outputs.size).toBe(7);
    for (const k of [0, 1, 2]) expect(await store.exists(shardKeys(loc, 'all', k).commit)).toBe(true);
    const again = await run(fake, requests);
    expect(again.shardsReused).toBe(3);
    expect(again.requestsGenerated).toBe(0);
    expect(fake.calls).toHaveLength(1);
    expect([...again.outputs.entries()]).toEqual([...first.outputs.entries()]);
  });

  it('continues a half-done shard from the partial outputs in the store on another host', async () => {
    const requests = Array.from({ length: 6 }, (_, i) => req(i));
    const ref = await run(new FakeCompute(), requests, path.join(tmp, 'ref-work'));
    fs.rmSync(path.join(tmp, 'store'), { recursive: true });
    // host A committed shard 0 and flushed 2 of shard 1's 3 outputs, then died
    const lines = (ids: number[]) => ids.map((i) => JSON.stringify(ref.outputs.get(`q${i}`)) + '\n').join('');
    await store.putBytes(shardKeys(loc, 'all', 1).partial, lines([3, 4]) + '{"id":"q5","outp');
    const log = path.join(tmp, 'generated.log');
    const fake = new FakeCompute({ logFile: log });
    const out = await run(fake, requests, path.join(tmp, 'host-b'));
    expect(out.requestsResumed).toBe(2);
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).sort()).toEqual(['q0', 'q1', 'q2', 'q5']);
    expect([...out.outputs.keys()].sort()).toEqual(requests.map((r) => r.id).sort());
    for (const r of requests) expect(out.outputs.get(r.id)).toEqual(ref.outputs.get(r.id));
  });

  it('ignores a commit made for other requests (a changed config) or whose outputs do not match it', async () => {
    const requests = Array.from({ length: 3 }, (_, i) => req(i));
    await run(new FakeCompute(), requests);
    const changed = requests.map((r) => ({ ...r, max_new_tokens: 32 }));
    const logs: string[] = [];
    expect(await readCommittedShard(store, loc, 'all', 0, changed, (l) => logs.push(l))).toBeNull();
    expect(logs[0]).toMatch(/committed for other requests/);
    fs.appendFileSync(await store.localDir(shardKeys(loc, 'all', 0).outputs), '\n');
    expect(await readCommittedShard(store, loc, 'all', 0, requests, (l) => logs.push(l))).toBeNull();
    expect(logs[1]).toMatch(/sha256 differs/);
  });
});
