/**
 * Iteration step a: new prompts by 8-shot self-instruct from the seed and earlier prompts,
 * filtered (length, keywords, ROUGE-L against everything kept so far).
 */
import { configHash, recordId } from '../core/ids';
import { InstructionFilter } from '../core/filters';
import { type ArtifactRef, GeneratedPrompt, IftExample, type ModelRef } from '../core/schemas';
import { buildSelfInstructRequest, chooseDemonstrations, mulberry32, parseGeneratedInstructions } from '../core/selfInstruct';
import type { PromptStageStats } from '../core/stats';
import type { GenerateRequest } from '../backends/compute';
import { readStage } from '../store/artifacts';
import { invalid, type IterationStageInput, PRODUCER, publish, sampledRequest, samplingSeed, where } from './common';
import type { StageContext } from './context';

export function promptActivities(ctx: StageContext) {
  const { openStage, generate } = ctx;
  return {
    /** Iteration step a: 8-shot self-instruct prompt generation, filtered. */
    async generatePrompts(
      input: IterationStageInput & { model: ModelRef; seedIft: ArtifactRef; earlier: ArtifactRef[] },
    ): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const cfg = config.prompts;
      const { store, loc, existing } = await openStage(config, iteration, 'prompts');
      if (existing) return existing;

      const seed = (await readStage(store, input.seedIft, IftExample)).map((r) => ({ id: r.id, prompt: r.prompt }));
      const earlier: GeneratedPrompt[] = [];
      for (const ref of input.earlier) earlier.push(...(await readStage(store, ref, GeneratedPrompt)));
      const filter = new InstructionFilter([...seed.map((s) => s.prompt), ...earlier.map((p) => p.prompt)], cfg.rougeLThreshold);
      const kept: GeneratedPrompt[] = [];
      let requested = 0;
      let generated = 0;
      let tokens = 0;
      let seconds = 0;
      let rounds = 0;
      const shardTotals = { shards: 0, shardsReused: 0, requestsResumed: 0, requestsGenerated: 0, skipped: 0 };
      for (let round = 0; round < cfg.maxRounds && kept.length < cfg.count; round++) {
        rounds++;
        const pool = [...earlier, ...kept].map((p) => ({ id: p.id, prompt: p.prompt }));
        const requests: GenerateRequest[] = [];
        const shotsOf = new Map<string, string[]>();
        for (let r = 0; r < cfg.requestsPerRound; r++) {
          const id = recordId(config.run, iteration, 'self-instruct', round, r);
          const rng = mulberry32(samplingSeed(config, id));
          const demos = chooseDemonstrations(seed, pool, cfg.seedShots, cfg.generatedShots, rng);
          shotsOf.set(
            id,
            demos.map((d) => d.id),
          );
          requests.push(sampledRequest(config, id, buildSelfInstructRequest(demos.map((d) => d.prompt)), 1, cfg.sampling));
        }
        requested += requests.length;
        const res = await generate(
          config,
          loc,
          input.model,
          requests,
          `round-${String(round).padStart(3, '0')}`,
          `prompts round ${round + 1}`,
        );
        tokens += res.tokens;
        seconds += res.seconds;
        shardTotals.shards += res.shards;
        shardTotals.shardsReused += res.shardsReused;
        shardTotals.requestsResumed += res.requestsResumed;
        shardTotals.requestsGenerated += res.requestsGenerated;
        shardTotals.skipped += res.skipped;
        for (const req of requests) {
          for (const o of res.outputs.get(req.id)!.outputs) {
            // a continuation cut off by the token limit may end in half an instruction
            for (const instruction of parseGeneratedInstructions(o.text, { truncated: o.finish_reason === 'length' })) {
              generated++;
              if (kept.length >= cfg.count) continue;
              if (filter.consider(instruction).kept) {
                kept.push({
                  id: recordId(config.run, iteration, 'prompt', instruction),
                  prompt: instruction,
                  iteration,
                  shots: shotsOf.get(req.id)!,
                });
              }
            }
          }
        }
      }
      if (kept.length === 0) {
        throw invalid(
          `${where(config, iteration, 'prompts')}: no generated instruction passed the filters after ${rounds} rounds (${generated} generated; drops ${JSON.stringify(filter.counts())})`,
          'NoPrompts',
        );
      }
      return publish(store, {
        ...loc,
        recordType: 'GeneratedPrompt',
        records: kept,
        producer: PRODUCER,
        configHash: configHash(cfg),
        stats: {
          requested,
          rounds,
          generated,
          kept: kept.length,
          filters: filter.counts(),
          tokens,
          seconds,
          ...shardTotals,
        } satisfies PromptStageStats,
      });
    },
  };
}
