/**
 * Reading a run's held-out evaluation data: prompts (with reference outputs where the set has
 * them) and human-ranked reply sets. Shared by the first activity, which publishes them as
 * stages, and by the CLI, which checks them before it starts anything.
 */
import * as fs from 'node:fs/promises';
import { z } from 'zod';
import { decodeUtf8, parseJsonl, parseRecord, RecordError } from '../core/jsonl';
import { importOasstTrees } from '../core/oasst';
import { invalid } from './invalid';
import { type EvalPrompt, RankedSet, type RunConfig } from '../core/schemas';

/**
 * What an evaluation prompt file may hold per record: AlpacaEval's `{instruction, output,
 * generator, dataset}`, or srlm's own `{id?, prompt, response?}`; other keys are ignored.
 */
const EvalPromptInput = z
  .looseObject({
    id: z.union([z.string().min(1), z.number()]).optional(),
    instruction: z.string().min(1).optional(),
    prompt: z.string().min(1).optional(),
    output: z.string().optional(),
    reference: z.string().optional(),
    response: z.string().optional(),
    generator: z.string().optional(),
    dataset: z.string().optional(),
  })
  .refine((r) => (r.instruction ?? r.prompt) !== undefined, { message: 'needs "instruction" (or "prompt")', path: ['instruction'] });

async function readText(file: string, field: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw invalid(`${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'InvalidData');
  }
  try {
    return decodeUtf8(bytes, file);
  } catch (err) {
    if (err instanceof RecordError) throw invalid(err.message, 'InvalidData');
    throw err;
  }
}

/**
 * The held-out prompts of `evaluation.prompts`: a JSON array (records numbered from 1 in errors)
 * or JSON Lines (file:line in errors); `offset` records skipped, at most `max` kept. Ids are the
 * record's own or `eval-<n>` (n its 1-based position in the file).
 */
export async function loadEvalPrompts(cfg: { file: string; offset: number; max: number }): Promise<EvalPrompt[]> {
  const text = await readText(cfg.file, 'evaluation.prompts.file');
  let raw: { value: z.infer<typeof EvalPromptInput>; line: number }[];
  try {
    if (text.trimStart().startsWith('[')) {
      let values: unknown;
      try {
        values = JSON.parse(text);
      } catch (err) {
        throw new RecordError(cfg.file, 0, `malformed JSON (${(err as Error).message})`);
      }
      if (!Array.isArray(values)) throw new RecordError(cfg.file, 0, 'expected a JSON array of prompt records');
      raw = values.map((v, i) => {
        try {
          return { value: parseRecord(v, EvalPromptInput, cfg.file, i + 1), line: i + 1 };
        } catch (err) {
          if (err instanceof RecordError) throw new RecordError(cfg.file, 0, `record ${i + 1} of the array: ${err.detail}`, err.field);
          throw err;
        }
      });
    } else {
      raw = [];
      let n = 0;
      for (const r of parseJsonl(text, EvalPromptInput, cfg.file)) raw.push({ value: r, line: ++n });
    }
  } catch (err) {
    if (err instanceof RecordError) throw invalid(err.message, 'InvalidData');
    throw err;
  }
  const picked = raw.slice(cfg.offset, cfg.offset + cfg.max);
  if (picked.length === 0)
    throw invalid(`evaluation.prompts: ${cfg.file} has ${raw.length} records, none left after offset ${cfg.offset}`, 'InvalidData');
  const seen = new Map<string, number>();
  return picked.map(({ value: r, line }) => {
    const id = r.id !== undefined ? String(r.id) : `eval-${line}`;
    const first = seen.get(id);
    if (first !== undefined) throw invalid(`${cfg.file}: records ${first} and ${line} share the id "${id}"`, 'InvalidData');
    seen.set(id, line);
    const reference = r.output ?? r.reference ?? r.response;
    return {
      id,
      instruction: (r.instruction ?? r.prompt)!,
      ...(reference !== undefined && reference.trim() !== '' ? { reference } : {}),
      ...(r.generator !== undefined ? { referenceGenerator: r.generator } : {}),
      ...(r.dataset !== undefined ? { dataset: r.dataset } : {}),
    };
  });
}

/** The held-out ranked sets of `evaluation.judgeSet`: ranked JSONL or an OASST export. */
export async function loadEvalRanked(cfg: NonNullable<NonNullable<RunConfig['evaluation']>['judgeSet']>): Promise<RankedSet[]> {
  let sets: RankedSet[];
  try {
    if (cfg.ranked !== undefined) {
      sets = parseJsonl(await readText(cfg.ranked, 'evaluation.judgeSet.ranked'), RankedSet, cfg.ranked, { uniqueId: (r) => r.id });
    } else {
      sets = importOasstTrees(await readText(cfg.oasst!, 'evaluation.judgeSet.oasst'), cfg.oasst!, { lang: cfg.lang }).ranked;
    }
  } catch (err) {
    if (err instanceof RecordError) throw invalid(err.message, 'InvalidData');
    throw err;
  }
  const picked = sets.slice(cfg.offset, cfg.offset + cfg.max);
  const file = cfg.ranked ?? cfg.oasst!;
  if (picked.length === 0)
    throw invalid(`evaluation.judgeSet: ${file} has ${sets.length} ranked sets, none left after offset ${cfg.offset}`, 'InvalidData');
  return picked;
}
