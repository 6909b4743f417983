/**
 * Evaluation fine-tuning data (EFT): the SFT baseline judges human-ranked replies, and the
 * judgments whose ranking agrees with the humans' become SFT examples.
 */
import { buildEftExamples } from '../core/eft';
import { configHash, recordId } from '../core/ids';
import { judgePrompt } from '../core/rubric';
import { type ArtifactRef, EftJudgment, type ModelRef, RankedSet, type RunConfig } from '../core/schemas';
import type { GenerateRequest } from '../backends/compute';
import { readStage } from '../store/artifacts';
import { PRODUCER, publish, sampledRequest } from './common';
import type { StageContext } from './context';
import { shardStats } from './generation';
import { parseStats, scoreOf } from './judge';

export function eftActivities(ctx: StageContext) {
  const { openStage, generate } = ctx;
  return {
    /** EFT step 1: the SFT baseline judges every human-ranked reply. */
    async judgeRankedReplies(input: { config: RunConfig; judge: ModelRef; ranked: ArtifactRef }): Promise<ArtifactRef> {
      const { config } = input;
      const { store, loc, existing } = await openStage(config, 0, 'eft-judgments');
      if (existing) return existing;
      const sets = await readStage(store, input.ranked, RankedSet);
      const requests: GenerateRequest[] = [];
      const keyOf = new Map<string, { setId: string; replyIndex: number; reply: string }>();
      for (const set of sets) {
        set.replies.forEach((reply, replyIndex) => {
          const id = recordId(config.run, 'eft-judge', set.id, replyIndex);
          keyOf.set(id, { setId: set.id, replyIndex, reply: reply.text });
          requests.push(sampledRequest(config, id, judgePrompt(set.prompt, reply.text), config.eft.samples, config.eft.sampling));
        });
      }
      const gen = await generate(config, loc, input.judge, requests);
      const { outputs, tokens, seconds } = gen;
      const judgments: EftJudgment[] = [];
      for (const req of requests) {
        const k = keyOf.get(req.id)!;
        outputs.get(req.id)!.outputs.forEach((o, sample) => {
          judgments.push({
            id: recordId(req.id, sample),
            setId: k.setId,
            replyIndex: k.replyIndex,
            sample,
            text: o.text,
            ...scoreOf(o.text, k.reply),
          });
        });
      }
      return publish(store, {
        ...loc,
        recordType: 'EftJudgment',
        records: judgments,
        producer: PRODUCER,
        configHash: configHash(config.eft),
        stats: { ...parseStats(judgments), tokens, seconds, ...shardStats(gen) },
      });
    },
    /** EFT step 2: keep judgments whose score ranking agrees with the human ranking. */
    async buildEftData(input: { config: RunConfig; ranked: ArtifactRef; judgments: ArtifactRef }): Promise<ArtifactRef> {
      const { config } = input;
      const { store, loc, existing } = await openStage(config, 0, 'eft');
      if (existing) return existing;
      const sets = await readStage(store, input.ranked, RankedSet);
      const judgments = await readStage(store, input.judgments, EftJudgment);
      const { examples, stats } = buildEftExamples(sets, judgments, { downsampleScore: config.eft.downsampleScore });
      return publish(store, {
        ...loc,
        recordType: 'SftExample',
        records: examples,
        producer: PRODUCER,
        configHash: configHash(config.eft),
        stats,
      });
    },
  };
}
