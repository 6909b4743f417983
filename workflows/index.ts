/**
 * The self-rewarding run as Temporal workflows.
 *
 *   srlmRun:        validate -> import M0 -> SFT baseline -> EFT -> SFT M1 -> iterations
 *   srlmIteration:  prompts -> candidates -> judgments -> pairs -> DPO -> summary
 *
 * Workflows carry artifact references only; every stage is an idempotent activity, so
 * starting a run again over the same store resumes it at its first incomplete stage.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  ChildWorkflowCancellationType,
  condition,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  ActivityFailure,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ArtifactRef, DurabilityConfig, RunConfig } from '../core/schemas';
import type { HeadToHead, IterationSummary, JudgeQuality } from '../core/stats';
import {
  iterationProgressQuery,
  iterationWorkflowId,
  pauseSignal,
  progressQuery,
  resumeSignal,
  stageProgressSignal,
  type LiveStage,
  AFFINITY_PATCH,
  EVALUATION_PATCH,
  FLEET_PATCH,
  PROMOTE_PATCH,
  scheduledRunName,
  SEARCH_ATTRIBUTES_PATCH,
  type IterationProgress,
  type ModelRef,
  type PartStats,
  type RunProgress,
  type RunResult,
  TASK_QUEUES,
} from './contract';

export * from './contract';

const NON_RETRYABLE = ['InvalidConfig', 'InvalidData', 'InvalidInput', 'InvalidComputeInput', 'NoPreferencePairs', 'NoPrompts'];

// Light CPU stages: quick, retried a few times.
const cpu = proxyActivities<Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '30 minutes',
  retry: { maximumAttempts: 5, initialInterval: '2s', backoffCoefficient: 2, nonRetryableErrorTypes: NON_RETRYABLE },
});

/**
 * Sampling/judging and training: long and heartbeating, so a lost worker is noticed within
 * the heartbeat timeout and the stage continues elsewhere from its committed shards or
 * checkpoints. Cancellation waits until the activity has stopped its compute process.
 */
function computeActivities(d: DurabilityConfig) {
  const common = {
    heartbeatTimeout: d.heartbeatTimeoutSeconds * 1000,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  };
  const retry = (maxInterval: number) => ({
    maximumAttempts: d.maximumAttempts,
    initialInterval: d.retryInitialSeconds * 1000,
    backoffCoefficient: 2,
    maximumInterval: Math.max(d.retryInitialSeconds * 1000, maxInterval),
    nonRetryableErrorTypes: NON_RETRYABLE,
  });
  const generationOptions = { ...common, startToCloseTimeout: '24 hours' as const, retry: retry(10 * 60_000) };
  return {
    generation: proxyActivities<Activities>({ ...generationOptions, taskQueue: TASK_QUEUES.generation }),
    /** the generation activities on one worker's own queue, given up when not started within `waitMs` */
    pinned: (queue: string, waitMs: number) =>
      proxyActivities<Activities>({ ...generationOptions, taskQueue: queue, scheduleToStartTimeout: waitMs }),
    training: proxyActivities<Activities>({
      ...common,
      taskQueue: TASK_QUEUES.training,
      startToCloseTimeout: '72 hours',
      retry: retry(30 * 60_000),
    }),
  };
}

export interface RunInput {
  /** the run config as written by the user; validated by the first activity */
  config: unknown;
  /** the namespace has srlm's search attributes (SEARCH_ATTRIBUTES): keep them up to date */
  searchAttributes?: boolean;
  /** started by a Schedule: the run is named after this execution (scheduledRunName) */
  scheduled?: boolean;
}

/** Upserts srlm's search attributes when enabled; versioned with patched() (added after the first release). */
function searchAttributeUpdater(enabled: boolean | undefined): (attrs: Record<string, string | number>) => void {
  const on = enabled === true && patched(SEARCH_ATTRIBUTES_PATCH);
  return (attrs) => {
    if (on) upsertSearchAttributes(Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, [v]])) as never);
  };
}

