/**
 * Reading and validating a run's seed data (IFT examples, ranked replies, ready-made EFT
 * judgments, OASST exports). Shared by the first activity and by the CLI, which checks the
 * data before it starts anything.
 */
import * as fs from 'node:fs/promises';
import type { z } from 'zod';
import { decodeUtf8, parseJsonl, RecordError } from '../core/jsonl';
import { importOasstTrees } from '../core/oasst';
import type { LeakItem } from '../core/leakage';
import { judgePrompt, parseJudgeScore } from '../core/rubric';
import { invalid } from './invalid';
import { EftSeed, IftExample, RankedSet, type RunConfig, type SftExample } from '../core/schemas';

export interface SeedData {
  ift: IftExample[];
  ranked: RankedSet[];
  /** ready-made judgments as SFT examples (judge prompt -> judgment) */
  eft: SftExample[];
  sources: string[];
  /** the prompts trained on (IFT, EFT seed, ranked sets EFT judges), for the held-out leakage check */
  training: LeakItem[];
}

async function readSeedFile<T extends { id: string }>(file: string, schema: z.ZodType<T>, what: string): Promise<T[]> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw invalid(`seed.${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'InvalidData');
  }
  try {
    return parseJsonl(decodeUtf8(bytes, file), schema, file, { uniqueId: (r) => r.id });
  } catch (err) {
    if (err instanceof RecordError) throw invalid(err.message, 'InvalidData');
    throw err;
  }
}

function dupCheck(records: { id: string }[], file: string): void {
  const seen = new Set<string>();
  for (const r of records) {
    if (seen.has(r.id)) throw invalid(`${file}: duplicate record id "${r.id}"`, 'InvalidData');
    seen.add(r.id);
  }
}

export async function loadSeed(config: RunConfig): Promise<SeedData> {
  let ift: IftExample[] = [];
  let ranked: RankedSet[] = [];
  const sources: string[] = [];
  const fileOf = new Map<string, string>(); // "kind id" -> the file it came from
  if (config.seed.ift) {
    ift = await readSeedFile(config.seed.ift, IftExample, 'ift');
    dupCheck(ift, config.seed.ift);
    for (const r of ift) fileOf.set(`ift ${r.id}`, config.seed.ift);
    sources.push(config.seed.ift);
  }
  if (config.seed.ranked) {
    ranked = await readSeedFile(config.seed.ranked, RankedSet, 'ranked');
    dupCheck(ranked, config.seed.ranked);
    for (const r of ranked) fileOf.set(`ranked ${r.id}`, config.seed.ranked);
    sources.push(config.seed.ranked);
  }
  const eftSeed: SftExample[] = [];
  const eftPrompts: LeakItem[] = [];
  if (config.seed.eft) {
    const file = config.seed.eft;
    const records = await readSeedFile(file, EftSeed, 'eft');
    dupCheck(records, file);
    records.forEach((r, i) => {
      const parsed = parseJudgeScore(r.judgment, r.response);
      if (parsed.score === null)
        throw invalid(
          `${file}:${i + 1}: field "judgment": its score line does not parse (${parsed.error}); end it with "Score: <0-5>"`,
          'InvalidData',
        );
      eftSeed.push({ id: r.id, prompt: judgePrompt(r.prompt, r.response), completion: r.judgment, kind: 'eft' });
      eftPrompts.push({ kind: 'EFT seed record', id: r.id, text: r.prompt, file });
    });
    sources.push(file);
  }
  if (config.seed.oasst) {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(config.seed.oasst);
    } catch (err) {
      throw invalid(`seed.oasst: cannot read ${config.seed.oasst} (${(err as Error).message})`, 'InvalidData');
    }
    try {
      const text = decodeUtf8(bytes, config.seed.oasst);
      const imported = importOasstTrees(text, config.seed.oasst, { lang: config.seed.lang });
      ift.push(...imported.ift);
      ranked.push(...imported.ranked);
      for (const r of imported.ift) fileOf.set(`ift ${r.id}`, config.seed.oasst);
      for (const r of imported.ranked) fileOf.set(`ranked ${r.id}`, config.seed.oasst);
    } catch (err) {
      if (err instanceof RecordError) throw invalid(err.message, 'InvalidData');
      throw err;
    }
    sources.push(config.seed.oasst);
  }
  if (config.seed.maxIft) ift = ift.slice(0, config.seed.maxIft);
  if (config.seed.maxRanked) ranked = ranked.slice(0, config.seed.maxRanked);
  if (config.seed.maxEft) {
    eftSeed.splice(config.seed.maxEft);
    eftPrompts.splice(config.seed.maxEft);
  }
  if (ift.length === 0) throw invalid(`seed: no IFT examples in ${sources.join(', ')}`, 'InvalidData');
  const neededShots = config.prompts.seedShots + config.prompts.generatedShots;
  if (ift.length < neededShots) {
    throw invalid(
      `seed: ${ift.length} IFT examples in ${sources.join(', ')}, but self-instruct needs at least ${neededShots} demonstrations (prompts.seedShots + prompts.generatedShots)`,
      'InvalidData',
    );
  }

  const training: LeakItem[] = [
    ...ift.map((r) => ({ kind: 'seed IFT example', id: r.id, text: r.prompt, file: fileOf.get(`ift ${r.id}`)! })),
    ...eftPrompts,
    ...ranked.map((r) => ({ kind: 'seed ranked set (EFT)', id: r.id, text: r.prompt, file: fileOf.get(`ranked ${r.id}`)! })),
  ];
  return { ift, ranked, eft: eftSeed, sources, training };
}
