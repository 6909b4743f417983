import { describe, expect, it } from 'vitest';
import { describeRunOutcome, paintOutcome } from '../../cli/outcome';
import { IterationSummary } from '../../core/stats';
import { iteration2, iteration3 } from '../helpers/report-fixtures';

describe("srlm run's last screen", () => {
  it('tells a held-back model in amber with its reason and what the gate did, not as an error', () => {
    const o = describeRunOutcome({ run: 'r', summaries: [iteration2, iteration3], finalModel: 'r.m4', promoted: 'r.m3' });
    expect(o.tone).toBe('held');
    const text = o.lines.join('\n');
    expect(text).toMatch(
      new RegExp(`^Promotion gate held back ${iteration3.evaluation!.model.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(iteration 3\\): `),
    );
    for (const c of iteration3.evaluation!.gate!.checks.filter((x) => !x.passed)) expect(text).toContain(c.message || c.name);
    expect(text).toContain('the next iteration trained from the last accepted model instead: r.m3');
    expect(text).toContain('the safeguard working, not an error');
    expect(text).not.toMatch(/FAILED|error:/);
    const painted = paintOutcome(o, true);
    expect(painted.every((l) => l.startsWith('\x1b[33m') && l.endsWith('\x1b[0m'))).toBe(true);
    expect(paintOutcome(o, false)).toEqual(o.lines);
  });

  it('says every gate passed, in plain text, when none held a model back', () => {
    const o = describeRunOutcome({ run: 'r', summaries: [iteration2], finalModel: 'r.m3', promoted: 'r.m3' });
    expect(o).toEqual({ tone: 'ok', lines: ["Every promotion gate passed: r.m3 is the run's promoted model."] });
    expect(paintOutcome(o, true)).toEqual(o.lines);
  });

  it('names the final model of a run without evaluation', () => {
    const plain = IterationSummary.parse({ ...iteration2, evaluation: null });
    expect(describeRunOutcome({ run: 'r', summaries: [plain], finalModel: 'r.m2' }).lines).toEqual(['Run "r" ended with r.m2.']);
  });
});
