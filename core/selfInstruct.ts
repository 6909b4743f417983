/**
 * Self-Instruct prompt generation: the few-shot request that asks the model for a new
 * task, parsing the tasks out of what it writes back, and choosing the demonstrations.
 */

/** The user message: the demonstrations as `Task 1:` … `Task n:`, ending with the `Task n+1:` cue. */
export function buildSelfInstructRequest(demonstrations: readonly string[]): string {
  if (demonstrations.length === 0) throw new RangeError('self-instruct needs at least one demonstration');
  const tasks = demonstrations.map((d, i) => `Task ${i + 1}: ${d.trim()}`).join('\n\n');
  return `Come up with a new task that a person might ask an AI assistant to do. Here are some tasks people have asked for. Your task must be different from all of them, in topic and in the kind of request, and must be complete on its own: write it the way the person would ask it, and do not answer it.

${tasks}

Task ${demonstrations.length + 1}:`;
}

// A task label at the start of a line: "Task 9:", "**Task 9:**", "Task 9.", "Task 9 -", or a
// heading such as "### Task 9" alone on its line.
const TASK_LABEL = /^[ \t]*(?:#+[ \t]*)?[*_]*[ \t]*task[ \t]*\d+[ \t]*[*_]*[ \t]*(?:[:.)\-–][*_]*[ \t]*|$)/gim;
// Text a chat model puts before the task ("Sure! Here is a new task:").
const PREAMBLE = /^(?:sure|here|ok(?:ay)?|certainly|of course|absolutely|great|alright|new task)\b[^\n]*$|^[^\n]{0,80}:$/i;
// Where the model starts answering its own task.
const ANSWER_START = /\n[ \t]*[*_]*(?:answer|response|output|solution)[*_]*[ \t]*:/i;

export interface ParseInstructionsOptions {
  /** the generation hit its token limit: the last task is cut off and is dropped */
  truncated?: boolean;
}

/**
 * The instructions in a model's reply to buildSelfInstructRequest: the text that follows
 * the cue (with or without a repeated `Task n:` label) and every further `Task n:` item it
 * went on to write. Each item ends at the next label; a chat preamble before the first
 * label, an answer the model wrote to its own task, list numbering, markdown emphasis and
 * enclosing quotes are removed.
 */
export function parseGeneratedInstructions(generated: string, opts: ParseInstructionsOptions = {}): string[] {
  const text = generated.replace(/\r\n?/g, '\n');
  const labels = [...text.matchAll(TASK_LABEL)];
  const segments: string[] = [];
  const head = text.slice(0, labels[0]?.index ?? text.length);
  segments.push(labels.length > 0 && isPreamble(head) ? '' : stripPreambleLine(head));
  labels.forEach((m, k) => {
    const start = m.index + m[0].length;
    segments.push(text.slice(start, labels[k + 1]?.index ?? text.length));
  });
  const items = segments.map(cleanInstruction);
  if (opts.truncated) {
    // the cut-off task is the last non-empty one
    for (let k = items.length - 1; k >= 0; k--) {
      if (items[k] !== '') {
        items.splice(k, 1);
        break;
      }
    }
  }
  return items.filter((s) => s !== '');
}

function isPreamble(head: string): boolean {
  const t = head.trim();
  return t === '' || (!t.includes('\n') && PREAMBLE.test(t)) || PREAMBLE.test(t.split('\n').pop()!.trim());
}

function stripPreambleLine(head: string): string {
  const lines = head.trim().split('\n');
  if (lines.length > 1 && PREAMBLE.test(lines[0]!.trim())) return lines.slice(1).join('\n');
  return head;
}

function cleanInstruction(segment: string): string {
  let s = segment;
  const answer = ANSWER_START.exec('\n' + s);
  if (answer) s = ('\n' + s).slice(0, answer.index);
  s = s.trim();
  s = s.replace(/^(?:\d+[.)]|[-*•])[ \t]+/, ''); // list marker
  s = s.replace(/^(?:instruction|new task|task)[ \t]*:[ \t]*/i, '');
  for (let changed = true; changed;) {
    const before = s;
    s = s.replace(/^(\*\*|__)([\s\S]*)\1$/, '$2').trim(); // **bold** around the whole task
    s = s
      .replace(/^(["“'])([\s\S]*)(["”'])$/, (all, open: string, inner: string, close: string) =>
        (open === '"' && close === '"') || (open === '“' && close === '”') || (open === "'" && close === "'") ? inner : all,
      )
      .trim();
    changed = s !== before;
  }
  // a stray bold marker left by a label such as "**Task 9: Write ...**"
  if ((s.match(/\*\*/g)?.length ?? 0) % 2 === 1) s = s.replace(/^\*\*[ \t]*|[ \t]*\*\*$/, '');
  return s.trim();
}

// ---------------------------------------------------------------------------------------
// Demonstrations
// ---------------------------------------------------------------------------------------

export interface Demonstration {
  id: string;
  prompt: string;
}

/**
 * `seedShots` seed prompts and `generatedShots` model-written prompts, sampled without
 * replacement and shuffled. When fewer generated prompts exist (early in an iteration),
 * seed prompts fill the gap so the request keeps seedShots + generatedShots
 * demonstrations, as far as the two sets allow.
 */
export function chooseDemonstrations<T extends Demonstration>(
  seed: readonly T[],
  generated: readonly T[],
  seedShots: number,
  generatedShots: number,
  rng: () => number,
): T[] {
  const fromGenerated = Math.min(generatedShots, generated.length);
  const fromSeed = Math.min(seed.length, seedShots + (generatedShots - fromGenerated));
  const chosen = [...sample(seed, fromSeed, rng), ...sample(generated, fromGenerated, rng)];
  return shuffle(chosen, rng);
}

/** k items without replacement (partial Fisher-Yates). */
export function sample<T>(items: readonly T[], k: number, rng: () => number): T[] {
  const pool = [...items];
  const n = Math.min(k, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n);
}

export function shuffle<T>(items: readonly T[], rng: () => number): T[] {
  return sample(items, items.length, rng);
}

/** Mulberry32: a small, fast, seedable 32-bit PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
