/**
 * Every key the artifact store holds, built here and nowhere else:
 *
 *   runs/<run>/iter-<t>/<stage>/shard-<k>.jsonl + manifest.json    a stage's output
 *   runs/<run>/iter-<t>/<stage>/parts/<part>/shard-<k>.*            its generation shards (activities/shards.ts)
 *   runs/<run>/iter-<t>/summary.json, summary.md                    an iteration's summary
 *   runs/<run>/train/<name>/checkpoints/<job digest>/step-<n>/      a training job's checkpoints
 *   runs/<run>/train/<name>/remote/<job digest>/                    a remote training job's files
 *   models/<lineage>/<model-id>/<files> + manifest.json             a published model
 *   models/<lineage>/promoted.json                                  the lineage's promoted model
 */

export interface StageLocation {
  run: string;
  iteration: number;
  stage: string;
}

export function runPrefix(run: string): string {
  return `runs/${run}`;
}

export function iterationPrefix(run: string, iteration: number): string {
  return `${runPrefix(run)}/iter-${iteration}`;
}

export function stagePrefix(loc: StageLocation): string {
  return `${iterationPrefix(loc.run, loc.iteration)}/${loc.stage}`;
}

export function stageManifestKey(loc: StageLocation): string {
  return `${stagePrefix(loc)}/manifest.json`;
}

export function stageShardKey(loc: StageLocation, shard: number): string {
  return `${stagePrefix(loc)}/shard-${String(shard).padStart(5, '0')}.jsonl`;
}

/** A generation shard's committed outputs, its commit record (written last) and its flushed partial outputs. */
export function generationShardKeys(loc: StageLocation, part: string, shard: number): { outputs: string; commit: string; partial: string } {
  const base = `${stagePrefix(loc)}/parts/${part}/shard-${String(shard).padStart(5, '0')}`;
  return { outputs: `${base}.outputs.jsonl`, commit: `${base}.commit.json`, partial: `${base}.partial.jsonl` };
}

/** `runs/<run>/iter-<t>/summary.json`, capturing run and iteration */
export const SUMMARY_KEY = /^runs\/([^/]+)\/iter-(\d+)\/summary\.json$/;

export function summaryKey(run: string, iteration: number, ext: 'json' | 'md'): string {
  return `${iterationPrefix(run, iteration)}/summary.${ext}`;
}

export function checkpointsPrefix(run: string, name: string, jobDigest: string): string {
  return `${runPrefix(run)}/train/${name}/checkpoints/${jobDigest}`;
}

export function remoteTrainPrefix(run: string, name: string, jobDigest: string): string {
  return `${runPrefix(run)}/train/${name}/remote/${jobDigest}`;
}

export const MODELS_ROOT = 'models';

export function lineagePrefix(lineage: string): string {
  return `${MODELS_ROOT}/${lineage}`;
}

export function modelPrefix(lineage: string, modelId: string): string {
  return `${lineagePrefix(lineage)}/${modelId}`;
}

export function modelManifestKey(lineage: string, modelId: string): string {
  return `${modelPrefix(lineage, modelId)}/manifest.json`;
}

/** `models/<lineage>/<model-id>/manifest.json` */
export const MODEL_MANIFEST_KEY = /^models\/[^/]+\/[^/]+\/manifest\.json$/;

export function promotedKey(lineage: string): string {
  return `${lineagePrefix(lineage)}/promoted.json`;
}
