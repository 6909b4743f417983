import { describe, expect, it } from 'vitest';
import { judgePrompt, parseJudgeScore, RUBRIC_VERSION } from '../../core/rubric';

describe('judgePrompt', () => {
  const prompt = judgePrompt('How do I boil an egg?', 'Put it in boiling water for 9 minutes.');

  it('shows the user question and the response under their own headings', () => {
    expect(prompt).toContain('<question>\nHow do I boil an egg?\n</question>');
    expect(prompt).toContain('<response>\nPut it in boiling water for 9 minutes.\n</response>');
  });

  it('asks for a justification of at most 100 words and a final "Score: <points>" line', () => {
    expect(prompt).toMatch(/no more than 100 words/);
    expect(prompt).toContain('"Score: <points>"');
    expect(prompt).toMatch(/from 0 to 5/);
  });

  it('lists five additive criteria, one point each, starting from 0', () => {
    expect(prompt.match(/^[1-5]\. /gm)).toHaveLength(5);
    expect(prompt).toMatch(/Start at 0 and add one point per criterion/);
  });

  it('does not itself parse as a score: the rubric text holds no score statement', () => {
    expect(parseJudgeScore(prompt)).toEqual({ score: null, error: 'no score found' });
  });

  it('has a version label', () => {
    expect(RUBRIC_VERSION).toMatch(/\S/);
  });
});

describe('parseJudgeScore on realistic judge outputs', () => {
  const accepted: [string, string, number][] = [
    ['plain final line', 'The response answers the question directly and accurately.\nScore: 4', 4],
    ['lower case label', 'Relevant but thin.\nscore: 2', 2],
    ['upper case label', 'SCORE: 3', 3],
    ['no space after the colon', 'Concise and correct.\nScore:4', 4],
    ['bold label', 'Well organised and helpful.\n\n**Score:** 4', 4],
    ['bold statement', 'Covers the basics.\n\n**Score: 3**', 3],
    ['bold number', 'Score: **5**', 5],
    ['italic label', '*Score*: 2', 2],
    ['markdown heading', 'Justification: clear and expert.\n\n### Score: 5', 5],
    ['fraction of 5', 'It is mostly complete.\nScore: 4/5', 4],
    ['fraction with spaces', 'Score: 3 / 5', 3],
    ['"out of 5"', 'Score: 2 out of 5', 2],
    ['"(out of 5)"', 'Score: 4 (out of 5)', 4],
    ['"(out of 5)" in the label', 'Score (out of 5): 3', 3],
    ['a full-width colon', 'Score：4', 4],
    ['"points" after the number', 'The reply meets four criteria.\nScore: 4 points', 4],
    ['trailing period', 'Score: 3.', 3],
    ['trailing whitespace and punctuation', 'Score: 4 !  \n', 4],
    ['trailing text after the line', 'Score: 4\n\nI hope this evaluation helps.', 4],
    ['"Total score" label', 'Point 1: yes. Point 2: yes. Point 3: yes.\nTotal score: 3', 3],
    ['"Final Score" label', 'Final Score: 1', 1],
    ['"Total points" label', 'Total points: 2', 2],
    ['decimal score', 'Somewhere between three and four.\nScore: 3.5', 3.5],
    ['zero is a real score', 'The response is off topic.\nScore: 0', 0],
    ['five', 'Flawless, expert answer.\nScore: 5', 5],
    ['dash separator', 'Score - 4', 4],
    ['equals separator', 'score = 2', 2],
    ['number on the next line', 'Score:\n3', 3],
    ['bracketed number', 'Score: [4]', 4],
    ['angle-bracketed number copied from the template', 'Score: <4>', 4],
    ['inline at the end of the justification', 'Helpful, but misses the second part of the request. Score: 3', 3],
    [
      'per-criterion scores, then a total (last wins)',
      'Criterion 1 score: 1\nCriterion 2 score: 1\nCriterion 3 score: 1\nCriterion 4 score: 0\nTotal score: 3',
      3,
    ],
    [
      'a score mentioned in the justification, then the final line',
      'I first considered Score: 5, but the answer has a factual slip.\nScore: 4',
      4,
    ],
    ['two score lines: the last well-formed one wins', 'Score: 2\n\nOn reflection the answer is better than that.\nScore: 3', 3],
    ['a malformed later line does not hide an earlier number', 'Score: 3\nScore: N/A', 3],
    [
      'rubric phrases in prose are not scores',
      'The rubric allows up to 5 points; a score of 5 needs expert knowledge. This reply earns 2 points for relevance.\nScore: 2',
      2,
    ],
    ['the number may be followed by a comma and a reason', 'Score: 4, because it is clear and complete.', 4],
    ['a dash after the number that is not a range', 'Score: 4 - the response is solid.', 4],
    ['Windows line endings', 'Good answer.\r\nScore: 4\r\n', 4],
  ];
  for (const [name, text, score] of accepted) {
    it(`reads ${score} from ${name}`, () => {
      expect(parseJudgeScore(text)).toEqual({ score });
    });
  }

  const rejected: [string, string, string][] = [
    ['a score above 5', 'Excellent!\nScore: 7', 'out of range: 7'],
    ['a negative score', 'Score: -1', 'out of range: -1'],
    ['a fraction above one', 'Score: 6/5', 'out of range: 6'],
    ['a fraction of 10', 'Score: 8/10', 'unsupported scale: 8/10'],
    ['"out of 10"', 'Score: 4 out of 10', 'unsupported scale: 4/10'],
    ['a two-digit number', 'Score: 45', 'out of range: 45'],
    ['a range', 'Score: 3-4', 'ambiguous score: 3-4'],
    ['"3 or 4"', 'Score: 3 or 4', 'ambiguous score: 3-4'],
    ['"N/A"', 'The response is empty.\nScore: N/A', 'no score found'],
    ['no score at all', 'The response is relevant and clear, but incomplete.', 'no score found'],
    ['an empty generation', '', 'no score found'],
    ['the template copied without a number', 'Score: <points>', 'no score found'],
    ['"a score of 4" in prose only', 'I would give this a score of 4 because it is helpful.', 'no score found'],
    ['points without a score label', 'Add 1 point for relevance. Add another point. 2 points.', 'no score found'],
    ['a later out-of-range verdict (it is not replaced by an earlier one)', 'Score: 4\nActually, Score: 9', 'out of range: 9'],
    ['a label inside another word', 'Subscore: 3', 'no score found'],
  ];
  for (const [name, text, error] of rejected) {
    it(`fails (not 0) on ${name}`, () => {
      const result = parseJudgeScore(text);
      expect(result.score).toBeNull();
      expect(result.error).toBe(error);
    });
  }
});