export async function srlmRun(input: RunInput): Promise<RunResult> {
  const scheduled = input.scheduled ? { runName: scheduledRunName(workflowInfo().workflowId) } : undefined;
  const progress: RunProgress = {
    run:
      scheduled?.runName ??
      (typeof (input.config as { run?: unknown })?.run === 'string' ? (input.config as { run: string }).run : workflowInfo().workflowId),
    status: 'starting',
    iteration: 0,
    iterations: 0,
    stage: 'validate',
    stagesDone: [],
    models: [],
    summaries: [],
  };
  setHandler(progressQuery, () => progress);
  // pause/resume: applied between stages here, and forwarded to the running iteration
  let child: string | null = null;
  const forward = (send: (id: string) => Promise<void>): void => {
    if (child) void send(child).catch(() => undefined); // the iteration may have just ended
  };
  setHandler(pauseSignal, (opts) => {
    progress.paused = { since: new Date().toISOString(), reason: opts?.reason ?? 'paused by an operator' };
    if (progress.status === 'running') progress.status = 'paused';
    forward((id) => getExternalWorkflowHandle(id).signal(pauseSignal, opts));
  });
  setHandler(resumeSignal, () => {
    delete progress.paused;
    if (progress.status === 'paused') progress.status = 'running';
    forward((id) => getExternalWorkflowHandle(id).signal(resumeSignal));
  });
  setHandler(stageProgressSignal, (live) => {
    if (isLiveStage(live)) progress.live = live;
  });

  const searchAttributes = searchAttributeUpdater(input.searchAttributes);
  const step = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    await waitWhilePaused(progress);
    progress.stage = stage;
    delete progress.live;
    searchAttributes({ SrlmRun: progress.run, SrlmStage: stage, SrlmIteration: progress.iteration });
    log.info('stage started', { run: progress.run, iteration: progress.iteration, stage });
    const out = await fn();
    progress.stagesDone.push(stage);
    delete progress.live;
    return out;
  };
  const models: RunResult['models'] = [];
  const addModel = (name: string, model: ModelRef): void => {
    models.push({ name, model });
    progress.models.push({ name, modelId: model.modelId, uri: model.uri });
    searchAttributes({ SrlmModel: model.modelId });
  };

  try {
    const prepared = await step('validate', () => (scheduled ? cpu.prepareRun(input.config, scheduled) : cpu.prepareRun(input.config)));
    const config: RunConfig = prepared.config;
    progress.configHash = prepared.configHash;
    progress.status = progress.paused ? 'paused' : 'running';
    progress.iterations = config.iterations;
    const { generation, training } = computeActivities(config.durability);

    const m0 = await step('import-model', () => training.importModel({ config, source: config.baseModel, name: 'm0' }));
    addModel('M0', m0);
    const promptWriter = config.prompts.model
      ? await step('import-prompt-model', () => training.importModel({ config, source: config.prompts.model!, name: 'prompt-writer' }))
      : null;

    const eft: ArtifactRef[] = [];
    if (prepared.seedRanked) {
      const baseline = await step('sft-baseline', () =>
        training.trainSft({ config, base: m0, ift: prepared.seedIft, eft: [], name: 'sft-baseline' }),
      );
      addModel('SFT baseline', baseline.model);
      const ranked = prepared.seedRanked;
      const eftJudgments = await step('eft-judgments', () => generation.judgeRankedReplies({ config, judge: baseline.model, ranked }));
      eft.push(await step('eft', () => cpu.buildEftData({ config, ranked, judgments: eftJudgments })));
    }
    if (prepared.seedEft) eft.push(prepared.seedEft);
    const m1 = await step('sft-m1', () => training.trainSft({ config, base: m0, ift: prepared.seedIft, eft, name: 'm1' }));
    addModel('M1', m1.model);

    // evaluation (versioned: runs recorded before it replay without it)
    const evaluation = config.evaluation !== undefined && patched(EVALUATION_PATCH) ? config.evaluation : undefined;
    let evalInput: IterationInput['evaluation'];
    if (evaluation) {
      const judge = evaluation.judge;
      const judgeModel =
        judge?.kind === 'model'
          ? await step('import-eval-judge', () => training.importModel({ config, source: judge.model, name: 'eval-judge' }))
          : null;
      const baseline = models.find((m) => m.name === 'SFT baseline')?.model ?? null;
      evalInput = { prompts: prepared.evalPrompts ?? null, ranked: prepared.evalRanked ?? null, judgeModel, baseline };
    }

    let current = m1.model;
    // the newest model that passed its gate (M1, the run's starting model, is accepted as it is)
    let accepted = m1.model;
    const earlier: ArtifactRef[] = [];
    const summaries: IterationSummary[] = [];
    for (let t = 1; t <= config.iterations; t++) {
      progress.iteration = t;
      const out = await step(`iteration ${t}`, () => {
        child = iterationWorkflowId(config.run, t);
        return executeChild(srlmIteration, {
          workflowId: iterationWorkflowId(config.run, t),
          taskQueue: TASK_QUEUES.orchestration,
          cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
          args: [
            {
              config,
              iteration: t,
              model: current,
              promptModel: promptWriter,
              seedIft: prepared.seedIft,
              earlierPrompts: [...earlier],
              ...(progress.paused ? { paused: progress.paused } : {}),
              ...(input.searchAttributes ? { searchAttributes: true } : {}),
              ...(evalInput ? { evaluation: evalInput } : {}),
            },
          ],
        });
      });
      child = null;
      current = out.modelOut;
      earlier.push(out.prompts);
      summaries.push(out.summary);
      progress.summaries.push(out.summary);
      addModel(`M${t + 1}`, out.modelOut);
      const gate = out.summary.evaluation?.gate;
      if (!gate || gate.passed) {
        accepted = out.modelOut;
        if (gate)
          (progress.gates ??= []).push({ iteration: t, model: out.modelOut.modelId, passed: true, onFail: gate.onFail, failed: [] });
        continue;
      }
      const failed = gate.checks.filter((c) => !c.passed).map((c) => c.message);
      (progress.gates ??= []).push({ iteration: t, model: out.modelOut.modelId, passed: false, onFail: gate.onFail, failed });
      log.warn('promotion gate failed', { run: config.run, iteration: t, model: out.modelOut.modelId, onFail: gate.onFail, failed });
      if (gate.onFail === 'stop') break;
      if (gate.onFail === 'rollback') current = accepted;
    }
    let promotedId: string | undefined;
    if (patched(PROMOTE_PATCH)) {
      const model = evaluation ? accepted : current;
      const reason =
        evaluation && accepted.modelId !== current.modelId
          ? `${current.modelId} did not pass its promotion gate; ${accepted.modelId} is the newest model that did`
          : undefined;
      const promoted = await step('promote', () => cpu.promoteModel({ config, model, ...(reason ? { reason } : {}) }));
      progress.promoted = promoted.modelId;
      promotedId = promoted.modelId;
    }
    progress.status = 'completed';
    progress.stage = 'done';
    searchAttributes({ SrlmStage: 'done' });
    return { run: config.run, models, summaries, finalModel: current, ...(promotedId ? { promoted: promotedId } : {}) };
  } catch (err) {
    if (isCancellation(err)) {
      // an operator's cancel: the activities have stopped their compute processes by now
      progress.status = 'cancelled';
      throw err;
    }
    // Surface the innermost cause (the activity's own message) at the top of the failure,
    // where `temporal workflow show`, the Web UI and clients look first.
    const root = rootCause(err);
    progress.status = 'failed';
    progress.error = `stage ${progress.stage}: ${root.message}`;
    throw ApplicationFailure.create({
      message: `run "${progress.run}" failed at ${progress.error}`,
      type: root.type,
      nonRetryable: true,
      cause: err instanceof Error ? err : undefined,
    });
  }
}

