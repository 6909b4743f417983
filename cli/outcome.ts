/**
 * The last screen of `srlm run`: what the run ended with, in words. A gate that held a model
 * back is the safeguard working, so it is told in amber with its reason — distinct from an
 * error, which ends the command with a non-zero exit before this is printed.
 */
import type { IterationSummary } from '../core/stats';
import { GATE_HELD_EXPLANATION, onFailMeaning } from '../core/report';

export interface RunOutcomeInput {
  run: string;
  summaries: readonly IterationSummary[];
  finalModel: string;
  promoted?: string;
}

export type OutcomeTone = 'ok' | 'held';

export interface RunOutcome {
  tone: OutcomeTone;
  lines: string[];
}

export function describeRunOutcome(r: RunOutcomeInput): RunOutcome {
  const held = r.summaries.filter((s) => s.evaluation?.gate && !s.evaluation.gate.passed);
  if (held.length === 0) {
    const gated = r.summaries.some((s) => s.evaluation?.gate);
    return {
      tone: 'ok',
      lines: [
        gated
          ? `Every promotion gate passed: ${r.promoted ?? r.finalModel} is the run's promoted model.`
          : `Run "${r.run}" ended with ${r.promoted ?? r.finalModel}${r.promoted ? ' (promoted)' : ''}.`,
      ],
    };
  }
  const lines: string[] = [];
  for (const s of held) {
    const g = s.evaluation!.gate!;
    const reasons = g.checks.filter((c) => !c.passed).map((c) => c.message || c.name);
    lines.push(`Promotion gate held back ${s.evaluation!.model} (iteration ${s.iteration}): ${reasons.join('; ')}.`);
    lines.push(`  So ${onFailMeaning(g.onFail)}${r.promoted ? `: ${r.promoted}` : ''}.`);
  }
  lines.push(`  ${GATE_HELD_EXPLANATION}`);
  return { tone: 'held', lines };
}

/** Amber (ANSI yellow) for a held-back gate when the terminal shows colour. */
export function paintOutcome(o: RunOutcome, colour: boolean): string[] {
  if (!colour || o.tone === 'ok') return o.lines;
  return o.lines.map((l) => `\x1b[33m${l}\x1b[0m`);
}

export function terminalHasColour(stream: NodeJS.WriteStream): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}
