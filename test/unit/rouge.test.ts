import { describe, expect, it } from 'vitest';
import { lcsLength, RougeIndex, rougeL, rougeTokens } from '../../core/rouge';
import { mulberry32 } from '../../core/selfInstruct';

describe('rougeTokens', () => {
  it('lowercases, turns everything but a-z0-9 into spaces and splits, without stemming', () => {
    expect(rougeTokens("Don't RUN-fast, runners!  3.14")).toEqual(['don', 't', 'run', 'fast', 'runners', '3', '14']);
  });

  it('gives no tokens for text without Latin letters or digits', () => {
    expect(rougeTokens('你好，世界')).toEqual([]);
  });
});

describe('rougeL', () => {
  it('is 1 for identical texts, whatever their case and punctuation', () => {
    expect(rougeL('Write a poem about the sea.', 'write a poem about the SEA')).toBe(1);
  });

  it('is 0 for texts with no token in common', () => {
    expect(rougeL('alpha beta gamma', 'delta epsilon')).toBe(0);
  });

  it('is 0 when either text has no tokens', () => {
    expect(rougeL('', 'anything')).toBe(0);
    expect(rougeL('...', '...')).toBe(0);
  });

  it('matches a hand-computed value', () => {
    // a = the cat sat on the mat (6), b = the cat lay on a mat (6)
    // LCS = the cat on mat (4); P = R = 4/6; F = 2PR/(P+R) = 4/6
    expect(rougeL('the cat sat on the mat', 'the cat lay on a mat')).toBeCloseTo(4 / 6, 12);
  });

  it('matches a hand-computed value for texts of different lengths', () => {
    // a = a b c d e (5), b = a c e (3): LCS 3, P = 3/3, R = 3/5, F = 2·1·0.6/1.6 = 0.75
    expect(rougeL('a b c d e', 'a c e')).toBeCloseTo(0.75, 12);
  });

  it('is symmetric', () => {
    expect(rougeL('one two three four', 'four three two one five')).toBe(rougeL('four three two one five', 'one two three four'));
  });

  it('computes LCS over sequences', () => {
    expect(lcsLength('ABCBDAB'.split(''), 'BDCABA'.split(''))).toBe(4);
  });
});

describe('RougeIndex', () => {
  const vocab = ['write', 'a', 'poem', 'story', 'about', 'the', 'sea', 'sky', 'cat', 'list', 'five', 'ways', 'to', 'explain', 'why'];
  function randomText(rng: () => number): string {
    const n = 1 + Math.floor(rng() * 12);
    return Array.from({ length: n }, () => vocab[Math.floor(rng() * vocab.length)]).join(' ');
  }

  it('finds the same maximum as a brute-force scan on random texts', () => {
    const rng = mulberry32(7);
    const kept = Array.from({ length: 300 }, () => randomText(rng));
    const index = new RougeIndex(kept);
    for (let q = 0; q < 200; q++) {
      const query = randomText(rng);
      const brute = Math.max(0, ...kept.map((k) => rougeL(query, k)));
      const found = index.maxRougeL(query);
      expect(found.score).toBeCloseTo(brute, 12);
      if (found.against !== null) expect(rougeL(query, found.against)).toBeCloseTo(found.score, 12);
    }
  });

  it('answers "exceeds" exactly as a brute-force scan does, for several thresholds', () => {
    const rng = mulberry32(11);
    const kept = Array.from({ length: 200 }, () => randomText(rng));
    const index = new RougeIndex(kept);
    for (const threshold of [0.3, 0.5, 0.7, 0.9]) {
      for (let q = 0; q < 100; q++) {
        const query = randomText(rng);
        const bruteAny = kept.some((k) => rougeL(query, k) > threshold);
        const hit = index.exceeds(query, threshold);
        expect(hit !== null).toBe(bruteAny);
        if (hit) expect(hit.score).toBeGreaterThan(threshold);
      }
    }
  });

  it('"exceeds" stays exact with common tokens, repeated tokens and tokens the index has never seen (prefix filtering)', () => {
    const rng = mulberry32(23);
    // a few very common tokens, a long tail, and query-only tokens
    const common = ['the', 'a', 'of', 'to'];
    const tail = Array.from({ length: 600 }, (_, k) => `t${k}`);
    const word = (unseen: boolean): string => {
      const r = rng();
      if (unseen && r < 0.1) return `new${Math.floor(rng() * 5)}`;
      return r < 0.45 ? common[Math.floor(rng() * common.length)]! : tail[Math.floor(rng() * (rng() < 0.5 ? 6 : tail.length))]!;
    };
    const text = (unseen: boolean): string => Array.from({ length: 2 + Math.floor(rng() * 14) }, () => word(unseen)).join(' ');
    const kept = Array.from({ length: 1500 }, () => text(false));
    const index = new RougeIndex(kept);
    let hits = 0;
    for (const threshold of [0.2, 0.5, 0.7, 0.85, 1]) {
      for (let q = 0; q < 100; q++) {
        const query = q % 10 === 0 ? kept[Math.floor(rng() * kept.length)]! : text(true);
        const brute = kept.filter((k) => rougeL(query, k) > threshold);
        const hit = index.exceeds(query, threshold);
        expect(hit !== null, `${threshold} ${query}`).toBe(brute.length > 0);
        if (hit) {
          hits++;
          expect(hit.score).toBeGreaterThan(threshold);
          expect(rougeL(query, hit.against!)).toBeCloseTo(hit.score, 12);
          expect(kept[hit.index]).toBe(hit.against);
        }
      }
    }
    expect(hits).toBeGreaterThan(50); // the thresholds are met often enough to mean something
  });

  it('reports score 0 and no match for an empty index or a text sharing no token', () => {
    expect(new RougeIndex().maxRougeL('write a poem')).toEqual({ score: 0, against: null, index: -1 });
    expect(new RougeIndex(['write a poem']).maxRougeL('unrelated words')).toEqual({ score: 0, against: null, index: -1 });
  });

  it('names the most similar kept text and its position', () => {
    const index = new RougeIndex(['list five fruits', 'write a poem about the sea', 'explain gravity to a child']);
    const best = index.maxRougeL('Write a short poem about the sea.');
    expect(best.against).toBe('write a poem about the sea');
    expect(best.index).toBe(1);
    expect(best.score).toBeCloseTo(rougeL('Write a short poem about the sea.', 'write a poem about the sea'), 12);
  });

  it('handles 10,000 kept instructions against 500 candidates in reasonable time', () => {
    const rng = mulberry32(3);
    const words = Array.from({ length: 3000 }, (_, k) => `w${k}`);
    const common = ['the', 'a', 'of', 'to', 'and', 'write', 'explain', 'list'];
    const sentence = () =>
      Array.from({ length: 8 + Math.floor(rng() * 15) }, () =>
        rng() < 0.35 ? common[Math.floor(rng() * common.length)] : words[Math.floor(rng() * words.length)],
      ).join(' ');
    const index = new RougeIndex(Array.from({ length: 10_000 }, sentence));
    const start = Date.now();
    for (let q = 0; q < 500; q++) index.exceeds(sentence(), 0.7);
    expect(Date.now() - start).toBeLessThan(10_000);
  });
});