function rootCause(err: unknown): { message: string; type: string } {
  let cur: unknown = err;
  let best = { message: err instanceof Error ? err.message : String(err), type: 'RunFailed' };
  while (cur instanceof Error) {
    const type = (cur as { type?: unknown }).type;
    if (cur.message) best = { message: cur.message, type: typeof type === 'string' && type ? type : best.type };
    cur = (cur as { cause?: unknown }).cause;
  }
  return best;
}

/** Resolves at once unless a pause is in effect; then when the resume signal arrives. */
/** A stage progress signal carries at least a stage label and counts; anything else is ignored. */
function isLiveStage(v: unknown): v is LiveStage {
  const l = v as Partial<LiveStage> | null;
  return !!l && typeof l.stage === 'string' && typeof l.done === 'number' && typeof l.total === 'number';
}

async function waitWhilePaused(progress: { paused?: unknown }): Promise<void> {
  if (progress.paused) await condition(() => !progress.paused);
}

/**
 * A generation activity's result without `ranOn` (the queue of the worker that ran it with
 * the model resident, see compute.resident), which is handed to `seen` when present.
 */
function placed<T extends object>(result: T & { ranOn?: string }, seen?: (queue: string) => void): T {
  if (!('ranOn' in result)) return result;
  const { ranOn, ...rest } = result;
  if (ranOn) seen?.(ranOn);
  return rest as T;
}

/**
 * A stage on a fleet: its parts as activities at once on the generation queue (any live worker
 * takes one, up to its concurrency; a lost one is retried on another), then one activity that
 * assembles the stage from the shards they committed.
 */
