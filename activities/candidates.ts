/**
 * Iteration step b: N sampled responses per prompt from M_t, streamed shard by shard; on a
 * fleet each part generates a range of shards and the stage is assembled from them.
 */
import { configHash, recordId } from '../core/ids';
import { type ArtifactRef, Candidate, GeneratedPrompt, type ModelRef, type RunConfig } from '../core/schemas';
import type { CandidateStageStats } from '../core/stats';
import type { GenerateRequest } from '../backends/compute';
import { readStageShards, StageWriter } from '../store/artifacts';
import type { PartStats } from '../workflows/contract';
import { type IterationStageInput, PRODUCER, publishWriter, sampledRequest } from './common';
import type { StageContext } from './context';
import { generationStats } from './generation';

export function candidateActivities(ctx: StageContext) {
  const { deps, openStage, generateStream, generatePart } = ctx;
  return {
    /**
     * Iteration step b: N candidate responses per prompt. With a fleet (`fleet`: the results of
     * generateCandidatesPart for every part) the shards are committed already and this only
     * assembles the stage from them.
     */
    async generateCandidates(
      input: IterationStageInput & { model: ModelRef; prompts: ArtifactRef; fleet?: PartStats[] },
    ): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const { store, loc, existing } = await openStage(config, iteration, 'candidates');
      if (existing) return existing;
      const writer = new StageWriter<Candidate>(store, {
        ...loc,
        recordType: 'Candidate',
        producer: PRODUCER,
        configHash: configHash(config.candidates),
      });
      let prompts = 0;
      const gen = await generateStream(config, loc, input.model, {
        batches: readStageShards(store, input.prompts, GeneratedPrompt),
        total: input.prompts.count,
        request: (p: GeneratedPrompt) => candidateRequest(config, iteration, p),
        onOutputs: async (batch, outputs) => {
          prompts += batch.length;
          const candidates: Candidate[] = [];
          batch.forEach((p, i) => {
            outputs[i]!.outputs.forEach((o, index) => {
              candidates.push({
                id: recordId(config.run, iteration, 'candidate', p.id, index),
                promptId: p.id,
                prompt: p.prompt,
                index,
                text: o.text,
                tokens: o.tokens,
                finishReason: o.finish_reason,
              });
            });
          });
          await writer.add(candidates);
        },
      });
      return publishWriter(writer, loc, { prompts, ...generationStats(gen, input.fleet) } satisfies CandidateStageStats);
    },
    /**
     * One part of the candidates stage on a fleet (`compute.fleet.parts`): the shards of its
     * range of prompts, committed exactly as generateCandidates commits them.
     */
    async generateCandidatesPart(
      input: IterationStageInput & { model: ModelRef; prompts: ArtifactRef; part: number; parts: number },
    ): Promise<PartStats> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      return generatePart(config, { run: config.run, iteration, stage: 'candidates' }, input, {
        items: async () => input.prompts.count,
        batches: () => readStageShards(store, input.prompts, GeneratedPrompt),
        request: (p: GeneratedPrompt) => candidateRequest(config, iteration, p),
      });
    },
  };
}

export function candidateRequest(config: RunConfig, iteration: number, p: GeneratedPrompt): GenerateRequest {
  const id = recordId(config.run, iteration, 'candidates', p.id);
  const { n, sampling } = config.candidates;
  return sampledRequest(config, id, p.prompt, n, sampling);
}
