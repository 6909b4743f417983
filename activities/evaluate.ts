/**
 * Evaluation on held-out data: each model's responses, each model as a judge of human
 * rankings, and head-to-head comparisons judged by `evaluation.judge` in both orders.
 */
import * as path from 'node:path';
import { headToHead, judgeQuality, pairwiseJudgePrompt, parsePairwiseVerdict, responseLengths, type ScoredSet } from '../core/eval';
import { configHash, recordId } from '../core/ids';
import { judgePrompt } from '../core/rubric';
import {
  type ArtifactRef,
  EftJudgment,
  type EvalJudgeConfig,
  EvalPrompt,
  EvalResponse,
  type ModelRef,
  type ModelSource,
  PairwiseVerdict,
  RankedSet,
  type RunConfig,
} from '../core/schemas';
import { HeadToHead, JudgeQuality } from '../core/stats';
import type { ComputeBackend, GenerateRequest } from '../backends/compute';
import { OpenAICompute } from '../backends/openai-compute';
import { readStage, readStageManifest } from '../store/artifacts';
import { invalid, type IterationStageInput, PRODUCER, publish, sampledRequest, where } from './common';
import type { StageContext } from './context';
import { shardStats } from './generation';
import { parseStats, scoreOf } from './judge';

export function evaluationActivities(ctx: StageContext) {
  const { deps, openStage, generate } = ctx;
  const judgeEngines = new Map<string, OpenAICompute>();
  /** The head-to-head judge: a local model through the local engine, or an OpenAI-compatible endpoint. */
  function judgeEngine(
    judge: EvalJudgeConfig,
    judgeModel: ModelRef | null,
    config: RunConfig,
    iteration: number,
  ): { engine: { backend: ComputeBackend; remote: boolean }; judgeRef: ModelRef; label: string } {
    if (judge.kind === 'model') {
      if (!judgeModel)
        throw invalid(
          `${where(config, iteration, 'eval-head-to-head')}: evaluation.judge is a model but none was imported`,
          'InvalidConfig',
        );
      return { engine: { backend: deps.compute, remote: false }, judgeRef: judgeModel, label: `model:${describeSource(judge.model)}` };
    }
    const key = JSON.stringify(judge);
    let engine = judgeEngines.get(key);
    if (!engine) {
      engine = new OpenAICompute({
        baseUrl: judge.baseUrl,
        model: judge.model,
        ...(judge.apiKeyEnv ? { apiKeyEnv: judge.apiKeyEnv } : {}),
        concurrency: judge.concurrency,
        timeoutSeconds: judge.timeoutSeconds,
        maxRetries: judge.maxRetries,
        wrapped: deps.compute,
      });
      judgeEngines.set(key, engine);
    }
    // the endpoint serves its own model: the reference only names it
    const judgeRef: ModelRef = { modelId: judge.model, lineage: 'external', key: '', uri: judge.baseUrl, sha256: '' };
    return { engine: { backend: engine, remote: true }, judgeRef, label: `openai:${judge.model}@${judge.baseUrl}` };
  }

  return {
    /**
     * Evaluation: a model's responses to the held-out prompts (one each, `evaluation.responses`
     * sampling). Kept once per model (a run-level stage named after it), so M_t's responses from
     * the iteration that trained it are reused when M_{t+1} is compared with it.
     */
    async evalResponses(input: { config: RunConfig; model: ModelRef; prompts: ArtifactRef }): Promise<ArtifactRef> {
      const { config, model } = input;
      const cfg = evaluationOf(config, 'eval-responses');
      const { store, loc, existing } = await openStage(config, 0, `eval-responses-${model.modelId}`);
      if (existing) return existing;
      const prompts = await readStage(store, input.prompts, EvalPrompt);
      const requests = prompts.map((p): GenerateRequest => {
        const id = recordId(config.run, 'eval-response', model.modelId, p.id);
        return sampledRequest(config, id, p.instruction, 1, cfg.responses);
      });
      const gen = await generate(config, loc, model, requests, 'all', `evaluation responses ${model.modelId}`);
      const records: EvalResponse[] = prompts.map((p, i) => {
        const out = gen.outputs.get(requests[i]!.id)!;
        const o = out.outputs[0];
        return {
          id: recordId(requests[i]!.id, 0),
          promptId: p.id,
          model: model.modelId,
          text: o?.text ?? '',
          tokens: o?.tokens ?? 0,
          finishReason: o?.finish_reason ?? 'stop',
          ...(out.skipped !== undefined ? { skipped: out.skipped } : {}),
        };
      });
      return publish(store, {
        ...loc,
        recordType: 'EvalResponse',
        records,
        producer: PRODUCER,
        configHash: configHash(cfg.responses),
        stats: { tokens: gen.tokens, seconds: gen.seconds, ...shardStats(gen), lengths: responseLengths(model.modelId, records) },
      });
    },
    /**
     * Evaluation: a model as a judge of the held-out human rankings. Each reply is judged
     * `judgeSamples` times with the run's rubric; the mean parsed score ranks the replies,
     * compared with the human ranks. Kept once per model.
     */
    async evalJudgeQuality(input: { config: RunConfig; model: ModelRef; ranked: ArtifactRef }): Promise<JudgeQuality> {
      const { config, model } = input;
      const cfg = evaluationOf(config, 'eval-judge');
      const { store, loc, existing } = await openStage(config, 0, `eval-judge-${model.modelId}`);
      if (existing) return JudgeQuality.parse((await readStageManifest(store, existing)).stats.judgeQuality);
      const sets = await readStage(store, input.ranked, RankedSet);
      const requests: GenerateRequest[] = [];
      for (const set of sets) {
        set.replies.forEach((reply, k) => {
          const id = recordId(config.run, 'eval-judge', model.modelId, set.id, k);
          requests.push(sampledRequest(config, id, judgePrompt(set.prompt, reply.text), cfg.judgeSamples, cfg.judgeSampling));
        });
      }
      const gen = await generate(config, loc, model, requests, 'all', `evaluation judge ${model.modelId}`);
      const judgments: EftJudgment[] = [];
      const scored: ScoredSet[] = [];
      let r = 0;
      for (const set of sets) {
        const scores = set.replies.map((_, k) => {
          const req = requests[r++]!;
          const parsed: number[] = [];
          gen.outputs.get(req.id)!.outputs.forEach((o, sample) => {
            const j = scoreOf(o.text, set.replies[k]!.text);
            judgments.push({ id: recordId(req.id, sample), setId: set.id, replyIndex: k, sample, text: o.text, ...j });
            if (j.score !== null) parsed.push(j.score);
          });
          return parsed.length === 0 ? null : parsed.reduce((a, b) => a + b, 0) / parsed.length;
        });
        scored.push({ human: set.replies.map((x) => x.rank), scores });
      }
      const quality = judgeQuality(model.modelId, scored, {
        judgments: judgments.length,
        parsed: judgments.filter((j) => j.score !== null).length,
      });
      await publish(store, {
        ...loc,
        recordType: 'EftJudgment',
        records: judgments,
        producer: PRODUCER,
        configHash: configHash({ s: cfg.judgeSamples, p: cfg.judgeSampling }),
        stats: {
          judgeQuality: quality,
          parseFailures: parseStats(judgments).parseFailures,
          tokens: gen.tokens,
          seconds: gen.seconds,
          ...shardStats(gen),
        },
      });
      return quality;
    },
    /**
     * Evaluation: M_{t+1}'s responses against an opponent's (a model's, or the prompts' reference
     * outputs) on the held-out prompts, judged by `evaluation.judge` in both orders.
     */
    async evalHeadToHead(
      input: IterationStageInput & {
        model: ModelRef;
        responses: ArtifactRef;
        prompts: ArtifactRef;
        /** a model id with its responses, or the reference outputs */
        opponent: { id: string; responses: ArtifactRef } | { id: 'reference' };
        /** the judge when `evaluation.judge.kind` is "model" */
        judgeModel: ModelRef | null;
      },
    ): Promise<HeadToHead> {
      const { config, iteration, model, opponent } = input;
      const cfg = evaluationOf(config, 'eval-head-to-head');
      const judgeCfg = cfg.judge;
      if (!judgeCfg) throw invalid(`${where(config, iteration, 'eval-head-to-head')}: evaluation.judge is not configured`, 'InvalidConfig');
      const { store, loc, existing } = await openStage(config, iteration, `eval-h2h-${opponent.id}`);
      if (existing) return HeadToHead.parse((await readStageManifest(store, existing)).stats.headToHead);
      const prompts = await readStage(store, input.prompts, EvalPrompt);
      const mine = new Map((await readStage(store, input.responses, EvalResponse)).map((r) => [r.promptId, r.text]));
      const theirs = new Map<string, string>();
      if ('responses' in opponent) for (const r of await readStage(store, opponent.responses, EvalResponse)) theirs.set(r.promptId, r.text);
      else for (const p of prompts) if (p.reference !== undefined) theirs.set(p.id, p.reference);
      const compared = prompts.filter((p) => mine.has(p.id) && theirs.has(p.id));
      if (compared.length === 0) {
        throw invalid(
          `${where(config, iteration, 'eval-head-to-head')}: no held-out prompt has both a response of ${model.modelId} and one of ${opponent.id}${opponent.id === 'reference' ? ' (the evaluation prompts carry no reference outputs: drop "reference" from evaluation.opponents)' : ''}`,
          'InvalidData',
        );
      }
      const requests: GenerateRequest[] = [];
      for (const p of compared) {
        const a = mine.get(p.id)!;
        const b = theirs.get(p.id)!;
        for (const order of ['model-first', 'model-second'] as const) {
          const id = recordId(config.run, iteration, 'eval-h2h', opponent.id, p.id, order);
          const content =
            order === 'model-first'
              ? pairwiseJudgePrompt(p.instruction, a, b, cfg.pairwiseMaxChars)
              : pairwiseJudgePrompt(p.instruction, b, a, cfg.pairwiseMaxChars);
          requests.push(sampledRequest(config, id, content, 1, cfg.pairwise));
        }
      }
      const { engine, judgeRef, label } = judgeEngine(judgeCfg, input.judgeModel, config, iteration);
      const gen = await generate(config, loc, judgeRef, requests, 'all', `head-to-head vs ${opponent.id}`, engine);
      const verdicts: PairwiseVerdict[] = [];
      const byPrompt: { modelFirst: 'A' | 'B' | null; modelSecond: 'A' | 'B' | null }[] = [];
      compared.forEach((p, k) => {
        const pair = [0, 1].map((o) => {
          const req = requests[2 * k + o]!;
          const text = gen.outputs.get(req.id)!.outputs[0]?.text ?? '';
          const verdict = parsePairwiseVerdict(text);
          verdicts.push({ id: recordId(req.id, 0), promptId: p.id, order: o === 0 ? 'model-first' : 'model-second', text, verdict });
          return verdict;
        });
        byPrompt.push({ modelFirst: pair[0]!, modelSecond: pair[1]! });
      });
      const result = headToHead(model.modelId, opponent.id, label, byPrompt);
      await publish(store, {
        ...loc,
        recordType: 'PairwiseVerdict',
        records: verdicts,
        producer: PRODUCER,
        configHash: configHash({ j: judgeCfg, p: cfg.pairwise, m: cfg.pairwiseMaxChars }),
        stats: { headToHead: result, tokens: gen.tokens, seconds: gen.seconds, ...shardStats(gen) },
      });
      return result;
    },
  };
}

/** The run's evaluation settings, for an evaluation activity (a run without them has none to run). */
function evaluationOf(config: RunConfig, stage: string): NonNullable<RunConfig['evaluation']> {
  if (!config.evaluation) throw invalid(`run "${config.run}", stage ${stage}: the run config has no "evaluation" section`, 'InvalidConfig');
  return config.evaluation;
}

function describeSource(source: ModelSource): string {
  if ('packaged' in source) return source.packaged;
  if ('promoted' in source) return `promoted:${source.promoted}`;
  return path.basename(source.path);
}