async function fanOut<T>(parts: number, part: (k: number) => Promise<PartStats>, assemble: (stats: PartStats[]) => Promise<T>): Promise<T> {
  const stats = await Promise.all(Array.from({ length: parts }, (_, k) => part(k)));
  return assemble(stats);
}

export interface IterationInput {
  config: RunConfig;
  iteration: number;
  model: ModelRef;
  /** a fixed prompt-writing model; null: the iteration's model writes the prompts */
  promptModel: ModelRef | null;
  seedIft: ArtifactRef;
  earlierPrompts: ArtifactRef[];
  /** the run was paused when this iteration started */
  paused?: { since: string; reason: string };
  /** keep srlm's search attributes up to date */
  searchAttributes?: boolean;
  /** evaluate the iteration's model (runs with an `evaluation` section) */
  evaluation?: {
    prompts: ArtifactRef | null;
    ranked: ArtifactRef | null;
    /** the head-to-head judge, when it is a local model */
    judgeModel: ModelRef | null;
    /** the SFT baseline, for the "sft-baseline" opponent */
    baseline: ModelRef | null;
  };
}

export interface IterationResult {
  modelOut: ModelRef;
  prompts: ArtifactRef;
  pairs: ArtifactRef;
  summary: IterationSummary;
}

export async function srlmIteration(input: IterationInput): Promise<IterationResult> {
  const { config, iteration, model } = input;
  const progress: IterationProgress = {
    run: config.run,
    iteration,
    stage: 'prompts',
    stagesDone: [],
    ...(input.paused ? { paused: input.paused } : {}),
  };
  setHandler(iterationProgressQuery, () => progress);
  setHandler(pauseSignal, (opts) => {
    progress.paused = { since: new Date().toISOString(), reason: opts?.reason ?? 'paused by an operator' };
  });
  setHandler(resumeSignal, () => {
    delete progress.paused;
  });
  setHandler(stageProgressSignal, (live) => {
    if (isLiveStage(live)) progress.live = live;
  });
  const timings: Record<string, number> = {};
  const { generation, training, pinned } = computeActivities(config.durability);
  const searchAttributes = searchAttributeUpdater(input.searchAttributes);
  // resident models (versioned: asked only when configured): a model's next generation activity
  // goes to the worker that holds it, and to the shared queue when that worker does not take it in time
  const affinityMs = config.compute.resident && patched(AFFINITY_PATCH) ? config.compute.resident.affinitySeconds * 1000 : 0;
  const onHost = async <T>(host: string | undefined, what: string, call: (acts: typeof generation) => Promise<T>): Promise<T> => {
    if (!affinityMs || !host) return call(generation);
    try {
      return await call(pinned(host, affinityMs));
    } catch (err) {
      if (!(err instanceof ActivityFailure && err.cause instanceof TimeoutFailure && err.cause.timeoutType === 'SCHEDULE_TO_START'))
        throw err;
      log.warn('worker holding the model did not take the activity in time; using the shared generation queue', {
        run: config.run,
        iteration,
        stage: what,
        queue: host,
      });
      return call(generation);
    }
  };
  // a generation fleet (versioned: asked only when configured, so other histories replay unchanged)
  const parts = (config.compute.fleet?.parts ?? 1) > 1 && patched(FLEET_PATCH) ? config.compute.fleet!.parts : 1;
  // independent generation activities (the evaluation's models and opponents): at once on a fleet, else one after another
  const each = async <T>(jobs: (() => Promise<T>)[]): Promise<T[]> => {
    if (parts > 1) return Promise.all(jobs.map((job) => job()));
    const out: T[] = [];
    for (const job of jobs) out.push(await job());
    return out;
  };
  const step = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    await waitWhilePaused(progress);
    progress.stage = stage;
    delete progress.live;
    searchAttributes({ SrlmRun: config.run, SrlmIteration: iteration, SrlmStage: stage });
    log.info('stage started', { run: config.run, iteration, stage });
    const started = Date.now();
    const out = await fn();
    timings[stage] = (Date.now() - started) / 1000;
    progress.stagesDone.push(stage);
    delete progress.live;
    return out;
  };

  // where the iteration's model is resident (the worker queue a generation activity ran on), per fleet part
  let holder: string | undefined;
  const partHolders: (string | undefined)[] = [];
  const prompts = placed(
    await step('prompts', () =>
      generation.generatePrompts({
        config,
        iteration,
        model: input.promptModel ?? model,
        seedIft: input.seedIft,
        earlier: input.earlierPrompts,
      }),
    ),
    (q) => (holder = input.promptModel ? holder : q),
  );
  const candidates = placed(
    await step('candidates', () =>
      parts > 1
        ? fanOut(
            parts,
            async (part) =>
              placed(
                await generation.generateCandidatesPart({ config, iteration, model, prompts, part, parts }),
                (q) => (partHolders[part] = q),
              ),
            (fleet) => generation.generateCandidates({ config, iteration, model, prompts, fleet }),
          )
        : onHost(holder, 'candidates', (g) => g.generateCandidates({ config, iteration, model, prompts })),
    ),
    (q) => (holder = parts > 1 ? holder : q),
  );
  const judgments = placed(
    await step('judgments', () =>
      parts > 1
        ? fanOut(
            parts,
            (part) =>
              onHost(partHolders[part], `judgments part ${part}`, (g) =>
                g.judgeCandidatesPart({ config, iteration, model, candidates, part, parts }),
              ),
            (fleet) => generation.judgeCandidates({ config, iteration, model, candidates, fleet: fleet.map((p) => placed(p)) }),
          )
        : onHost(holder, 'judgments', (g) => g.judgeCandidates({ config, iteration, model, candidates })),
    ),
  );
  const pairs = await step('pairs', () => cpu.selectPairs({ config, iteration, candidates, judgments }));
  if (pairs.count === 0) {
    throw ApplicationFailure.nonRetryable(
      `run "${config.run}", iteration ${iteration}: pair selection kept no preference pairs, so there is nothing to train on; see ${pairs.uri}`,
      'NoPreferencePairs',
    );
  }
  const dpo = await step('dpo', () => training.trainDpo({ config, iteration, model, pairs }));
  const evaluation = input.evaluation ? await evaluate(input.evaluation, dpo.model) : undefined;
  const summary = await step('summary', () =>
    cpu.summarizeIteration({
      config,
      iteration,
      modelIn: model,
      modelOut: dpo.model,
      prompts,
      candidates,
      judgments,
      pairs,
      dpoMetrics: dpo.metrics,
      timings: { ...timings },
      ...(evaluation ? { evaluation } : {}),
    }),
  );
  return { modelOut: dpo.model, prompts, pairs, summary };

  /**
   * Held-out responses of M_{t+1} and its opponents, judge quality of M_t and M_{t+1}, and the
   * head-to-head comparisons. Per-model results are stages of their own, so M_t's come back
   * from the iteration that trained it at no cost.
   */
  async function evaluate(ev: NonNullable<IterationInput['evaluation']>, out: ModelRef) {
    const cfg = config.evaluation!;
    const responses: ArtifactRef[] = [];
    const headToHead: HeadToHead[] = [];
    if (ev.prompts) {
      const prompts = ev.prompts;
      const opponents: { id: string; model: ModelRef }[] = [];
      if (cfg.opponents.includes('previous')) opponents.push({ id: model.modelId, model });
      if (cfg.opponents.includes('sft-baseline') && ev.baseline && ev.baseline.modelId !== model.modelId)
        opponents.push({ id: ev.baseline.modelId, model: ev.baseline });
      const refs = await step('eval-responses', async () => {
        const [mine, ...theirs] = await each(
          [out, ...opponents.map((o) => o.model)].map((m) => () => generation.evalResponses({ config, model: m, prompts })),
        );
        return { mine: mine!, theirs };
      });
      responses.push(refs.mine, ...refs.theirs);
      if (cfg.judge) {
        const compared: ({ id: string; responses: ArtifactRef } | { id: 'reference' })[] = opponents.map((o, k) => ({
          id: o.id,
          responses: refs.theirs[k]!,
        }));
        if (cfg.opponents.includes('reference')) compared.push({ id: 'reference' });
        await step('eval-head-to-head', async () => {
          headToHead.push(
            ...(await each(
              compared.map(
                (opponent) => () =>
                  generation.evalHeadToHead({
                    config,
                    iteration,
                    model: out,
                    responses: refs.mine,
                    prompts,
                    opponent,
                    judgeModel: ev.judgeModel,
                  }),
              ),
            )),
          );
        });
      }
    }
    const judgeQuality: JudgeQuality[] = [];
    let previousJudgeQuality: JudgeQuality | null = null;
    if (ev.ranked) {
      const ranked = ev.ranked;
      await step('eval-judge', async () => {
        const [previous, mine] = await each([model, out].map((m) => () => generation.evalJudgeQuality({ config, model: m, ranked })));
        previousJudgeQuality = previous!;
        judgeQuality.push(previous!, mine!);
      });
    }
    return { judgeQuality, previousJudgeQuality, headToHead, responses };
  }
}
