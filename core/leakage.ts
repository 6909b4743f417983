/**
 * Held-out data that is also training data: an evaluation prompt or ranked set sharing an id or
 * a normalised prompt text with a seed IFT example, an EFT seed record, or a seed ranked set
 * that EFT judges. Only what a run actually uses is compared (after offsets and max caps).
 */

/** One record, as the leakage check sees it. */
export interface LeakItem {
  /** what it is, for messages: "seed IFT example", "evaluation prompt", ... */
  kind: string;
  id: string;
  /** the prompt text (the question; responses are not compared) */
  text: string;
  /** the file it came from */
  file: string;
}

export interface Leak {
  heldOut: LeakItem;
  training: LeakItem;
  /** what they share */
  by: 'id' | 'text';
}

/** NFKC, case-folded, every run of whitespace one space, trimmed. */
export function normaliseForLeakage(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/gu, ' ').trim();
}

/** Each held-out item that shares an id or normalised text with a training item, with the first such item. */
export function findLeaks(training: readonly LeakItem[], heldOut: readonly LeakItem[]): Leak[] {
  const byId = new Map<string, LeakItem>();
  const byText = new Map<string, LeakItem>();
  for (const t of training) {
    if (!byId.has(t.id)) byId.set(t.id, t);
    const key = normaliseForLeakage(t.text);
    if (key !== '' && !byText.has(key)) byText.set(key, t);
  }
  const leaks: Leak[] = [];
  for (const h of heldOut) {
    const sameId = byId.get(h.id);
    if (sameId) {
      leaks.push({ heldOut: h, training: sameId, by: 'id' });
      continue;
    }
    const sameText = byText.get(normaliseForLeakage(h.text));
    if (sameText) leaks.push({ heldOut: h, training: sameText, by: 'text' });
  }
  return leaks;
}

/**
 * The physical line (1-based) of the first line of `text` that holds one of the record's marks:
 * its id or its prompt as they are written in JSON; 0 when none is found.
 */
export function lineOfRecord(text: string, item: Pick<LeakItem, 'id' | 'text'>): number {
  const marks = [JSON.stringify(item.id), JSON.stringify(item.id.replace(/^oasst-/, '')), JSON.stringify(item.text)];
  let line = 1;
  let start = 0;
  while (start <= text.length) {
    const end = text.indexOf('\n', start);
    const row = text.slice(start, end < 0 ? text.length : end);
    if (marks.some((m) => row.includes(m))) return line;
    if (end < 0) break;
    start = end + 1;
    line++;
  }
  return 0;
}

/** One line per leak, naming both records with file:line (`where` gives the line). */
export function describeLeaks(leaks: readonly Leak[], where: (item: LeakItem) => string, limit = 10): string {
  const lines = leaks.slice(0, limit).map((l) => {
    const shared = l.by === 'id' ? `the id "${l.heldOut.id}"` : `the prompt "${clip(l.heldOut.text)}"`;
    return `  ${l.heldOut.kind} "${l.heldOut.id}" (${where(l.heldOut)}) shares ${shared} with ${l.training.kind} "${l.training.id}" (${where(l.training)})`;
  });
  if (leaks.length > limit) lines.push(`  ... and ${leaks.length - limit} more`);
  return lines.join('\n');
}

function clip(s: string): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > 60 ? `${one.slice(0, 57)}...` : one;
}
