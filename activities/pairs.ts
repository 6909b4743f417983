/**
 * Iteration step d: the best and the worst candidate of each prompt as a preference pair
 * (ties and unscored prompts dropped; optional length control).
 */
import { configHash } from '../core/ids';
import { PairSelector } from '../core/pairs';
import { type ArtifactRef, Candidate, Judgment, PreferencePair } from '../core/schemas';
import type { PairStageStats } from '../core/stats';
import { readStageShards, StageWriter } from '../store/artifacts';
import { type IterationStageInput, PRODUCER, publishWriter } from './common';
import type { StageContext } from './context';

export function pairActivities(ctx: StageContext) {
  const { openStage } = ctx;
  return {
    /** Iteration step d: best vs worst candidate per prompt, ties and unscored prompts dropped. */
    async selectPairs(input: IterationStageInput & { candidates: ArtifactRef; judgments: ArtifactRef }): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const { store, loc, existing } = await openStage(config, iteration, 'pairs');
      if (existing) return existing;
      // two passes over the candidates: lengths and ids to choose, then the chosen texts
      const selector = new PairSelector({ lengthControlRho: config.judge.lengthControlRho });
      for await (const batch of readStageShards(store, input.candidates, Candidate)) selector.addCandidates(batch);
      for await (const batch of readStageShards(store, input.judgments, Judgment)) selector.addJudgments(batch);
      selector.choose();
      const writer = new StageWriter<PreferencePair>(store, {
        ...loc,
        recordType: 'PreferencePair',
        producer: PRODUCER,
        configHash: configHash(config.judge.lengthControlRho === 0 ? {} : { rho: config.judge.lengthControlRho }),
      });
      for await (const batch of readStageShards(store, input.candidates, Candidate)) await writer.add(selector.addTexts(batch));
      selector.finish();
      return publishWriter(writer, loc, {
        prompts: selector.prompts,
        pairs: selector.pairs,
        dropped: selector.drops,
      } satisfies PairStageStats);
    },
  };
}
