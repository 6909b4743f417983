/**
 * What a stage activity is built from: the worker's dependencies, the generation and training
 * drivers, and the idempotent-stage preamble (every stage returns its published output when
 * an earlier attempt or run finished it, so retries and resumed runs reuse completed work).
 */
import type { ArtifactRef, ModelRef, RunConfig } from '../core/schemas';
import { findModel, findStage, type StageLocation } from '../store/artifacts';
import type { ArtifactStore } from '../store/store';
import { type ActivityDeps, intervals, lineageOf, modelIdFor } from './common';
import { type GenerationDriver, generationDriver } from './generation';
import { type TrainingDriver, trainingDriver } from './training';

export interface StageContext extends GenerationDriver, TrainingDriver {
  deps: ActivityDeps;
  /** heartbeat interval of long activities (ms) */
  hbMs: number;
  /** A stage's store and location, and its output when it is already published. */
  openStage(
    config: RunConfig,
    iteration: number,
    stage: string,
  ): Promise<{ store: ArtifactStore; loc: StageLocation; existing: ArtifactRef | null }>;
  /** A model's store, lineage and id, and the model when it is already published. */
  openModel(
    config: RunConfig,
    name: string,
  ): Promise<{ store: ArtifactStore; lineage: string; modelId: string; existing: ModelRef | null }>;
}

export function stageContext(deps: ActivityDeps): StageContext {
  return {
    deps,
    hbMs: intervals(deps).hbMs,
    ...generationDriver(deps),
    ...trainingDriver(deps),
    async openStage(config, iteration, stage) {
      const store = deps.storeFor(config);
      const loc = { run: config.run, iteration, stage };
      return { store, loc, existing: await findStage(store, loc) };
    },
    async openModel(config, name) {
      const store = deps.storeFor(config);
      const lineage = lineageOf(config);
      const modelId = modelIdFor(config, name);
      return { store, lineage, modelId, existing: await findModel(store, lineage, modelId) };
    },
  };
}
