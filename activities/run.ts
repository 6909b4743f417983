/**
 * Run-level activities: validate the config and publish the seed data (prepareRun), make a
 * model a run's starting point (importModel), and promote a run's model in its lineage.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { configHash } from '../core/ids';
import { formatConfigError } from '../core/jsonl';
import { type ArtifactRef, type ModelRef, type ModelSource, RunConfig } from '../core/schemas';
import { baseModelPathProblem } from '../inputs/base-model';
import { loadRunData } from '../inputs/leakage';
import { findModel, findStage, publishModel, readPromoted, writeStage } from '../store/artifacts';
import { promotedKey } from '../store/keys';
import { invalid, lineageOf, type PreparedRun, PRODUCER, where } from './common';
import type { StageContext } from './context';
import { withHeartbeats } from './progress';

export function runActivities(ctx: StageContext) {
  const { deps, hbMs, openModel } = ctx;
  return {
    /** Validates the run config and the seed data, and publishes the seed data as stages. */
    async prepareRun(input: unknown, scheduled?: { runName: string }): Promise<PreparedRun> {
      // a scheduled run is named after its execution; its lineage stays the configured one
      if (scheduled && input && typeof input === 'object') {
        const raw = input as Record<string, unknown>;
        input = { ...raw, run: scheduled.runName, lineage: raw.lineage ?? raw.run };
      }
      const parsed = RunConfig.safeParse(input);
      if (!parsed.success) throw invalid(formatConfigError(parsed.error, 'run config'), 'InvalidConfig');
      const config = parsed.data;
      const baseModel = baseModelPathProblem(config);
      if (baseModel) throw invalid(`run config: ${baseModel}`, 'InvalidConfig');
      const store = deps.storeFor(config);
      const hash = configHash(config);
      const seedLoc = { run: config.run, iteration: 0 };

      // seed and held-out data, refused when a held-out prompt or set is also training data
      const { seed, prompts: heldOutPrompts, ranked: heldOutRanked } = await loadRunData(config);
      const { ift, ranked, eft: eftSeed, sources } = seed;

      /** A run-level input stage: the published one, else its records (loaded only then) published. */
      const inputStage = async (
        stage: string,
        recordType: string,
        records: () => Promise<readonly unknown[]>,
        stats: Record<string, unknown>,
      ): Promise<ArtifactRef> =>
        (await findStage(store, { ...seedLoc, stage })) ??
        (await writeStage(store, { ...seedLoc, stage, recordType, records: await records(), producer: PRODUCER, configHash: hash, stats }));
      const seedIft = await inputStage('seed-ift', 'IftExample', async () => ift, { sources });
      const seedRanked = ranked.length === 0 ? null : await inputStage('seed-ranked', 'RankedSet', async () => ranked, { sources });
      const seedEft = eftSeed.length === 0 ? null : await inputStage('seed-eft', 'SftExample', async () => eftSeed, { sources });
      const { prompts, judgeSet } = config.evaluation ?? {};
      const evalPrompts = prompts
        ? await inputStage('eval-prompts', 'EvalPrompt', async () => heldOutPrompts!, { sources: [prompts.file] })
        : null;
      const evalRanked = judgeSet
        ? await inputStage('eval-ranked', 'RankedSet', async () => heldOutRanked!, { sources: [judgeSet.ranked ?? judgeSet.oasst] })
        : null;
      return { config, configHash: hash, lineage: lineageOf(config), seedIft, seedRanked, seedEft, evalPrompts, evalRanked };
    },
    /** Makes a model usable as a run's starting point: a packaged GGUF is converted once and cached. */
    async importModel(input: { config: RunConfig; source: ModelSource; name: string }): Promise<ModelRef> {
      const { config, source } = input;
      const { store, lineage, modelId, existing } = await openModel(config, input.name);
      if (existing) return existing;
      if ('promoted' in source) {
        // the lineage's promoted model is used as it is: no copy, no new manifest
        const promoted = await readPromoted(store, source.promoted);
        if (!promoted)
          throw invalid(
            `${where(config, 0, 'import-model')}: lineage "${source.promoted}" has no promoted model yet (${store.uri(promotedKey(source.promoted))} is missing); run it once from a base model`,
            'InvalidConfig',
          );
        const ref = await findModel(store, source.promoted, promoted.modelId);
        if (!ref)
          throw invalid(
            `${where(config, 0, 'import-model')}: lineage "${source.promoted}" promotes ${promoted.modelId}, which has no manifest`,
            'InvalidConfig',
          );
        return ref;
      }
      let dir: string;
      if ('path' in source) {
        dir = path.resolve(source.path);
      } else {
        dir = path.join(deps.cacheDir, 'models', source.packaged);
        const ready = await fs.stat(path.join(dir, 'config.json')).then(
          () => true,
          () => false,
        );
        if (!ready) {
          await fs.mkdir(path.dirname(dir), { recursive: true });
          const started = Date.now();
          await withHeartbeats(
            async (_update, signal) =>
              deps.compute.importModel(
                { packaged: source.packaged, output: dir },
                {
                  signal,
                  onEvent: (ev) => {
                    if (ev.event === 'done')
                      deps.reporter?.({
                        run: config.run,
                        iteration: 0,
                        stage: 'import-model',
                        done: 1,
                        total: 1,
                        tokens: 0,
                        elapsedS: (Date.now() - started) / 1000,
                        note: source.packaged,
                      });
                  },
                },
              ),
            hbMs,
          );
        }
      }
      return publishModel(store, {
        lineage,
        modelId,
        parent: null,
        method: 'path' in source ? 'external' : 'import',
        trainedOn: [],
        dir,
        external: true,
      });
    },
    /**
     * Marks a run's final model as the lineage's promoted one (what `{"promoted": lineage}`
     * starts from). A completed run promotes its final model, or with evaluation gates its newest
     * accepted one (`reason` says why it is not the final model).
     */
    async promoteModel(input: {
      config: RunConfig;
      model: ModelRef;
      reason?: string;
    }): Promise<{ lineage: string; modelId: string; previous: string | null }> {
      const store = deps.storeFor(input.config);
      const lineage = input.model.lineage;
      const previous = await readPromoted(store, lineage);
      const record = {
        lineage,
        modelId: input.model.modelId,
        run: input.config.run,
        promotedAt: new Date().toISOString(),
        previous: previous?.modelId ?? null,
        ...(input.reason ? { reason: input.reason } : {}),
      };
      await store.putBytes(promotedKey(lineage), JSON.stringify(record, null, 2) + '\n');
      return { lineage, modelId: input.model.modelId, previous: record.previous };
    },
  };
}
