/**
 * The iteration's summary (JSON + Markdown) next to its artifacts: prompts, candidates,
 * judge parse rates, pairs, DPO metrics, skips, and the evaluation with its gate decision.
 */
import { decideGate, RewardWatchAccumulator } from '../core/eval';
import { PairSummaryAccumulator } from '../core/pairs';
import { type ArtifactRef, Candidate, type ModelRef, Judgment, PreferencePair } from '../core/schemas';
import {
  CandidateStageStats,
  CandidateSummary,
  type EvaluationSummary,
  type HeadToHead,
  IterationSummary,
  type JudgeQuality,
  JudgmentStageStats,
  JudgmentSummary,
  PairStageStats,
  PromptStageStats,
  ResponseLengths,
  renderIterationSummaryMarkdown,
} from '../core/stats';
import { readStageManifest, readStageShards } from '../store/artifacts';
import { summaryKey } from '../store/keys';
import type { IterationStageInput } from './common';
import type { StageContext } from './context';

export function summaryActivities(ctx: StageContext) {
  const { deps } = ctx;
  return {
    /** Writes the iteration's summary (JSON + Markdown) next to its artifacts and shows it. */
    async summarizeIteration(
      input: IterationStageInput & {
        modelIn: ModelRef;
        modelOut: ModelRef;
        prompts: ArtifactRef;
        candidates: ArtifactRef;
        judgments: ArtifactRef;
        pairs: ArtifactRef;
        dpoMetrics: Record<string, unknown>;
        timings: Record<string, number>;
        /** the evaluation's results (absent: no evaluation configured) */
        evaluation?: {
          judgeQuality: JudgeQuality[];
          /** M_t's judge quality, for the gate's accuracy-drop check */
          previousJudgeQuality: JudgeQuality | null;
          headToHead: HeadToHead[];
          /** held-out responses of the models compared (M_{t+1} first) */
          responses: ArtifactRef[];
        };
      },
    ): Promise<IterationSummary> {
      const { config, iteration } = input;
      const store = deps.storeFor(config);
      const promptsM = await readStageManifest(store, input.prompts);
      const pairsM = await readStageManifest(store, input.pairs);
      const candidates = new CandidateSummary();
      const watch = new RewardWatchAccumulator();
      for await (const batch of readStageShards(store, input.candidates, Candidate)) {
        candidates.add(batch);
        watch.addCandidates(batch);
      }
      const judgments = new JudgmentSummary();
      for await (const batch of readStageShards(store, input.judgments, Judgment)) {
        judgments.add(batch);
        watch.addJudgments(batch);
      }
      const pairs = new PairSummaryAccumulator();
      for await (const batch of readStageShards(store, input.pairs, PreferencePair)) {
        pairs.add(batch);
        watch.addPairs(batch);
      }
      let evaluation: EvaluationSummary | null = null;
      if (input.evaluation && config.evaluation) {
        const e = input.evaluation;
        // each evaluation-responses stage carries its lengths in its manifest: no need to read its records again
        const responses = [];
        for (const ref of e.responses) responses.push(ResponseLengths.parse((await readStageManifest(store, ref)).stats.lengths));
        const measured = {
          model: input.modelOut.modelId,
          previousModel: input.modelIn.modelId,
          headToHead: e.headToHead,
          judgeQuality: e.judgeQuality,
          previousJudgeQuality: e.previousJudgeQuality,
          responses,
          watch: watch.watch(),
        };
        evaluation = {
          model: input.modelOut.modelId,
          judgeQuality: e.judgeQuality,
          headToHead: e.headToHead,
          responses,
          watch: measured.watch,
          gate: config.evaluation.gate ? decideGate(config.evaluation.gate, measured) : null,
        };
      }
      const promptStats = PromptStageStats.parse(promptsM.stats);
      const dropped = Object.fromEntries(Object.entries(promptStats.filters).filter(([k]) => k !== 'kept'));
      const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
      const meanOf = (key: string): unknown => (input.dpoMetrics.mean as Record<string, unknown> | undefined)?.[key];
      const summary: IterationSummary = {
        run: config.run,
        iteration,
        modelIn: input.modelIn.modelId,
        modelOut: input.modelOut.modelId,
        prompts: {
          requested: promptStats.requested,
          generated: promptStats.generated,
          kept: promptsM.count,
          dropped,
        },
        candidates: candidates.summary(),
        judge: judgments.summary(),
        pairs: { ...pairs.summary(), dropped: PairStageStats.parse(pairsM.stats).dropped },
        dpo: {
          loss: num(input.dpoMetrics.train_loss ?? input.dpoMetrics.loss),
          // means over all logged steps of the DPO run
          rewardAccuracy: num(meanOf('rewards/accuracies')),
          rewardMargin: num(meanOf('rewards/margins')),
          steps: num(input.dpoMetrics.steps),
        },
        timings: input.timings,
        skipped: skipCounts(
          promptStats,
          CandidateStageStats.parse((await readStageManifest(store, input.candidates)).stats),
          JudgmentStageStats.parse((await readStageManifest(store, input.judgments)).stats),
        ),
        evaluation,
      };
      await store.putBytes(summaryKey(config.run, iteration, 'json'), JSON.stringify(summary, null, 2) + '\n');
      const md = renderIterationSummaryMarkdown(summary);
      await store.putBytes(summaryKey(config.run, iteration, 'md'), md);
      deps.reporter?.({
        run: config.run,
        iteration,
        stage: 'summary',
        done: 1,
        total: 1,
        tokens: 0,
        elapsedS: 0,
        note: store.uri(summaryKey(config.run, iteration, 'md')),
      });
      return summary;
    },
  };
}

/** Requests and records left out along the iteration, by reason (only reasons that occurred). */
function skipCounts(prompts: PromptStageStats, candidates: CandidateStageStats, judgments: JudgmentStageStats): Record<string, number> {
  const out: Record<string, number> = {
    'self-instruct requests over the context': prompts.skipped,
    'prompts over the context': candidates.skipped,
    'empty candidates (not judged)': judgments.emptyCandidates,
    'judge requests over the context': judgments.skipped,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v > 0));
}
