/** Loading a run config file: validated, with its relative paths resolved against the file. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatConfigError } from '../core/jsonl';
import { RunConfig } from '../core/schemas';
import { isS3Uri } from '../core/s3uri';
import { baseModelPathProblem } from '../inputs/base-model';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadRunConfig(file: string, overrides: Partial<Record<'run', string>> = {}): RunConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the run config (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (raw && typeof raw === 'object' && overrides.run) (raw as Record<string, unknown>).run = overrides.run;
  // a file:// store root is the directory it names
  const store = (raw as { store?: { root?: unknown } } | null)?.store;
  if (store && typeof store.root === 'string' && /^file:\/\//i.test(store.root)) {
    try {
      store.root = fileURLToPath(store.root);
    } catch (err) {
      throw new ConfigError(
        `${file}: "store.root": ${store.root} is not a usable file URI (${(err as Error).message}); write file:///absolute/path or the directory itself`,
      );
    }
  }
  const parsed = RunConfig.safeParse(raw);
  if (!parsed.success) throw new ConfigError(formatConfigError(parsed.error, file));
  return resolvePaths(parsed.data, path.dirname(path.resolve(file)));
}

/** Seed files, model directories and the store root are relative to the config file. */
export function resolvePaths(config: RunConfig, baseDir: string): RunConfig {
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : path.resolve(baseDir, p));
  const out: RunConfig = structuredClone(config);
  if (out.seed.ift) out.seed.ift = abs(out.seed.ift);
  if (out.seed.ranked) out.seed.ranked = abs(out.seed.ranked);
  if (out.seed.oasst) out.seed.oasst = abs(out.seed.oasst);
  if (out.seed.eft) out.seed.eft = abs(out.seed.eft);
  if ('path' in out.baseModel) out.baseModel = { path: abs(out.baseModel.path)! };
  if (out.prompts.model && 'path' in out.prompts.model) out.prompts.model = { path: abs(out.prompts.model.path)! };
  if (out.store.root && !isS3Uri(out.store.root)) out.store.root = abs(out.store.root);
  const ev = out.evaluation;
  if (ev?.prompts) ev.prompts.file = abs(ev.prompts.file)!;
  if (ev?.judgeSet?.ranked) ev.judgeSet.ranked = abs(ev.judgeSet.ranked);
  if (ev?.judgeSet?.oasst) ev.judgeSet.oasst = abs(ev.judgeSet.oasst);
  if (ev?.judge?.kind === 'model' && 'path' in ev.judge.model) ev.judge.model = { path: abs(ev.judge.model.path)! };
  return out;
}

/** Checks what can be checked before any compute starts: files exist and parse. */
export function checkFilesExist(config: RunConfig, file: string): void {
  const need: [string, string | undefined][] = [
    ['seed.ift', config.seed.ift],
    ['seed.ranked', config.seed.ranked],
    ['seed.oasst', config.seed.oasst],
    ['seed.eft', config.seed.eft],
    ['evaluation.prompts.file', config.evaluation?.prompts?.file],
    ['evaluation.judgeSet.ranked', config.evaluation?.judgeSet?.ranked],
    ['evaluation.judgeSet.oasst', config.evaluation?.judgeSet?.oasst],
  ];
  for (const [key, p] of need) {
    if (p !== undefined && !fs.existsSync(p)) throw new ConfigError(`${file}: "${key}": ${p} does not exist`);
  }
  const baseModel = baseModelPathProblem(config);
  if (baseModel) throw new ConfigError(`${file}: ${baseModel}`);
}
