/**
 * The model lineage as the store records it: every published model with its parent, how
 * it was made, the data it was trained on and its metrics. Read from model manifests only.
 */
import type { ArtifactStore } from '../store/store';
import { ModelManifest } from '../core/schemas';
import { readPromoted } from '../store/artifacts';
import { lineagePrefix, MODEL_MANIFEST_KEY, MODELS_ROOT } from '../store/keys';

export interface LineageEntry {
  modelId: string;
  lineage: string;
  parent: string | null;
  method: ModelManifest['method'];
  trainedOn: string[];
  createdAt: string;
  /** the headline numbers: loss, steps, examples/pairs, DPO reward accuracy */
  metrics: Record<string, number>;
  /** where the weights are */
  location: string;
  /** this model's distance from the lineage's root (0 for an imported M0) */
  depth: number;
  /** the lineage's promoted (current) model: what `{"promoted": lineage}` starts from */
  promoted: boolean;
}

const HEADLINE = ['train_loss', 'steps', 'examples', 'pairs', 'resumed_from_step'];

/** Every model of every lineage (or of one), parents before children, oldest first. */
export async function listLineage(store: ArtifactStore, lineage?: string): Promise<LineageEntry[]> {
  const keys = (await store.list(lineage ? lineagePrefix(lineage) : MODELS_ROOT)).filter((k) => MODEL_MANIFEST_KEY.test(k));
  const entries: LineageEntry[] = [];
  for (const key of keys) {
    let m: ModelManifest;
    try {
      m = ModelManifest.parse(JSON.parse((await store.getBytes(key)).toString('utf8')));
    } catch (err) {
      throw new Error(`${store.uri(key)}: not a valid model manifest (${(err as Error).message.split('\n')[0]})`, { cause: err });
    }
    const metrics: Record<string, number> = {};
    for (const k of HEADLINE) if (typeof m.metrics[k] === 'number') metrics[k] = m.metrics[k] as number;
    const acc = (m.metrics.mean as Record<string, unknown> | undefined)?.['rewards/accuracies'];
    if (typeof acc === 'number') metrics.reward_accuracy = acc;
    entries.push({
      modelId: m.modelId,
      lineage: m.lineage,
      parent: m.parent,
      method: m.method,
      trainedOn: m.trainedOn,
      createdAt: m.createdAt,
      metrics,
      location: m.externalPath ?? store.uri(key.replace(/\/manifest\.json$/, '')),
      depth: 0,
      promoted: false,
    });
  }
  const byId = new Map(entries.map((e) => [e.modelId, e]));
  const depthOf = (e: LineageEntry, seen = new Set<string>()): number => {
    if (!e.parent || seen.has(e.modelId)) return 0;
    seen.add(e.modelId);
    const p = byId.get(e.parent);
    return p ? depthOf(p, seen) + 1 : 0;
  };
  for (const e of entries) e.depth = depthOf(e);
  for (const lineageName of new Set(entries.map((e) => e.lineage))) {
    const current = await readPromoted(store, lineageName);
    for (const e of entries) if (e.lineage === lineageName && e.modelId === current?.modelId) e.promoted = true;
  }
  return entries.sort((a, b) => a.lineage.localeCompare(b.lineage) || a.depth - b.depth || a.createdAt.localeCompare(b.createdAt));
}

/** The lineage as an indented tree, one model per line. */
export function renderLineage(entries: readonly LineageEntry[]): string {
  if (entries.length === 0) return 'No models in the store yet.';
  const out: string[] = [];
  let current = '';
  for (const e of entries) {
    if (e.lineage !== current) {
      current = e.lineage;
      out.push(`lineage ${current}`);
    }
    const nums = Object.entries(e.metrics)
      .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)
      .join(', ');
    out.push(
      `${'  '.repeat(e.depth + 1)}${e.modelId}  (${e.method}${e.parent ? ` of ${e.parent}` : ''}; ${e.trainedOn.length} dataset${e.trainedOn.length === 1 ? '' : 's'}${nums ? `; ${nums}` : ''})  ${e.createdAt}${e.promoted ? '  <- promoted' : ''}`,
    );
  }
  return out.join('\n');
}
