import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { findNewestCheckpoint, publishCheckpoint, pruneCheckpoints } from '../../store/checkpoints';
import { LocalStore } from '../../store/store';
import { localCheckpoint } from '../helpers/checkpoints';

const PREFIX = 'runs/r/train/m1/checkpoints/job1';

describe('training checkpoints in the store', () => {
  let tmp: string;
  let store: LocalStore;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-ckpt-'));
    store = new LocalStore(path.join(tmp, 'store'));
  });

  it('publishes a checkpoint with its manifest last and finds the newest complete one', async () => {
    expect((await findNewestCheckpoint(store, PREFIX)).newest).toBeNull();
    expect(await publishCheckpoint(store, PREFIX, localCheckpoint(tmp, 5))).toBe(5);
    expect(await publishCheckpoint(store, PREFIX, localCheckpoint(tmp, 10))).toBe(10);
    const scan = await findNewestCheckpoint(store, PREFIX);
    expect(scan.newest?.step).toBe(10);
    expect(fs.readFileSync(path.join(scan.newest!.dir, 'optimizer.pt'), 'utf8')).toBe('adam at 10');
    expect(scan.torn).toEqual([]);
  });

  const tearings: [string, (dir: string) => void, RegExp][] = [
    ['no manifest', (d) => fs.rmSync(path.join(d, 'manifest.json')), /no manifest/],
    ['a missing file', (d) => fs.rmSync(path.join(d, 'optimizer.pt')), /optimizer\.pt is missing/],
    ['a changed byte', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), 'weights at 1O'), /model\.safetensors sha256/],
    ['a truncated file', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), 'weights'), /model\.safetensors has 7 bytes/],
    [
      'a manifest that is not one',
      (d) => fs.writeFileSync(path.join(d, 'manifest.json'), '{"kind":"model"}'),
      /not a valid checkpoint manifest/,
    ],
  ];
  for (const [what, tear, reason] of tearings) {
    it(`skips a torn checkpoint (${what}) for the one before it, saying why`, async () => {
      await publishCheckpoint(store, PREFIX, localCheckpoint(tmp, 5));
      await publishCheckpoint(store, PREFIX, localCheckpoint(tmp, 10));
      tear(await store.localDir(`${PREFIX}/step-000010`));
      const scan = await findNewestCheckpoint(store, PREFIX);
      expect(scan.newest?.step).toBe(5);
      expect(scan.torn).toHaveLength(1);
      expect(scan.torn[0]!.prefix).toBe(`${PREFIX}/step-000010`);
      expect(scan.torn[0]!.reason).toMatch(reason);
    });
  }

  it('refuses to publish a checkpoint whose files changed after the manifest was written', async () => {
    const d = localCheckpoint(tmp, 5);
    fs.writeFileSync(path.join(d, 'optimizer.pt'), 'something else');
    await expect(publishCheckpoint(store, PREFIX, d)).rejects.toThrow(/optimizer\.pt changed while it was copied/);
    expect((await findNewestCheckpoint(store, PREFIX)).newest).toBeNull();
  });

  it('prunes every checkpoint but the ones kept', async () => {
    for (const s of [5, 10, 15]) await publishCheckpoint(store, PREFIX, localCheckpoint(tmp, s));
    await pruneCheckpoints(store, PREFIX, [15]);
    expect(fs.readdirSync(await store.localDir(PREFIX))).toEqual(['step-000015']);
  });
});
