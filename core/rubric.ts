/**
 * LLM-as-a-Judge: the additive 0-5 rubric the model uses to grade responses (its own and,
 * for EFT data, human-written ones), and the parser for the score in its generated text.
 */

/** Bump when the prompt text changes: judgments made with another version are not comparable. */
export const RUBRIC_VERSION = 'additive-5pt-v2';

/** The judge's instruction for one (question, response) pair. */
export function judgePrompt(instruction: string, response: string): string {
  return `Grade the assistant's response to the user's question. Start at 0 and add one point per criterion met:
1. On topic, with some information relevant to the request, even if incomplete or partly off the point.
2. Covers a large part of the question without fully resolving it.
3. Answers the essential parts usefully, whatever its style.
4. Clearly an AI assistant's answer: direct, complete, well organised and helpful, with only minor flaws.
5. Tailored to the question perfectly: expert, engaging and insightful, with nothing superfluous.

<question>
${instruction}
</question>

<response>
${response}
</response>

Justify your total in no more than 100 words, then end with a final line written exactly as "Score: <points>", where <points> is the total from 0 to 5.`;
}

export type JudgeScore = { score: number; error?: undefined } | { score: null; error: string };

/**
 * The 0-5 score in the judge's generated text (never pass the prompt: its rubric would be
 * read too).
 *
 * A score statement is a label, `Score` or `Total points` (any case, possibly preceded by
 * words such as "Total"/"Final" or followed by "(out of 5)", possibly in markdown
 * emphasis), a separator (`:`, `=`, or a dash with a space after it), then a number
 * (decimals allowed, possibly on the next line), optionally as a
 * fraction of 5 (`4/5`, `4 out of 5`) and followed by words such as "points". Prose such
 * as "a score of 5 needs expert knowledge" or "up to 5 points" is not a statement.
 *
 * The LAST statement is the judge's verdict. If that verdict is unusable the result is a
 * failure, not an earlier statement and never 0:
 * - outside 0..5 (`Score: 7`, `Score: -1`, `6/5`): `out of range: 7`;
 * - a fraction of anything but 5 (`8/10`): `unsupported scale: 8/10`, because the
 *   judge left the rubric's scale and its number cannot be compared with the others;
 * - a range (`3-4`, `3 or 4`): `ambiguous score: 3-4`;
 * - no statement with a number at all (including `Score: N/A`): `no score found`.
 */
export function parseJudgeScore(generated: string): JudgeScore {
  let last: RegExpExecArray | null = null;
  for (const m of generated.matchAll(SCORE_STATEMENT)) last = m;
  if (last === null) return { score: null, error: 'no score found' };

  const [, numberText, denominatorText, rangeEnd] = last;
  const value = Number(numberText);
  if (rangeEnd !== undefined) return { score: null, error: `ambiguous score: ${numberText}-${rangeEnd}` };
  if (denominatorText !== undefined && Number(denominatorText) !== 5) {
    return { score: null, error: `unsupported scale: ${numberText}/${denominatorText}` };
  }
  if (!Number.isFinite(value) || value < 0 || value > 5) return { score: null, error: `out of range: ${numberText}` };
  return { score: value };
}

const NUMBER = String.raw`-?\d+(?:\.\d+)?`;
const SCORE_STATEMENT = new RegExp(
  [
    // label, not the tail of a longer word ("subscore")
    String.raw`(?<![A-Za-z])(?:score|total points)`,
    // "Score (out of 5):"
    String.raw`(?:[ \t]*\((?:out of|/)[ \t]*5[ \t]*\))?`,
    // markdown around the label, then the separator
    String.raw`[*_]*[ \t]*(?::|=|：|[-–—](?=\s))[*_]*`,
    // the number may sit on the next line, and be wrapped in emphasis, brackets or quotes
    String.raw`[ \t]*(?:\r?\n[ \t]*)?[*_"'\x60\[(<]*[ \t]*`,
    `(${NUMBER})(?![0-9A-Za-z])`,
    // optional "/5" or "out of 5", possibly in parentheses
    String.raw`(?:[*_]*[ \t]*\(?[ \t]*(?:/|out of)[ \t]*(${NUMBER})(?![0-9A-Za-z]))?`,
    // a range such as "3-4" or "3 or 4"
    String.raw`(?:[ \t]*(?:-|–|to|or)[ \t]*(${NUMBER})(?![0-9A-Za-z]))?`,
  ].join(''),
  'gi',
);
