/**
 * `srlm report <run>`: reads every iteration summary of a run from the artifact store
 * (`runs/<run>/iter-<t>/summary.json`), adds what the store's model manifests say about the
 * run's models, and writes report.html and report.md (core/report.ts draws them).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type ArtifactStore, LocalStore } from '../store/store';
import { readPromoted } from '../store/artifacts';
import { runPrefix, SUMMARY_KEY } from '../store/keys';
import { renderReportHtml, renderReportMarkdown, type ReportModel, type ReportPromotion, type RunReport } from '../core/report';
import { SafeName } from '../core/schemas';
import { IterationSummary } from '../core/stats';
import { ConfigError } from './config';
import { listLineage } from './models';

/** The run's iteration summaries, parsed and sorted; a clear error for a bad file or none. */
export async function readRunSummaries(store: ArtifactStore, run: string): Promise<IterationSummary[]> {
  const name = SafeName.safeParse(run);
  if (!name.success) throw new ConfigError(`run name "${run}" ${name.error.issues[0]?.message ?? 'is not valid'}`);
  const keys = (await store.list(runPrefix(run))).filter((k) => SUMMARY_KEY.exec(k)?.[1] === run);
  if (keys.length === 0)
    throw new ConfigError(
      `run "${run}" has no iteration summaries in the store ${store.rootUri} (looked for ${store.uri(runPrefix(run))}/iter-*/summary.json)`,
    );
  const summaries: IterationSummary[] = [];
  for (const key of keys) {
    const uri = store.uri(key);
    const bytes = await store.getBytes(key);
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new ConfigError(`${uri}: not valid JSON (${(err as Error).message})`);
    }
    const parsed = IterationSummary.safeParse(json);
    if (!parsed.success) {
      const [issue, ...more] = parsed.error.issues;
      throw new ConfigError(
        `${uri}: not a valid iteration summary: "${issue!.path.join('.') || '(top level)'}": ${issue!.message}${more.length ? ` (and ${more.length} more issue${more.length > 1 ? 's' : ''})` : ''}`,
      );
    }
    const iteration = Number(SUMMARY_KEY.exec(key)![2]);
    if (parsed.data.run !== run || parsed.data.iteration !== iteration) {
      throw new ConfigError(
        `${uri}: the summary is of run "${parsed.data.run}", iteration ${parsed.data.iteration}, but is stored as run "${run}", iteration ${iteration}`,
      );
    }
    summaries.push(parsed.data);
  }
  return summaries.sort((a, b) => a.iteration - b.iteration);
}

/**
 * The manifests of the run's models and the promoted model of their lineages. Only lineages
 * holding one of the run's models are read. Lineage data is extra: a store without manifests
 * (or with an unreadable one) gives a report without it, and `warn` says why.
 */
export async function readRunModels(
  store: ArtifactStore,
  summaries: readonly IterationSummary[],
  warn: (line: string) => void,
): Promise<{ models: ReportModel[]; promoted: ReportPromotion[] }> {
  const ids = new Set(summaries.flatMap((s) => [s.modelIn, ...(s.modelOut ? [s.modelOut] : [])]));
  const lineages = new Set<string>();
  for (const key of await store.list('models')) {
    const m = /^models\/([^/]+)\/([^/]+)\/manifest\.json$/.exec(key);
    if (m && ids.has(m[2]!)) lineages.add(m[1]!);
  }
  const models: ReportModel[] = [];
  const promoted: ReportPromotion[] = [];
  for (const lineage of lineages) {
    try {
      for (const e of await listLineage(store, lineage)) {
        if (ids.has(e.modelId))
          models.push({
            modelId: e.modelId,
            lineage: e.lineage,
            parent: e.parent,
            method: e.method,
            createdAt: e.createdAt,
            metrics: e.metrics,
            promoted: e.promoted,
          });
      }
      const p = (await readPromoted(store, lineage)) as (Partial<ReportPromotion> & { modelId: string }) | null;
      if (p)
        promoted.push({
          lineage,
          modelId: p.modelId,
          previous: typeof p.previous === 'string' ? p.previous : null,
          ...(p.run ? { run: p.run } : {}),
          ...(p.promotedAt ? { promotedAt: p.promotedAt } : {}),
          ...(typeof p.reason === 'string' ? { reason: p.reason } : {}),
        });
    } catch (err) {
      warn(`note: the report leaves out lineage ${lineage}: ${(err as Error).message}`);
    }
  }
  return { models, promoted };
}

/**
 * The store as the report reads it: a directory store whose files are read only where they
 * really are inside its root, so a link planted in the store (runs/x/iter-1/summary.json ->
 * ~/.aws/credentials) is refused instead of followed into the report or an error message.
 */
export function confinedToStore(store: ArtifactStore): ArtifactStore {
  if (!(store instanceof LocalStore)) return store;
  const inside = async (key: string): Promise<void> => {
    const [root, real] = await Promise.all([fs.realpath(store.root), fs.realpath(path.join(store.root, key)).catch(() => null)]);
    if (real !== null && real !== root && !real.startsWith(root + path.sep))
      throw new ConfigError(
        `${store.uri(key)} leads out of the store through a symbolic link; srlm report reads only files inside ${store.rootUri}`,
      );
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'getBytes') return async (key: string) => (await inside(key), target.getBytes(key));
      if (prop === 'exists') return async (key: string) => (await inside(key), target.exists(key));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export async function buildRunReport(
  given: ArtifactStore,
  run: string,
  warn: (line: string) => void = (l) => console.warn(l),
): Promise<RunReport> {
  const store = confinedToStore(given);
  const summaries = await readRunSummaries(store, run);
  const { models, promoted } = await readRunModels(store, summaries, warn);
  return { run, generatedAt: new Date().toISOString(), store: store.rootUri, summaries, models, promoted };
}

/** Writes report.html and report.md into `outDir` (created); returns their paths. */
export async function writeRunReport(report: RunReport, outDir: string): Promise<{ html: string; md: string }> {
  const dir = path.resolve(outDir);
  await fs.mkdir(dir, { recursive: true });
  const html = path.join(dir, 'report.html');
  const md = path.join(dir, 'report.md');
  await fs.writeFile(html, renderReportHtml(report));
  await fs.writeFile(md, renderReportMarkdown(report));
  return { html, md };
}
