/**
 * Iteration step e: DPO from M_t on the iteration's preference pairs (reference model M_t),
 * giving M_{t+1}.
 */
import { type ArtifactRef, type ModelRef, PreferencePair } from '../core/schemas';
import { PairStageStats } from '../core/stats';
import { readStageManifest, readStageShards } from '../store/artifacts';
import { invalid, type IterationStageInput, type TrainResult, where } from './common';
import type { StageContext } from './context';
import { trainedBefore } from './training';

export function dpoActivities(ctx: StageContext) {
  const { openModel, trainModel } = ctx;
  return {
    /** Iteration step e: DPO from M_t on the pairs, reference model M_t. */
    async trainDpo(input: IterationStageInput & { model: ModelRef; pairs: ArtifactRef }): Promise<TrainResult> {
      const { config, iteration } = input;
      const name = `m${iteration + 1}`;
      const { store, existing } = await openModel(config, name);
      if (existing) return trainedBefore(store, existing);
      if (input.pairs.count === 0) {
        const manifest = await readStageManifest(store, input.pairs);
        throw invalid(
          `${where(config, iteration, 'dpo')}: no preference pairs to train on (pair selection dropped ${JSON.stringify(PairStageStats.parse(manifest.stats).dropped)})`,
          'NoPreferencePairs',
        );
      }
      return trainModel({
        config,
        iteration,
        name,
        method: 'dpo',
        base: input.model,
        data: (async function* () {
          for await (const pairs of readStageShards(store, input.pairs, PreferencePair))
            yield pairs.map((p) => ({ id: p.id, prompt: p.prompt, chosen: p.chosen, rejected: p.rejected }));
        })(),
        trainedOn: [input.pairs.uri],
        hyper: {
          lr: config.dpo.lr,
          lr_end: config.dpo.lrEnd,
          epochs: config.dpo.epochs,
          batch_size: config.dpo.batchSize,
          dropout: config.dpo.dropout,
          beta: config.dpo.beta,
          max_length: config.dpo.maxLength,
          seed: config.randomSeed + iteration,
        },
        extraMetrics: { pairs: input.pairs.count },
      });
    },
  };
}
