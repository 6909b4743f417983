/**
 * Supervised fine-tuning on the seed's instruction data (+ EFT data): the SFT baseline and M1.
 */
import { type ArtifactRef, IftExample, type ModelRef, type RunConfig, SftExample } from '../core/schemas';
import { readStage } from '../store/artifacts';
import type { TrainResult } from './common';
import type { StageContext } from './context';
import { trainedBefore } from './training';

export function sftActivities(ctx: StageContext) {
  const { openModel, trainModel } = ctx;
  return {
    /** SFT of `base` on IFT (+ EFT) data: the SFT baseline, or M1. */
    async trainSft(input: { config: RunConfig; base: ModelRef; ift: ArtifactRef; eft: ArtifactRef[]; name: string }): Promise<TrainResult> {
      const { config } = input;
      const { store, existing } = await openModel(config, input.name);
      if (existing) return trainedBefore(store, existing);

      const ift = await readStage(store, input.ift, IftExample);
      const examples: SftExample[] = ift.map((r) => ({ id: r.id, prompt: r.prompt, completion: r.response, kind: 'ift' }));
      for (const ref of input.eft) examples.push(...(await readStage(store, ref, SftExample)));
      return trainModel({
        config,
        iteration: 0,
        name: input.name,
        method: 'sft',
        base: input.base,
        data: examples,
        trainedOn: [input.ift.uri, ...input.eft.map((r) => r.uri)],
        hyper: {
          lr: config.sft.lr,
          lr_end: config.sft.lrEnd,
          epochs: config.sft.epochs,
          batch_size: config.sft.batchSize,
          dropout: config.sft.dropout,
          beta: config.dpo.beta, // unused by SFT
          max_length: config.sft.maxLength,
          seed: config.randomSeed,
        },
        extraMetrics: { examples: examples.length, ift: ift.length, eft: examples.length - ift.length },
      });
    },
  };
}
