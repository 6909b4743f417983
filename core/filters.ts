/**
 * Self-Instruct filtering of generated instructions (Wang et al. 2023, as used by Yuan et
 * al. 2024): drop ones that are too short or too long, need media a text model cannot
 * handle, ask for a program, start oddly, or repeat an instruction already kept or seeded.
 */
import { RougeIndex } from './rouge';

export const DROP_REASONS = [
  'too_short',
  'too_long',
  'unsupported_media',
  'write_a_program',
  'starts_with_punctuation',
  'non_ascii_start',
  'duplicate',
  'similar_to_existing',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type FilterDecision = { kept: true; instruction: string } | { kept: false; reason: DropReason; similarTo?: string; rougeL?: number };

export const MIN_WORDS = 4; // instructions of 3 words or fewer are dropped
export const MAX_WORDS = 150;

const UNSUPPORTED_MEDIA = /\b(?:images?|graphs?|pictures?|files?|maps?|draw|plot|go\s+to)\b/i;
const WRITE_A_PROGRAM = /^write\s+a\s+program/i;
// Python's string.punctuation
const ASCII_PUNCTUATION = /^[!-/:-@[-`{-~]/;

/** Collapses every run of whitespace into one space and trims. */
export function normalizeInstruction(instruction: string): string {
  return instruction.replace(/\s+/g, ' ').trim();
}

export function wordCount(text: string): number {
  const t = text.trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

/** The reason a (normalized) instruction fails the checks that need no other instruction, or null. */
export function instructionTextProblem(instruction: string): DropReason | null {
  const words = wordCount(instruction);
  if (words < MIN_WORDS) return 'too_short';
  if (words > MAX_WORDS) return 'too_long';
  if (UNSUPPORTED_MEDIA.test(instruction)) return 'unsupported_media';
  if (WRITE_A_PROGRAM.test(instruction)) return 'write_a_program';
  if (ASCII_PUNCTUATION.test(instruction)) return 'starts_with_punctuation';
  if (instruction.charCodeAt(0) > 0x7f) return 'non_ascii_start';
  return null;
}

/**
 * Decides, one at a time and in order, which generated instructions to keep. Seed
 * instructions count as already kept for the duplicate and similarity checks.
 */
export class InstructionFilter {
  private readonly index: RougeIndex;
  private readonly seen = new Set<string>();
  private readonly tally: Record<DropReason | 'kept', number>;

  constructor(
    seedInstructions: readonly string[],
    readonly threshold = 0.7,
  ) {
    if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`ROUGE-L threshold must be in (0, 1], got ${threshold}`);
    this.index = new RougeIndex();
    for (const seed of seedInstructions) this.remember(normalizeInstruction(seed));
    this.tally = { kept: 0, ...Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) } as Record<DropReason | 'kept', number>;
  }

  consider(instruction: string): FilterDecision {
    const decision = this.decide(normalizeInstruction(instruction));
    if (decision.kept) {
      this.remember(decision.instruction);
      this.tally.kept++;
    } else {
      this.tally[decision.reason]++;
    }
    return decision;
  }

  counts(): Record<DropReason | 'kept', number> {
    return { ...this.tally };
  }

  private decide(instruction: string): FilterDecision {
    const problem = instructionTextProblem(instruction);
    if (problem !== null) return { kept: false, reason: problem };
    if (this.seen.has(instruction)) return { kept: false, reason: 'duplicate' };
    const similar = this.index.exceeds(instruction, this.threshold);
    if (similar !== null) {
      return { kept: false, reason: 'similar_to_existing', similarTo: similar.against!, rougeL: similar.score };
    }
    return { kept: true, instruction };
  }

  private remember(instruction: string): void {
    if (instruction === '' || this.seen.has(instruction)) return;
    this.seen.add(instruction);
    this.index.add(instruction);
  }
}
