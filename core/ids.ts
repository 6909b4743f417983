/**
 * Deterministic identifiers: the same inputs always give the same id, so a retried or
 * resumed stage writes the same records and a second run over the same data is detected.
 */
import { createHash } from 'node:crypto';

const SEPARATOR = '\u001f'; // ASCII unit separator: cannot be confused with text in parts

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** First 16 hex digits of sha256 over the parts joined with U+001F. */
export function recordId(...parts: (string | number)[]): string {
  return sha256Hex(parts.map(String).join(SEPARATOR)).slice(0, 16);
}

/** A non-negative 31-bit integer derived from an id, for seeding samplers. */
export function seedFromId(id: string): number {
  return parseInt(sha256Hex(id).slice(0, 8), 16) & 0x7fffffff;
}

/** JSON with object keys sorted at every level; `undefined` members are left out as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** First 16 hex digits of sha256 over canonicalJson(obj): equal for equal configs whatever the key order. */
export function configHash(obj: unknown): string {
  return sha256Hex(canonicalJson(obj)).slice(0, 16);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      out[key] = sortKeys((value as Record<string, unknown>)[key]);
    }
    return out;
  }
  return value;
}
