import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, configHash, recordId, seedFromId } from '../../core/ids';

describe('recordId', () => {
  it('is the first 16 hex digits of sha256 over the parts joined by U+001F', () => {
    const expected = createHash('sha256').update('pair\u001fp-1\u001f3').digest('hex').slice(0, 16);
    expect(recordId('pair', 'p-1', 3)).toBe(expected);
  });

  it('is stable and separates parts unambiguously', () => {
    expect(recordId('a', 'b')).toBe(recordId('a', 'b'));
    expect(recordId('ab', 'c')).not.toBe(recordId('a', 'bc'));
    expect(recordId('a', 'b')).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('seedFromId', () => {
  it('gives a stable non-negative 31-bit integer that differs between ids', () => {
    const a = seedFromId('abc');
    expect(a).toBe(seedFromId('abc'));
    expect(Number.isInteger(a) && a >= 0 && a < 2 ** 31).toBe(true);
    expect(seedFromId('abd')).not.toBe(a);
  });
});

describe('configHash', () => {
  it('ignores key order at every level', () => {
    expect(configHash({ a: 1, b: { c: [1, { d: 2, e: 3 }], f: null } })).toBe(configHash({ b: { f: null, c: [1, { e: 3, d: 2 }] }, a: 1 }));
  });

  it('changes with any value, and keeps array order significant', () => {
    expect(configHash({ a: 1 })).not.toBe(configHash({ a: 2 }));
    expect(configHash([1, 2])).not.toBe(configHash([2, 1]));
    expect(configHash({ a: 1 })).toMatch(/^[0-9a-f]{16}$/);
  });

  it('hashes canonical JSON with sorted keys, leaving undefined members out', () => {
    expect(canonicalJson({ b: 1, a: { y: undefined, x: 'x' } })).toBe('{"a":{"x":"x"},"b":1}');
  });
});
