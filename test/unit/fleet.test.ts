/** A generation fleet's config and how a stage is cut into parts of whole shards. */
import { describe, expect, it } from 'vitest';
import { partRange } from '../../activities';
import { formatConfigError } from '../../core/jsonl';
import { RunConfig } from '../../core/schemas';

const minimal = { run: 'demo', seed: { ift: 'seed/ift.jsonl' } };

describe('compute.fleet', () => {
  it('is absent by default and takes parts from 1 to 256', () => {
    expect(RunConfig.parse(minimal).compute.fleet).toBeUndefined();
    expect(RunConfig.parse({ ...minimal, compute: { fleet: { parts: 4 } } }).compute.fleet).toEqual({ parts: 4 });
  });

  it.each([
    [{ parts: 0 }, '"compute.fleet.parts"'],
    [{ parts: 2.5 }, '"compute.fleet.parts"'],
    [{ parts: 257 }, '"compute.fleet.parts"'],
    [{}, '"compute.fleet.parts"'],
    [{ parts: 2, hosts: 3 }, 'hosts'],
  ])('rejects %j naming the field', (fleet, field) => {
    const parsed = RunConfig.safeParse({ ...minimal, compute: { fleet } });
    expect(parsed.success).toBe(false);
    expect(formatConfigError(parsed.error!, 'run config')).toContain(field);
  });
});

describe('partRange', () => {
  it.each([
    [48, 4, 3],
    [43, 4, 3],
    [12, 4, 3],
    [10, 4, 5],
    [0, 4, 2],
    [1000, 7, 8],
  ])('%i items, shards of %i, %i parts: consecutive whole shards covering every item once', (items, shard, parts) => {
    const ranges = Array.from({ length: parts }, (_, k) => partRange(items, shard, k, parts));
    let next = 0;
    for (const r of ranges) {
      if (r.end <= r.first) continue; // a part without shards (fewer shards than parts)
      expect(r.first).toBe(next);
      expect(r.first % shard).toBe(0);
      expect(r.end === items || r.end % shard === 0).toBe(true);
      next = r.end;
    }
    expect(next).toBe(items);
    // as even as shards allow
    const sizes = ranges.map((r) => Math.ceil(Math.max(0, r.end - r.first) / shard));
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  });

  it('refuses a part outside its count', () => {
    expect(() => partRange(10, 2, 3, 3)).toThrow(/part 3 of 3/);
    expect(() => partRange(10, 2, 0, 0)).toThrow(/part 0 of 0/);
  });
});
