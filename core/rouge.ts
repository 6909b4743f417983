/**
 * ROUGE-L (F-measure over the longest common subsequence of tokens), tokenized as the
 * `rouge_score` package does by default: lowercase, every run of characters other than
 * a-z and 0-9 becomes a space, split on spaces, no stemming. Non-Latin text therefore has
 * no tokens, and a text without tokens scores 0 against everything.
 */

export function rougeTokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(' ')
    .filter((t) => t !== '');
}

/** ROUGE-L F1 of two texts: 2·LCS / (|a| + |b|) in tokens (symmetric). */
export function rougeL(a: string, b: string): number {
  return rougeLTokens(rougeTokens(a), rougeTokens(b));
}

export function rougeLTokens<T>(a: ArrayLike<T>, b: ArrayLike<T>): number {
  if (a.length === 0 || b.length === 0) return 0;
  return (2 * lcsLength(a, b)) / (a.length + b.length);
}

/** Length of the longest common subsequence, dynamic programming over two rows. */
export function lcsLength<T>(a: ArrayLike<T>, b: ArrayLike<T>): number {
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  let prev = new Uint32Array(short.length + 1);
  let curr = new Uint32Array(short.length + 1);
  for (let i = 1; i <= long.length; i++) {
    const x = long[i - 1];
    for (let j = 1; j <= short.length; j++) {
      curr[j] = x === short[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, curr[j - 1]!);
    }
    [prev, curr] = [curr, prev];
  }
  return prev[short.length]!;
}

export interface RougeMatch {
  /** highest ROUGE-L F1 against the indexed texts (0 when the index is empty) */
  score: number;
  /** the indexed text that reached it, null when none shares a token */
  against: string | null;
  /** its position in insertion order, -1 when none */
  index: number;
}

/**
 * The texts kept so far, indexed to find the most similar one to a new text without an
 * LCS against every one of them.
 *
 * Why the pruning is exact: with LCS(a, b) ≤ |a ∩ b| (the multiset intersection of their
 * tokens) ≤ min(|a|, |b|), the F1 2·LCS/(|a|+|b|) is at most 2·|a ∩ b|/(|a|+|b|), which
 * is at most 2·min(|a|,|b|)/(|a|+|b|). An inverted index gives |a ∩ b| for every indexed
 * text sharing a token with the candidate in one pass over the candidate's postings; texts
 * sharing none score 0 and are never visited. LCS is then computed in decreasing order of
 * that bound and stops once the bound cannot beat the best score found (or, for
 * `exceeds`, cannot pass the threshold).
 */
export class RougeIndex {
  private readonly texts: string[] = [];
  private readonly docs: Int32Array[] = []; // token ids per text
  private readonly vocab = new Map<string, number>();
  /** token id -> [doc, count, doc, count, ...] */
  private readonly postings: number[][] = [];
  private overlap = new Float64Array(64);
  // scratch space of prefixCandidates: query token counts, per-text counts, texts found
  private want = new Int32Array(64);
  private used = new Int32Array(64);
  private mark = new Uint8Array(64);
  private tokensIndexed = 0;

  constructor(texts: Iterable<string> = []) {
    for (const t of texts) this.add(t);
  }

  get size(): number {
    return this.texts.length;
  }

  /** Adds a text; returns its index. */
  add(text: string): number {
    const doc = this.texts.length;
    const ids = Int32Array.from(rougeTokens(text), (t) => this.tokenId(t, true));
    this.texts.push(text);
    this.docs.push(ids);
    this.tokensIndexed += ids.length;
    for (const [id, count] of countIds(ids)) this.postings[id]!.push(doc, count);
    return doc;
  }

  /** The exact highest ROUGE-L F1 of `text` against the indexed texts. */
  maxRougeL(text: string): RougeMatch {
    const best: RougeMatch = { score: 0, against: null, index: -1 };
    this.search(
      text,
      (doc, score) => {
        if (score > best.score) Object.assign(best, { score, against: this.texts[doc]!, index: doc });
        return best.score;
      },
      0,
    );
    return best;
  }

  /** The first indexed text whose ROUGE-L F1 with `text` is strictly above `threshold`, or null. */
  exceeds(text: string, threshold: number): RougeMatch | null {
    let found: RougeMatch | null = null;
    this.search(
      text,
      (doc, score) => {
        if (score > threshold) {
          found = { score, against: this.texts[doc]!, index: doc };
          return Infinity; // stop
        }
        return threshold;
      },
      threshold,
    );
    return found;
  }

