/**
 * JSON-lines parsing and writing over text (callers do the file I/O), and readable
 * messages for zod errors: every message names the file, the line and the field.
 */
import { z } from 'zod';

type Issue = z.core.$ZodIssue;

/** A record that failed to parse or validate; `line` is 1-based, 0 for the whole file. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
  constructor(
    readonly file: string,
    readonly line: number,
    /** what was wrong, without the location */
    readonly detail: string,
    /** dotted path of the offending field, when one field is to blame */
    readonly field?: string,
  ) {
    super(`${line > 0 ? `${file}:${line}` : file}: ${detail}`);
  }
}

/**
 * Decodes UTF-8 strictly: invalid bytes are an error naming the file and line, never
 * silently replaced with U+FFFD.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  try {
    return fatal.decode(bytes);
  } catch {
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          fatal.decode(bytes.subarray(start, i));
        } catch {
          throw new RecordError(file, line, 'invalid UTF-8 (the file must be UTF-8 text)');
        }
        line++;
        start = i + 1;
      }
    }
    throw new RecordError(file, 0, 'invalid UTF-8 (the file must be UTF-8 text)');
  }
}

/**
 * Parses JSONL text: one JSON value per line, blank lines skipped, each validated by
 * `schema`. Throws RecordError at the first bad line, or when no line holds a record.
 */
export function parseJsonl<T>(text: string, schema: z.ZodType<T>, file: string, opts: { uniqueId?: (r: T) => string } = {}): T[] {
  const records: T[] = [];
  const firstLine = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new RecordError(file, i + 1, `malformed JSON (${(err as Error).message})`);
    }
    const record = parseRecord(value, schema, file, i + 1);
    if (opts.uniqueId) {
      const id = opts.uniqueId(record);
      const seen = firstLine.get(id);
      if (seen !== undefined) throw new RecordError(file, i + 1, `duplicate record id "${id}" (first on line ${seen})`, 'id');
      firstLine.set(id, i + 1);
    }
    records.push(record);
  }
  if (records.length === 0) throw new RecordError(file, 0, 'file is empty');
  return records;
}

/** Validates one already-decoded record, reporting failures as RecordError at file:line. */
export function parseRecord<T>(value: unknown, schema: z.ZodType<T>, file: string, line: number): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const first = issues[0]!;
  const { field, text } = describeRecordIssue(first);
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  throw new RecordError(file, line, text + more, field);
}

/** One JSON document per line, with a trailing newline ('' for no records). */
export function toJsonl(records: readonly unknown[]): string {
  return records.map((r) => JSON.stringify(r) + '\n').join('');
}

/**
 * All problems of a config file, one per line, e.g.
 * `configs/demo.json: "candidates.n": must be > 0` or
 * `configs/demo.json: unknown key "foo" at "judge"`.
 */
export function formatConfigError(error: z.ZodError, file: string): string {
  return error.issues.map((issue) => `${file}: ${formatZodIssue(issue)}`).join('\n');
}

/** One zod issue as `"key.path": what is wrong` (no file). */
export function formatZodIssue(issue: Issue): string {
  const path = formatPath(issue.path);
  if (issue.code === 'unrecognized_keys') return unknownKeysText(issue.keys, path);
  const detail = issueDetail(issue);
  return path === '' ? detail : `"${path}": ${detail}`;
}

/** `candidates.n`, `replies[1].rank`; '' for the root. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

function describeRecordIssue(issue: Issue): { field?: string; text: string } {
  const path = formatPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    const field = issue.keys.length === 1 ? joinPath(path, issue.keys[0]!) : path || undefined;
    return { field, text: unknownKeysText(issue.keys, path) };
  }
  const detail = issueDetail(issue);
  if (path === '') return { text: detail };
  return { field: path, text: `field "${path}": ${detail}` };
}

function joinPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function unknownKeysText(keys: readonly string[], path: string): string {
  const names = keys.map((k) => `"${k}"`).join(', ');
  const where = path === '' ? '' : ` at "${path}"`;
  return `unknown key${keys.length > 1 ? 's' : ''} ${names}${where}`;
}

// zod's own (English) messages start with one of these; anything else was written by
// the schema's author for people, so it is shown as it is.
const ZOD_DEFAULT_MESSAGE = /^(Invalid|Too small|Too big|Unrecognized key)/;

function issueDetail(issue: Issue): string {
  if (!ZOD_DEFAULT_MESSAGE.test(issue.message)) return issue.message;
  switch (issue.code) {
    case 'invalid_type': {
      const received = /received (\w+)/.exec(issue.message)?.[1];
      if (received === 'undefined') return `missing (expected ${issue.expected})`;
      const expected = issue.expected === 'int' ? 'an integer' : issue.expected;
      return received ? `expected ${expected}, received ${received}` : `expected ${expected}`;
    }
    case 'too_small':
      return boundText(issue.origin, 'min', Number(issue.minimum), issue.inclusive ?? false, issue.exact ?? false);
    case 'too_big':
      return boundText(issue.origin, 'max', Number(issue.maximum), issue.inclusive ?? false, issue.exact ?? false);
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}`
        : `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_format':
      return issue.format === 'regex' && 'pattern' in issue ? `must match ${String(issue.pattern)}` : `must be a valid ${issue.format}`;
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    case 'invalid_union': {
      // a discriminated union whose discriminator matched no option: name the allowed values
      const options = (issue as { options?: unknown[] }).options;
      if (issue.errors.length === 0 && Array.isArray(options) && options.length)
        return `must be one of ${options.map((v) => JSON.stringify(v)).join(', ')}`;
      if (issue.errors.length === 0) return 'matches more than one allowed form';
      // Show the alternative that came closest (fewest problems).
      const closest = [...issue.errors].sort((a, b) => a.length - b.length)[0]!;
      const parts = closest.map((sub) => formatZodIssue({ ...sub, path: [...issue.path, ...sub.path] } as Issue));
      return `matches none of the allowed forms (closest: ${parts.join('; ')})`;
    }
    default:
      return issue.message;
  }
}

function boundText(origin: string, side: 'min' | 'max', n: number, inclusive: boolean, exact: boolean): string {
  const unit = origin === 'string' ? 'character' : origin === 'array' || origin === 'set' ? 'item' : undefined;
  if (unit !== undefined) {
    const plural = (k: number) => `${k} ${unit}${k === 1 ? '' : 's'}`;
    if (exact) return `must have exactly ${plural(n)}`;
    if (side === 'min') {
      const least = inclusive ? n : n + 1;
      return origin === 'string' && least === 1 ? 'must not be empty' : `must have at least ${plural(least)}`;
    }
    return `must have at most ${plural(inclusive ? n : n - 1)}`;
  }
  const op = side === 'min' ? (inclusive ? '>=' : '>') : inclusive ? '<=' : '<';
  return `must be ${op} ${n}`;
}
