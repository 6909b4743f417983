/** The check of a run's base model directory, made by the CLI before it starts a run and by prepareRun. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunConfig } from '../core/schemas';

/** Why `baseModel.path` cannot be trained from (not a Hugging Face model directory), or null when it can or is not set. */
export function baseModelPathProblem(config: RunConfig): string | null {
  if (!('path' in config.baseModel)) return null;
  const dir = config.baseModel.path;
  return fs.existsSync(path.join(dir, 'config.json'))
    ? null
    : `"baseModel.path": ${dir} is not a Hugging Face model directory (no config.json)`;
}
