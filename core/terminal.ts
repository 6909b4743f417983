/**
 * Text from run data and configs (run names, model ids, error messages, summaries) reaches a
 * terminal through the CLI; an ANSI escape sequence in it could rewrite the screen, hide lines
 * or set the window title. Every control character except newline and tab is written as a
 * visible \u00XX escape (valid inside JSON strings too, so --json output stays parseable), as
 * are the bidirectional overrides that reorder what is shown.
 */
// C0 controls but \t and \n, DEL, C1 controls, bidi embeddings/overrides/isolates: matching
// control characters is this expression's purpose
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
