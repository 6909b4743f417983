/**
 * Iteration step c: M_t judges each candidate `judge.samples` times with the additive 0-5
 * rubric; scores are parsed here. Also the score parsing the EFT and evaluation judges share.
 */
import { configHash, recordId } from '../core/ids';
import { judgePrompt, parseJudgeScore } from '../core/rubric';
import { type ArtifactRef, Candidate, Judgment, type ModelRef, type RunConfig } from '../core/schemas';
import type { JudgmentStageStats } from '../core/stats';
import type { GenerateRequest } from '../backends/compute';
import { readStageShards, StageWriter } from '../store/artifacts';
import type { PartStats } from '../workflows/contract';
import { type IterationStageInput, PRODUCER, publishWriter, sampledRequest } from './common';
import type { StageContext } from './context';
import { generationStats } from './generation';

export function judgeActivities(ctx: StageContext) {
  const { deps, openStage, generateStream, generatePart } = ctx;
  return {
    /**
     * Iteration step c: the model judges each candidate `samples` times; scores are parsed here.
     * With a fleet (`fleet`: the results of judgeCandidatesPart) it assembles the committed shards.
     */
    async judgeCandidates(
      input: IterationStageInput & { model: ModelRef; candidates: ArtifactRef; fleet?: PartStats[] },
    ): Promise<ArtifactRef> {
      const { config, iteration } = input;
      const { store, loc, existing } = await openStage(config, iteration, 'judgments');
      if (existing) return existing;
      const writer = new StageWriter<Judgment>(store, {
        ...loc,
        recordType: 'Judgment',
        producer: PRODUCER,
        configHash: configHash(config.judge),
      });
      const parsing = new ParseStats();
      let all = 0;
      let judged = 0;
      async function* counted(): AsyncGenerator<Candidate[]> {
        for await (const batch of readStageShards(store, input.candidates, Candidate)) {
          all += batch.length;
          const kept = batch.filter(isJudged);
          judged += kept.length;
          yield kept;
        }
      }
      const gen = await generateStream(config, loc, input.model, {
        batches: counted(),
        total: input.candidates.count,
        request: (c: Candidate) => judgeRequest(config, iteration, c),
        onOutputs: async (batch, outputs) => {
          const judgments: Judgment[] = [];
          batch.forEach((c, i) => {
            outputs[i]!.outputs.forEach((o, sample) => {
              judgments.push({
                id: recordId(config.run, iteration, 'judgment', c.id, sample),
                candidateId: c.id,
                promptId: c.promptId,
                sample,
                text: o.text,
                ...scoreOf(o.text, c.text),
              });
            });
          });
          parsing.add(judgments);
          await writer.add(judgments);
        },
      });
      return publishWriter(writer, loc, {
        ...parsing.stats(),
        ...generationStats(gen, input.fleet),
        emptyCandidates: all - judged,
      } satisfies JudgmentStageStats);
    },
    /**
     * One part of the judgments stage on a fleet: the shards of its range of judge requests (one
     * per non-empty candidate), committed exactly as judgeCandidates commits them.
     */
    async judgeCandidatesPart(
      input: IterationStageInput & { model: ModelRef; candidates: ArtifactRef; part: number; parts: number },
    ): Promise<PartStats> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const judgedOnly = async function* (): AsyncGenerator<Candidate[]> {
        for await (const batch of readStageShards(store, input.candidates, Candidate)) yield batch.filter(isJudged);
      };
      return generatePart(config, { run: config.run, iteration, stage: 'judgments' }, input, {
        // judge requests (one per non-empty candidate): only a pass over the candidates counts them
        items: async () => {
          let n = 0;
          for await (const batch of judgedOnly()) n += batch.length;
          return n;
        },
        batches: judgedOnly,
        request: (c: Candidate) => judgeRequest(config, iteration, c),
      });
    },
  };
}

function judgeRequest(config: RunConfig, iteration: number, c: Candidate): GenerateRequest {
  const id = recordId(config.run, iteration, 'judge', c.id);
  const { samples, sampling } = config.judge;
  return sampledRequest(config, id, judgePrompt(c.prompt, c.text), samples, sampling);
}

/** An empty response (or one the engine skipped) has nothing to judge: counted, not judged. */
function isJudged(c: Candidate): boolean {
  return c.text.trim() !== '';
}

/** The verdict of a judgment of `response`; a failure's parseError starts with its reason (core/verdict.ts). */
export function scoreOf(text: string, response: string | undefined): { score: number | null; parseError?: string } {
  const parsed = parseJudgeScore(text, response);
  return parsed.score === null ? { score: null, parseError: parsed.error } : { score: parsed.score };
}

/** The reason of a parse failure: the first word of its parseError (`out_of_range: Score: 7` -> `out_of_range`). */
function failureReason(parseError: string | undefined): string {
  if (!parseError) return 'unknown';
  const colon = parseError.indexOf(':');
  return colon > 0 ? parseError.slice(0, colon) : parseError;
}

/** Parse counts of judgments, accumulated batch by batch. */
export class ParseStats {
  private judgments = 0;
  private parsed = 0;
  private readonly parseFailures: Record<string, number> = {};

  add(judgments: readonly { score: number | null; parseError?: string }[]): void {
    for (const j of judgments) {
      this.judgments++;
      if (j.score !== null) this.parsed++;
      else {
        const reason = failureReason(j.parseError);
        this.parseFailures[reason] = (this.parseFailures[reason] ?? 0) + 1;
      }
    }
  }

  stats() {
    return {
      judgments: this.judgments,
      parsed: this.parsed,
      parseRate: this.judgments ? this.parsed / this.judgments : 0,
      parseFailures: this.parseFailures,
    };
  }
}

export function parseStats(judgments: readonly { score: number | null; parseError?: string }[]) {
  const p = new ParseStats();
  p.add(judgments);
  return p.stats();
}
