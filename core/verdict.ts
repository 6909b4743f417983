/**
 * The judge's verdict in its generated text: a score statement standing on its own line.
 * The definition (accepted forms, refusals and their reasons) is in docs/judging.md; this file
 * implements it with hand-written scanners, so that the work is linear in the text's length
 * (no regular expression with nested or adjacent quantifiers that could backtrack).
 */

/** Why a judgment has no usable verdict (the keys of a stage's `parseFailures`). */
export type VerdictFailure = 'no_score' | 'quoted_score_only' | 'out_of_range' | 'unsupported_scale' | 'ambiguous_score';

export type Verdict = { score: number; reason?: undefined; error?: undefined } | { score: null; reason: VerdictFailure; error: string };

/** Lines in the judge prompt that fence the graded material (see rubric.ts). */
export const RESPONSE_BEGIN = '[[BEGIN RESPONSE]]';
export const RESPONSE_END = '[[END RESPONSE]]';
export const QUESTION_BEGIN = '[[BEGIN QUESTION]]';
export const QUESTION_END = '[[END QUESTION]]';
const OLD_RESPONSE_BEGIN = '<response>';
const OLD_QUESTION_BEGIN = '<question>';
/** Lines that open and close an echo of the graded material (lower case). */
const ECHO_BEGINS = [RESPONSE_BEGIN, QUESTION_BEGIN].map((m) => m.toLowerCase());
const ECHO_ENDS = [RESPONSE_END, QUESTION_END, '</response>', '</question>'].map((m) => m.toLowerCase());

/**
 * NFKC (full-width digits and colons, ligatures, non-breaking and other Unicode spaces become
 * their ASCII forms), then what NFKC leaves: the remaining space separators become a space,
 * zero-width characters disappear, line separators become a newline.
 */