  /**
   * Visits indexed texts in decreasing order of their upper bound while that bound is
   * above the floor that `visit` returns (it starts at `floor`).
   */
  private search(text: string, visit: (doc: number, score: number) => number, floor: number): void {
    const tokens = rougeTokens(text);
    if (tokens.length === 0 || this.docs.length === 0) return;
    const ids = Int32Array.from(tokens, (t) => this.tokenId(t, false));
    if (this.overlap.length < this.docs.length) this.overlap = new Float64Array(this.docs.length * 2);
    const overlap = this.overlap;
    const counts = countIds(ids);
    const touched = (floor > 0 && this.prefixCandidates(counts, ids.length, floor, overlap)) || this.allSharing(counts, overlap);
    const n = ids.length;
    const bounds: { doc: number; bound: number }[] = [];
    for (const doc of touched) {
      const bound = (2 * overlap[doc]!) / (n + this.docs[doc]!.length);
      overlap[doc] = 0;
      if (bound > floor) bounds.push({ doc, bound });
    }
    bounds.sort((x, y) => y.bound - x.bound || x.doc - y.doc);
    for (const { doc, bound } of bounds) {
      if (bound <= floor) break;
      floor = visit(doc, rougeLTokens(ids, this.docs[doc]!));
    }
  }

  /** Every indexed text sharing a token, with its multiset overlap in `overlap[doc]`. */
  private allSharing(counts: Map<number, number>, overlap: Float64Array): number[] {
    const touched: number[] = [];
    for (const [id, count] of counts) {
      if (id < 0) continue;
      const list = this.postings[id]!;
      for (let k = 0; k < list.length; k += 2) {
        const doc = list[k]!;
        if (overlap[doc] === 0) touched.push(doc);
        overlap[doc] = overlap[doc]! + Math.min(count, list[k + 1]!);
      }
    }
    return touched;
  }

  /**
   * Prefix filtering (as in set-similarity joins), for a search with a floor θ > 0: the same
   * texts with a bound above θ as `allSharing`, without walking the long postings of common
   * tokens ("the", "of"). A text b with F1 > θ has an overlap ov with the query's n tokens of
   * ov > θ·n / (2 − θ) (from LCS ≤ ov ≤ |b|), i.e. at least m = ⌊θ·n / (2 − θ)⌋ + 1 shared
   * token occurrences; ordering the query's occurrences from the rarest token to the most
   * common, any such b shares one of the first n − m + 1. Only those tokens' postings are
   * walked; each text found gets its exact overlap from its own tokens.
   */
  private prefixCandidates(counts: Map<number, number>, n: number, floor: number, overlap: Float64Array): number[] | null {
    const m = Math.floor((floor * n) / (2 - floor)) + 1;
    if (m > n) return [];
    const known: number[] = [];
    let unseen = 0;
    let full = 0; // postings entries allSharing would walk
    for (const [id, c] of counts) {
      if (id < 0) unseen += c;
      else {
        known.push(id);
        full += this.postings[id]!.length / 2;
      }
    }
    known.sort((x, y) => this.postings[x]!.length - this.postings[y]!.length || x - y);
    // the first n - m + 1 occurrences (unseen tokens are shared with no text: they use up prefix room first)
    let room = n - m + 1 - unseen;
    // Each text the prefix finds costs a pass over its tokens; when the vocabulary is small
    // and flat the prefix's postings are as long as everyone's, and walking them all is cheaper.
    let prefix = 0;
    for (let i = 0, r = room; i < known.length && r > 0; i++) {
      prefix += this.postings[known[i]!]!.length / 2;
      r -= counts.get(known[i]!)!;
    }
    if (prefix * ((2 * this.tokensIndexed) / Math.max(1, this.docs.length) + 2) > full) return null;
    if (this.want.length < this.vocab.size) {
      this.want = new Int32Array(this.vocab.size * 2);
      this.used = new Int32Array(this.vocab.size * 2);
    }
    if (this.mark.length < this.docs.length) this.mark = new Uint8Array(this.docs.length * 2);
    const { want, used, mark } = this;
    for (const id of known) want[id] = counts.get(id)!;
    const found: number[] = [];
    for (const id of known) {
      if (room <= 0) break;
      room -= want[id]!;
      const list = this.postings[id]!;
      for (let k = 0; k < list.length; k += 2) {
        const doc = list[k]!;
        if (mark[doc] === 0) {
          mark[doc] = 1;
          found.push(doc);
        }
      }
    }
    const touched: number[] = [];
    for (const doc of found) {
      mark[doc] = 0;
      const tokens = this.docs[doc]!;
      let ov = 0;
      for (let i = 0; i < tokens.length; i++) {
        const id = tokens[i]!;
        if (used[id]! < want[id]!) {
          used[id]!++;
          ov++;
        }
      }
      for (let i = 0; i < tokens.length; i++) used[tokens[i]!] = 0;
      if (ov > 0) {
        overlap[doc] = ov;
        touched.push(doc);
      }
    }
    for (const id of known) want[id] = 0;
    return touched;
  }

  private tokenId(token: string, create: boolean): number {
    let id = this.vocab.get(token);
    if (id === undefined) {
      if (!create) return -1; // unseen: matches no indexed token
      id = this.vocab.size;
      this.vocab.set(token, id);
      this.postings.push([]);
    }
    return id;
  }
}

function countIds(ids: Int32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}