export function normaliseJudgment(text: string): string {
  // single-character classes only: each replace is one linear pass
  return text
    .normalize('NFKC')
    .replace(/[\r\u00ad\u200b-\u200d\u2060\ufeff]/g, '')
    .replace(/[\u0085\u2028\u2029]/g, '\n')
    .replace(/[\t\v\f\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g, ' ')
    .replace(/\u2212/g, '-');
}

type Statement =
  | { kind: 'score'; value: number; text: string }
  | { kind: 'bad'; reason: 'out_of_range' | 'unsupported_scale' | 'ambiguous_score'; text: string };

/**
 * The verdict of a judge's generated text (never pass the prompt: its rubric would be read too).
 * The last score statement in the judge's own words wins, even when it is unusable (then the
 * result is a failure with the reason, never an earlier statement and never 0).
 *
 * `response`, when given, is the graded response: a statement of the judge's that repeats a
 * score statement of the response word for word is taken as an echo of it, not as a verdict.
 */
export function parseVerdict(generated: string, response?: string): Verdict {
  const scan = scanStatements(generated);
  const planted = new Set<string>();
  if (response !== undefined) {
    const r = scanStatements(response);
    for (const st of [...r.own, ...r.quoted]) planted.add(st.text.toLowerCase());
  }
  let own: Statement | null = null;
  let echoed: Statement | null = scan.quoted.at(-1) ?? null;
  for (const st of scan.own) {
    if (planted.has(st.text.toLowerCase())) echoed = st;
    else own = st;
  }
  if (own === null && echoed === null)
    return { score: null, reason: 'no_score', error: 'no_score: no score statement on a line of its own' };
  if (own === null) {
    return {
      score: null,
      reason: 'quoted_score_only',
      error: `quoted_score_only: the only score statement ("${clip(echoed!.text)}") is quoted, in code or echoed from the response`,
    };
  }
  if (own.kind === 'bad') return { score: null, reason: own.reason, error: `${own.reason}: ${clip(own.text)}` };
  return { score: own.value };
}

/** The score statements of a text, in order: the writer's own, and those it quotes. */
function scanStatements(generated: string): { own: Statement[]; quoted: Statement[] } {
  const own: Statement[] = [];
  const quoted: Statement[] = [];
  const quote = (line: string): void => {
    const { text, spans } = removeQuotedSpans(line);
    for (const part of [text, ...spans]) {
      const st = statementOf(stripMarkup(part)) ?? tailStatementOf(stripMarkup(part));
      if (st) quoted.push(st);
    }
  };
  let fence: string | null = null; // the code fence we are inside, if any
  let inEcho = false;
  let pendingLabel = false; // the previous own line was a bare label ("Score:")
  for (const raw of normaliseJudgment(generated).split('\n')) {
    const trimmed = raw.trim();
    if (fence !== null) {
      if (trimmed.startsWith(fence)) fence = null;
      else quote(trimmed);
      continue;
    }
    if (trimmed.startsWith('```') || trimmed.startsWith('~~~')) {
      fence = trimmed.slice(0, 3);
      pendingLabel = false;
      continue;
    }
    const lower = trimmed.toLowerCase();
    const endsEcho = ECHO_ENDS.some((m) => lower.includes(m));
    if (inEcho) {
      if (endsEcho) inEcho = false;
      else quote(trimmed);
      continue;
    }
    if (ECHO_BEGINS.some((m) => lower.includes(m)) || lower.startsWith(OLD_RESPONSE_BEGIN) || lower.startsWith(OLD_QUESTION_BEGIN)) {
      // the judge echoes the graded material: nothing until an end marker is its own
      if (!endsEcho) inEcho = true;
      pendingLabel = false;
      continue;
    }
    if (trimmed.startsWith('>')) {
      quote(stripQuoteMarks(trimmed));
      pendingLabel = false;
      continue;
    }
    const { text, spans } = removeQuotedSpans(trimmed);
    for (const span of spans) quote(span);
    const line = stripMarkup(text);
    if (line === '') continue;
    if (pendingLabel) {
      pendingLabel = false;
      const st = statementOf(`score: ${line}`);
      if (st) {
        own.push(st);
        continue;
      }
    }
    const st = statementOf(line) ?? tailStatementOf(line);
    if (st) own.push(st);
    else if (isBareLabel(line)) pendingLabel = true;
  }
  return { own, quoted };
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function stripQuoteMarks(line: string): string {
  let i = 0;
  while (i < line.length && (line[i] === '>' || line[i] === ' ')) i++;
  return line.slice(i);
}

const OPEN_QUOTES: Record<string, string> = { '"': '"', '\u201c': '\u201d', '\u201e': '\u201d', '\u00ab': '\u00bb', '`': '`' };

const QUOTE_CHARS = /["`\u201c\u201e\u00ab]/;

/** The line with its quoted and code spans ("...", “...”, «...», `...`) taken out, and those spans. */
function removeQuotedSpans(line: string): { text: string; spans: string[] } {
  if (!QUOTE_CHARS.test(line)) return { text: line, spans: [] };
  const spans: string[] = [];
  const parts: string[] = [];
  let from = 0; // start of the text not yet copied
  let i = 0;
  while (i < line.length) {
    const close = OPEN_QUOTES[line[i]!];
    if (close === undefined) {
      i++;
      continue;
    }
    parts.push(line.slice(from, i));
    const end = line.indexOf(close, i + 1);
    if (end < 0) {
      // an unclosed quotation runs to the end of the line: it is still a quotation
      spans.push(line.slice(i + 1));
      from = line.length;
      break;
    }
    const inner = line.slice(i + 1, end);
    // a quoted number ("Score: \"4\"") is the judge's own, not a quotation
    if (isNumberLike(inner)) parts.push(` ${inner} `);
    else {
      spans.push(inner);
      parts.push(' ');
    }
    from = i = end + 1;
  }
  parts.push(line.slice(from));
  return { text: parts.join(''), spans };
}

function isNumberLike(s: string): boolean {
  let digits = 0;
  for (const c of s) {
    if (isDigit(c)) digits++;
    else if (!' .,/-'.includes(c)) return false;
  }
  return digits > 0;
}

/** Markdown around a line: heading marks, bullets, numbering, emphasis; then trimmed. */
function stripMarkup(line: string): string {
  let s = line.trim();
  let i = 0;
  while (i < s.length && s[i] === '#') i++;
  s = s.slice(i).trim();
  if (s.length > 1 && (s[0] === '-' || s[0] === '+' || s[0] === '•' || s[0] === '*') && s[1] === ' ') s = s.slice(2).trim();
  return s.replace(/[*_]/g, '').trim();
}

const LABELS = [
  'total points',
  'final score',
  'total score',
  'overall score',
  'final rating',
  'overall rating',
  'score',
  'rating',
  'total',
];

/** Index after a label at `i` (with its optional "(out of 5)"), or -1. */
function afterLabel(s: string, i: number): number {
  let j = -1;
  for (const label of LABELS) {
    if (s.startsWith(label, i)) {
      j = i + label.length;
      break;
    }
  }
  if (j < 0) return -1;
  if (isWordChar(s[j])) return -1; // "scores", "scoreboard"
  const k = skipSpaces(s, j);
  const paren = s.startsWith('(out of 5)', k)
    ? '(out of 5)'.length
    : s.startsWith('(/5)', k)
      ? '(/5)'.length
      : s.startsWith('(0-5)', k)
        ? '(0-5)'.length
        : 0;
  return paren ? k + paren : j;
}

/** Index after the separator (":", "=", or a dash followed by a space), or -1. */
function afterSeparator(s: string, i: number): number {
  const k = skipSpaces(s, i);
  const c = s[k];
  if (c === ':' || c === '=') return k + 1;
  if ((c === '-' || c === '\u2013' || c === '\u2014') && s[k + 1] === ' ') return k + 1;
  return -1;
}

function isBareLabel(line: string): boolean {
  const lower = line.toLowerCase();
  const j = afterLabel(lower, 0);
  if (j < 0) return false;
  const k = afterSeparator(lower, j);
  return k >= 0 && skipSpaces(lower, k) === lower.length;
}

function skipSpaces(s: string, i: number): number {
  while (i < s.length && s[i] === ' ') i++;
  return i;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c));
}

/** A number at i: `-`? digits, optionally a decimal point or decimal comma and digits. */
function numberAt(s: string, i: number): { value: number; end: number } | null {
  let j = i;
  if (s[j] === '-') j++;
  const digitsFrom = j;
  while (isDigit(s[j])) j++;
  if (j === digitsFrom) return null;
  let text = s.slice(i, j);
  if ((s[j] === '.' || s[j] === ',') && isDigit(s[j + 1])) {
    let k = j + 1;
    while (isDigit(s[k])) k++;
    text += `.${s.slice(j + 1, k)}`;
    j = k;
  }
  if (isWordChar(s[j])) return null; // "4th", "5x"
  return { value: Number(text), end: j };
}

const CLOSERS: Record<string, string> = { '[': ']', '(': ')', '<': '>', '{': '}' };
const WORDS_AFTER = ['points', 'point', 'pts', 'marks'];

/**
 * A whole line that is a score statement: label, separator, number, optional scale, optional
 * unit, then nothing but closing punctuation or a justification after a clear break
 * (",", ";", " - ", "(", ". ").
 */
function statementOf(line: string): Statement | null {
  const s = line.toLowerCase();
  let i = afterLabel(s, 0);
  if (i < 0) return null;
  i = afterSeparator(s, i);
  if (i < 0) return null;
  return valueOf(s, skipSpaces(s, i), line);
}

/** "... the second part. Score: 3": a statement closing a line after a sentence. */
function tailStatementOf(line: string): Statement | null {
  const s = line.toLowerCase();
  // the last sentence break: ". ", "! ", "? "
  let at = -1;
  for (let i = s.length - 2; i >= 0; i--) {
    if ((s[i] === '.' || s[i] === '!' || s[i] === '?' || s[i] === ')') && s[i + 1] === ' ') {
      at = i + 1;
      break;
    }
  }
  if (at < 0) return null;
  const tail = line.slice(skipSpaces(s, at));
  const st = statementOf(tail);
  if (st === null) return null;
  // only a bare statement closes a sentence: no justification after it
  const t = tail.toLowerCase();
  let end = t.length;
  while (end > 0 && (t[end - 1] === '.' || t[end - 1] === '!' || t[end - 1] === ' ')) end--;
  const last = t[end - 1];
  if (!(isDigit(last) || last === ']' || last === ')' || last === '>' || t.endsWith('points', end) || t.endsWith('point', end)))
    return null;
  return st;
}

function valueOf(s: string, i: number, original: string): Statement | null {
  const text = original.trim();
  const open = s[i];
  let closer: string | undefined;
  if (open !== undefined && CLOSERS[open] !== undefined) {
    closer = CLOSERS[open];
    i = skipSpaces(s, i + 1);
  }
  const num = numberAt(s, i);
  if (num === null) return null;
  let j = skipSpaces(s, num.end);
  // a range: "3-4", "3 - 4", "3 to 4", "3 or 4"
  for (const joiner of ['-', '\u2013', 'to ', 'or ']) {
    if (s.startsWith(joiner, j)) {
      const other = numberAt(s, skipSpaces(s, j + joiner.length));
      if (other !== null) return { kind: 'bad', reason: 'ambiguous_score', text };
    }
  }
  // the scale: "/5", "out of 5", "(out of 5)"
  let denominator: number | null = null;
  let k = j;
  const paren = s[k] === '(';
  if (paren) k = skipSpaces(s, k + 1);
  const scaleAt = s[k] === '/' ? k + 1 : s.startsWith('out of', k) ? k + 'out of'.length : -1;
  if (scaleAt >= 0) {
    const d = numberAt(s, skipSpaces(s, scaleAt));
    if (d !== null) {
      denominator = d.value;
      j = skipSpaces(s, d.end);
      if (paren && s[j] === ')') j = skipSpaces(s, j + 1);
    }
  }
  if (closer !== undefined && s[j] === closer) j = skipSpaces(s, j + 1);
  for (const w of WORDS_AFTER) {
    if (s.startsWith(w, j) && !isWordChar(s[j + w.length])) {
      j = skipSpaces(s, j + w.length);
      break;
    }
  }
  if (!endsStatement(s, j)) return null;
  if (denominator !== null && denominator !== 5) return { kind: 'bad', reason: 'unsupported_scale', text };
  if (!Number.isFinite(num.value) || num.value < 0 || num.value > 5) return { kind: 'bad', reason: 'out_of_range', text };
  return { kind: 'score', value: num.value, text };
}

/** After the number (and scale, unit): the end of the line, closing punctuation, or a clear break before a reason. */
function endsStatement(s: string, j: number): boolean {
  let k = j;
  while (k < s.length && (s[k] === '.' || s[k] === '!' || s[k] === ' ' || s[k] === ')' || s[k] === ']' || s[k] === '>')) {
    if (s[k] === '.' && k + 1 < s.length && s[k + 1] === ' ') return true; // "Score: 4. The answer ..."
    k++;
  }
  if (k === s.length) return true;
  const c = s[k];
  if (c === ',' || c === ';' || c === '(' || c === ':') return true;
  if ((c === '-' || c === '\u2013' || c === '\u2014') && k > j - 1 && s[k - 1] === ' ') return true;
  return false;
}
