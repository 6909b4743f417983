/**
 * What each `srlm` command does (cli/srlm.ts declares the commands and loads this module only
 * when one runs, so `srlm --help` starts without the Temporal client, zod or the AWS SDK).
 */
import { describeRunOutcome, paintOutcome, terminalHasColour } from './outcome';
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { loadRunData } from '../inputs/leakage';
import { isS3Uri, parseS3Uri } from '../core/s3uri';
import { consoleReporter, formatDuration } from '../activities/progress';
import { configHash } from '../core/ids';
import { terminalSafe } from '../core/terminal';
import { PlanError, planRun, renderPlan, type SeedCounts } from '../core/plan';
import { renderIterationSummaryMarkdown } from '../core/stats';
import type { RunConfig } from '../core/schemas';
import { temporalSettings } from '../infra/connection';
import { defaultStateDir, loadEnvPaths } from '../infra/paths';
import { LOCAL_S3_STORE } from './defaults';
import {
  progressQuery,
  scheduleId as scheduleIdOf,
  runWorkflowId,
  type RunProgress,
  type RunResult,
  TASK_QUEUES,
} from '../workflows/contract';
import { checkFilesExist, ConfigError, loadRunConfig } from './config';
import { connectOrExplain, noWorkerMessage, OperatorError, requireWorker, workflowPollers } from './connect';
import { listLineage, renderLineage } from './models';
import { buildRunReport, writeRunReport } from './report';
import { ensureSearchAttributes } from './search-attributes';
import { createSchedule, describeSchedule, listSchedules, renderSchedule } from './schedules';
import { cancelRun, formatLive, formatLiveStage, liveActivities, pauseRun, resumeRun, unpauseRun } from './runs';

/** The CLI's printers: every line has its control characters escaped (core/terminal.ts). */
const say = (line: string): void => console.log(terminalSafe(line));
const sayErr = (line: string): void => console.error(terminalSafe(line));

// TEMPORAL_ADDRESS / _NAMESPACE / _API_KEY / _TLS_* and the TOML profile, as the temporal CLI reads them
const settings = () => temporalSettings();
const address = (): string => settings().address;
const namespace = (): string => settings().namespace;
const connect = () => connectOrExplain(settings());

/**
 * The workflow ID of a run as any command printed its name: `srlm-<run>`, or for a scheduled
 * run (named `<schedule>-<time>` with the time's colons as dashes, see scheduledRunName) the
 * ID the Schedule gave it, `srlm-<schedule>-<time>` with the colons. Null when neither exists.
 */
async function findRunWorkflowId(client: Client, run: string): Promise<string | null> {
  const scheduled = /^(.*-\d{4}-\d{2}-\d{2}T)(\d{2})-(\d{2})-(\d{2})Z$/.exec(run);
  const ids = [
    runWorkflowId(run),
    ...(scheduled ? [runWorkflowId(`${scheduled[1]}${scheduled[2]}:${scheduled[3]}:${scheduled[4]}Z`)] : []),
  ];
  for (const id of ids) {
    try {
      await client.workflow.getHandle(id).describe();
      return id;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  return null;
}

/** The run's workflow ID, once it exists and a worker polls its queue: what a query (status, watch) needs. */
async function requireRunAndWorker(client: Client, run: string, what: string): Promise<string> {
  const workflowId = await findRunWorkflowId(client, run);
  if (!workflowId)
    throw new ConfigError(
      `no run "${run}" (workflow ${runWorkflowId(run)}) in namespace ${namespace()} at ${address()}; \`srlm schedule describe\` lists a schedule's runs`,
    );
  await requireWorker(client, TASK_QUEUES.orchestration, address(), what);
  return workflowId;
}

/** What validating a config read: its files and how many records each gave. */
interface ConfigCheck {
  config: RunConfig;
  inputs: { field: string; file: string; records: number }[];
}

/** Validates the config and every file it names, reading them as a run would; connects to nothing. */
async function checkConfig(file: string, runName?: string): Promise<ConfigCheck> {
  const config = loadRunConfig(file, runName ? { run: runName } : {});
  checkFilesExist(config, file);
  const inputs: ConfigCheck['inputs'] = [];
  try {
    // the same loading (and held-out leakage check) prepareRun does
    const { seed, prompts, ranked } = await loadRunData(config);
    if (config.seed.ift) inputs.push({ field: 'seed.ift', file: config.seed.ift, records: seed.ift.length });
    if (config.seed.ranked) inputs.push({ field: 'seed.ranked', file: config.seed.ranked, records: seed.ranked.length });
    if (config.seed.eft) inputs.push({ field: 'seed.eft', file: config.seed.eft, records: seed.eft.length });
    const ev = config.evaluation;
    if (ev?.prompts && prompts) inputs.push({ field: 'evaluation.prompts', file: ev.prompts.file, records: prompts.length });
    if (ev?.judgeSet && ranked)
      inputs.push({ field: 'evaluation.judgeSet', file: (ev.judgeSet.ranked ?? ev.judgeSet.oasst)!, records: ranked.length });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw new ConfigError(err.message);
    throw err;
  }
  return { config, inputs };
}

/** Validates the config and its seed data before anything is started. */
async function loadConfigOrExit(file: string, runName?: string): Promise<RunConfig> {
  return (await checkConfig(file, runName)).config;
}

export async function cmdValidate(opts: { config: string; run?: string; json?: boolean }): Promise<void> {
  const { config, inputs } = await checkConfig(opts.config, opts.run);
  const b = config.baseModel;
  const model = 'packaged' in b ? `packaged ${b.packaged}` : 'promoted' in b ? `promoted model of lineage ${b.promoted}` : b.path;
  if (opts.json) {
    console.log(
      JSON.stringify(
        {
          valid: true,
          run: config.run,
          workflowId: runWorkflowId(config.run),
          configHash: configHash(config),
          baseModel: model,
          iterations: config.iterations,
          inputs,
        },
        null,
        2,
      ),
    );
    return;
  }
  console.log(
    `${opts.config}: valid. Run "${config.run}" (workflow ${runWorkflowId(config.run)}), base model ${model}, ${config.iterations} iteration${config.iterations === 1 ? '' : 's'}${config.evaluation ? ', with evaluation' : ''}.`,
  );
  for (const i of inputs) console.log(`  ${i.field.padEnd(20)} ${String(i.records).padStart(5)} records  ${i.file}`);
  console.log(
    'Nothing was started: `srlm run -c ' +
      opts.config +
      '` runs it on the embedded stack, `srlm start -c ' +
      opts.config +
      '` on a cluster.',
  );
}

async function startOrAttach(client: Client, config: RunConfig): Promise<{ workflowId: string; attached: boolean }> {
  const workflowId = runWorkflowId(config.run);
  const sa = await ensureSearchAttributes(client, client.options.namespace);
  if (!sa.enabled) sayErr(`note: runs are started without search attributes: ${sa.reason}`);
  try {
    await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId,
      args: [{ config, searchAttributes: sa.enabled }],
    });
    return { workflowId, attached: false };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  // Attaching to a running execution is only right when it runs this very config.
  const running = await client.workflow
    .getHandle(workflowId)
    .query(progressQuery)
    .catch(() => null);
  if (running?.configHash && running.configHash !== configHash(config)) {
    throw new ConfigError(
      `run "${config.run}" is already running (workflow ${workflowId}) with a different config; wait for it, cancel it (temporal workflow cancel --workflow-id ${workflowId}), or choose another run name with --run`,
    );
  }
  return { workflowId, attached: true };
}

/** Polls the progress query and prints stage changes with their durations until the run ends. */
async function watch(
  client: Client,
  workflowId: string,
  print: (l: string) => void,
  stop?: AbortSignal,
  live = false,
  liveEveryMs = 5000,
): Promise<RunResult | null> {
  let lastLive = 0;
  const handle = client.workflow.getHandle(workflowId);
  // The result long-poll is aborted with the watch, so closing the connection afterwards is
  // safe. Each poll adds a listener to the signal: a private one, without the listener cap.
  const pollAbort = new AbortController();
  setMaxListeners(0, pollAbort.signal);
  stop?.addEventListener('abort', () => pollAbort.abort(), { once: true });
  const result = client.connection.withAbortSignal(pollAbort.signal, () => handle.result()) as Promise<RunResult>;
  let finished = false;
  void result.finally(() => (finished = true)).catch(() => undefined);
  const stopped = new Promise<void>((resolve) => stop?.addEventListener('abort', () => resolve(), { once: true }));
  let lastStage = '';
  let stageStarted = Date.now();
  let printedSummaries = 0;
  const stageTimes: [string, number][] = [];
  while (!finished) {
    if (stop?.aborted) return null;
    let p: RunProgress | null = null;
    try {
      p = await handle.query(progressQuery);
    } catch {
      // the workflow may not have had its first task yet
    }
    if (p) {
      if (p.stage !== lastStage) {
        if (lastStage) {
          const s = (Date.now() - stageStarted) / 1000;
          stageTimes.push([lastStage, s]);
          print(`  done: ${lastStage} (${formatDuration(s)})`);
        }
        lastStage = p.stage;
        stageStarted = Date.now();
        if (p.stage !== 'done') print(`stage: ${p.stage}${p.iteration ? ` (iteration ${p.iteration}/${p.iterations})` : ''}`);
      }
      if (live && Date.now() - lastLive >= liveEveryMs) {
        lastLive = Date.now();
        if (p.live) print(`    ${formatLiveStage(p.live)}`);
        else for (const a of await liveActivities(client, p.run, p.iteration).catch(() => [])) if (a.details) print(`    ${formatLive(a)}`);
      }
      while (printedSummaries < p.summaries.length) {
        print('\n' + renderIterationSummaryMarkdown(p.summaries[printedSummaries]!));
        printedSummaries++;
      }
    }
    await Promise.race([result.catch(() => undefined), stopped, new Promise((r) => setTimeout(r, 1000))]);
  }
  if (lastStage && lastStage !== 'done') stageTimes.push([lastStage, (Date.now() - stageStarted) / 1000]);
  const out = await result;
  for (let i = printedSummaries; i < out.summaries.length; i++) print('\n' + renderIterationSummaryMarkdown(out.summaries[i]!));
  if (out.promoted)
    print(
      `\npromoted: ${out.promoted}${out.promoted !== out.finalModel.modelId ? ` (the newest model that passed its promotion gate; the final model ${out.finalModel.modelId} did not)` : ''}`,
    );
  if (stageTimes.length) {
    print('\nWall time per stage (as observed by this CLI):');
    for (const [stage, s] of stageTimes) print(`  ${stage.padEnd(20)} ${formatDuration(s)}`);
  }
  return out;
}

/**
 * A --store value: an s3:// URI (checked), a file:///absolute/path or a directory (made
 * absolute). `mustExist`: a directory that is not there is refused (a read would find nothing).
 */
function checkStoreRoot(store: string, mustExist = false): string {
  if (!isS3Uri(store)) {
    let dir = store;
    if (/^file:/i.test(store)) {
      try {
        dir = fileURLToPath(store);
      } catch (err) {
        throw new ConfigError(
          `--store ${store}: not a usable file URI (${(err as Error).message}); write file:///absolute/path or the directory itself`,
        );
      }
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) {
      throw new ConfigError(`--store ${store}: only a directory, file:///absolute/path or s3://bucket/prefix is a store`);
    }
    const abs = path.resolve(dir);
    if (mustExist && !fs.existsSync(abs))
      throw new ConfigError(
        `--store ${store}: ${abs} does not exist; name the store a run wrote (--store, SRLM_STORE_ROOT or --state-dir)`,
      );
    return abs;
  }
  try {
    parseS3Uri(store);
  } catch (err) {
    throw new ConfigError(`--store ${(err as Error).message}`);
  }
  return store;
}

function describeFailure(err: unknown): string {
  if (err instanceof WorkflowFailedError) {
    let cause: unknown = err.cause;
    const parts: string[] = [];
    while (cause instanceof Error) {
      parts.push(cause.message);
      cause = (cause as { cause?: unknown }).cause;
    }
    return `run failed: ${parts.filter(Boolean).join(': ') || err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export async function cmdRun(opts: { config: string; run?: string; stateDir?: string; store?: string; localS3?: boolean }): Promise<void> {
  const config = await loadConfigOrExit(opts.config, opts.run);
  const store = opts.store ?? (opts.localS3 ? LOCAL_S3_STORE : undefined);
  if (store) config.store = { ...config.store, root: checkStoreRoot(store) };
  const localBucket = opts.localS3 && config.store.root && isS3Uri(config.store.root) ? parseS3Uri(config.store.root).bucket : null;
  if (opts.localS3 && !localBucket)
    throw new ConfigError(`--local-s3 needs an s3:// store; the run's store is ${config.store.root ?? 'the default directory'}`);
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  const t0 = Date.now();
  if (settings().secured) {
    throw new ConfigError(
      `srlm run is the embedded stack (a local dev server and in-process workers), but the connection settings name a secured cluster at ${address()}; use \`srlm start\` there, with workers from workers/main.ts`,
    );
  }
  const { startEmbeddedStack } = await import('./stack'); // the worker SDK: only srlm run needs it
  const stack = await startEmbeddedStack({
    address: address(),
    namespace: namespace(),
    stateDir,
    reporter: consoleReporter(5000),
    ...(localBucket ? { localS3: { bucket: localBucket } } : {}),
  });
  const interrupt = new AbortController();
  const onSignal = (): void => {
    if (interrupt.signal.aborted) process.exit(130);
    say('\nStopping: running compute is cancelled, the run stays in Temporal; run the same command again to resume it.');
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // workers run until the CLI is done watching (or interrupted)
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  const running = Promise.all(stack.workers.map((w) => w.runUntil(done)));
  try {
    const { workflowId, attached } = await startOrAttach(stack.client, config);
    say(`${attached ? 'Attached to' : 'Started'} run "${config.run}" (workflow ${workflowId}, namespace ${stack.namespace})`);
    say(`Progress: temporal workflow query --address ${stack.address} --workflow-id ${workflowId} --name progress`);
    const result = await watch(stack.client, workflowId, (l) => say(l), interrupt.signal);
    if (result === null) return;
    say(`\nRun "${result.run}" completed in ${formatDuration((Date.now() - t0) / 1000)}. Models:`);
    for (const m of result.models) say(`  ${m.name.padEnd(13)} ${m.model.modelId.padEnd(28)} ${m.model.externalPath ?? m.model.uri}`);
    if (result.summaries.length > 0) {
      // the run's report beside its state, as `srlm report` writes it
      try {
        const root = config.store.root ?? path.join(stateDir, 'artifacts');
        const { openStore } = await import('../store/open-store');
        const runStore = isS3Uri(root)
          ? openStore(root, config.store.s3 ?? {}, path.join(loadEnvPaths().cacheDir, 'objects'))
          : openStore(root);
        const files = await writeRunReport(
          await buildRunReport(runStore, result.run, (l) => sayErr(l)),
          path.join(stateDir, 'reports', result.run),
        );
        say(`Report: ${files.html}\n        ${files.md}`);
      } catch (err) {
        sayErr(`note: the report could not be written (${(err as Error).message}); try \`srlm report ${result.run}\``);
      }
    }
    const outcome = describeRunOutcome({
      run: result.run,
      summaries: result.summaries,
      finalModel: result.finalModel.modelId,
      promoted: result.promoted,
    });
    console.log('');
    for (const l of paintOutcome(outcome, terminalHasColour(process.stdout))) console.log(l);
    if (config.run === 'demo') {
      console.log(
        '\nWhat this demo shows: the whole self-rewarding loop (M0 -> SFT -> M1 -> self-instruct, N=4 candidates, 3 judgments each, pairs, DPO -> M2 -> evaluation -> gate -> report)\n' +
          "running durably on Temporal with a real model. What it cannot show at 135M parameters and a few pairs: the paper's gains, which came at 70B over\n" +
          'thousands of pairs. Next: docs/concepts.md (what each stage does), docs/paper-scale.md (a 70B run), `srlm plan configs/llama-70b.json`.',
      );
    }
  } finally {
    // in-flight activities are cancelled after the workers' grace time; compute children get SIGTERM
    release();
    await running.catch(() => undefined);
    await stack.close();
  }
}

export async function cmdStart(opts: { config: string; run?: string; json?: boolean }): Promise<void> {
  const config = await loadConfigOrExit(opts.config, opts.run);
  const connection = await connect();
  try {
    const client = new Client({ connection, namespace: namespace() });
    if ((await workflowPollers(client, TASK_QUEUES.orchestration)) === 0)
      sayErr(`note: ${noWorkerMessage(TASK_QUEUES.orchestration, address(), 'the run waits in the queue until one does')}`);
    const { workflowId, attached } = await startOrAttach(client, config);
    if (opts.json) say(JSON.stringify({ run: config.run, workflowId, attached, configHash: configHash(config) }));
    else say(`${attached ? 'Already running' : 'Started'}: ${workflowId}`);
  } finally {
    await connection.close();
  }
}

export async function cmdStatus(run: string, opts: { json?: boolean }): Promise<void> {
  const connection = await connect();
  try {
    const client = new Client({ connection, namespace: namespace() });
    const workflowId = await requireRunAndWorker(client, run, `run "${run}" cannot answer its progress query`);
    const p = await client.workflow.getHandle(workflowId).query(progressQuery);
    if (opts.json) say(JSON.stringify(p, null, 2));
    else {
      say(`run ${p.run}: ${p.status}, stage ${p.stage}, iteration ${p.iteration}/${p.iterations}`);
      for (const m of p.models) say(`  ${m.name.padEnd(13)} ${m.modelId}`);
      if (p.live) say(`  ${formatLiveStage(p.live)}`);
      if (p.paused) say(`  paused since ${p.paused.since}: ${p.paused.reason}`);
      if (p.error) say(`  error: ${p.error}`);
      for (const g of p.gates ?? [])
        say(
          `  gate, iteration ${g.iteration}: ${g.model} ${g.passed ? 'passed' : `held back (on failure: ${g.onFail}): ${g.failed.join('; ')}`}`,
        );
      if (p.promoted) say(`  promoted: ${p.promoted}`);
      const last = p.summaries.at(-1);
      if (last) say('\n' + renderIterationSummaryMarkdown(last));
    }
  } finally {
    await connection.close();
  }
}

async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const connection = await connect();
  try {
    return await fn(new Client({ connection, namespace: namespace() }));
  } finally {
    await connection.close();
  }
}

export async function cmdPause(run: string, opts: { reason?: string; json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    await pauseRun(client, run, opts.reason);
    if (opts.json) say(JSON.stringify({ run, workflowId: runWorkflowId(run), paused: true, reason: opts.reason ?? null }));
    else say(`run "${run}": pausing; the running stage finishes, the next waits for \`srlm resume ${run}\`.`);
  });
}

export async function cmdResume(run: string, opts: { config?: string; rename?: boolean; watch?: boolean; json?: boolean }): Promise<void> {
  const config = opts.config ? await loadConfigOrExit(opts.config, opts.rename ? run : undefined) : undefined;
  // a resumed run keeps its identity: a config naming another run is a mistake unless told otherwise
  if (config && config.run !== run)
    throw new ConfigError(
      `${opts.config}: the config names run "${config.run}", not "${run}": a resumed run keeps its name; pass --rename to continue "${run}" under this config anyway`,
    );
  await withClient(async (client) => {
    // a running (paused) run gets the resume signal; one that ended gets a new execution
    if (!config && (await unpauseRun(client, run))) {
      if (opts.json) say(JSON.stringify({ run, workflowId: runWorkflowId(run), unpaused: true }));
      else say(`run "${run}": resumed.`);
      if (opts.watch) await watch(client, runWorkflowId(run), (l) => say(l));
      return;
    }
    const out = await resumeRun(client, run, config ? { config } : {});
    if (opts.json) {
      say(JSON.stringify({ run, unpaused: false, ...out }));
      if (opts.watch) await watch(client, out.workflowId, () => undefined);
      return;
    }
    say(
      `Resumed run "${run}": the ${out.previousStatus.toLowerCase()} execution ${out.previousRunId} is followed by ${out.runId} (workflow ${out.workflowId})${out.configChanged ? ', with the new config' : ''}.`,
    );
    say('Completed stages, committed shards and training checkpoints are reused.');
    if (opts.watch) await watch(client, out.workflowId, (l) => say(l));
  });
}

export async function cmdWatch(run: string, opts: { interval?: number }): Promise<void> {
  await withClient(async (client) => {
    const workflowId = await requireRunAndWorker(client, run, `run "${run}" cannot be watched (its progress query needs one)`);
    const out = await watch(client, workflowId, (l) => say(l), undefined, true, (opts.interval ?? 5) * 1000);
    if (out) say(`\nRun "${out.run}" completed; final model ${out.finalModel.modelId}.`);
  });
}

export async function cmdCancel(run: string, opts: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const workflowId = await findRunWorkflowId(client, run);
    if (!workflowId) throw new ConfigError(`no run "${run}" (workflow ${runWorkflowId(run)}) in namespace ${namespace()} at ${address()}`);
    const handle = client.workflow.getHandle(workflowId);
    const before = (await handle.describe()).status.name;
    if (before !== 'RUNNING' && before !== 'CANCELLED')
      throw new ConfigError(`run "${run}" already ended (${before.toLowerCase()}); nothing to cancel`);
    // a cancellation only takes effect when a worker runs the workflow: say so now, not after the wait
    if (before === 'RUNNING' && (await workflowPollers(client, TASK_QUEUES.orchestration)) === 0) {
      await handle.cancel();
      throw new OperatorError(
        'no-worker',
        `cancellation of run "${run}" is recorded, but ${noWorkerMessage(TASK_QUEUES.orchestration, address(), 'nothing stops it yet')}`,
      );
    }
    const status = before === 'CANCELLED' ? before : await cancelRun(client, run, undefined, workflowId);
    if (opts.json) say(JSON.stringify({ run, workflowId, status }));
    else
      say(
        `run "${run}": ${status === 'RUNNING' ? 'cancellation requested; still stopping' : status.toLowerCase()}. Published artifacts are kept; \`srlm resume ${run}\` continues it.`,
      );
    // exit 0 once the run is cancelled (or was); 1 while it is still stopping
    if (status === 'RUNNING') process.exitCode = 1;
  });
}

export async function cmdModels(opts: { lineage?: string; store?: string; stateDir?: string; json?: boolean }): Promise<void> {
  const { openStore } = await import('../store/open-store');
  const given = opts.store ?? process.env.SRLM_STORE_ROOT ?? path.join(opts.stateDir ?? defaultStateDir(), 'artifacts');
  const root = checkStoreRoot(given, true);
  const entries = await listLineage(openStore(root, {}, path.join(loadEnvPaths().cacheDir, 'objects')), opts.lineage);
  say(opts.json ? JSON.stringify(entries, null, 2) : renderLineage(entries));
}

export async function cmdReport(run: string, opts: { store?: string; stateDir?: string; out?: string; json?: boolean }): Promise<void> {
  const { openStore } = await import('../store/open-store');
  const stateDir = opts.stateDir ?? defaultStateDir();
  const given = opts.store ?? (process.env.SRLM_STORE_ROOT || path.join(stateDir, 'artifacts'));
  const root = checkStoreRoot(given, true);
  // the object cache bootstrap set up serves S3 stores; a directory needs none. The AWS SDK's
  // Node version notice is silenced as in the workers (see docs/installation.md).
  if (isS3Uri(root)) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const store = isS3Uri(root) ? openStore(root, {}, path.join(loadEnvPaths().cacheDir, 'objects')) : openStore(root);
  const report = await buildRunReport(store, run, (l) => sayErr(l));
  const files = await writeRunReport(report, opts.out ?? path.join(stateDir, 'reports', run));
  if (opts.json) say(JSON.stringify(files));
  else
    say(
      `Report of run "${run}" (${report.summaries.length} iteration${report.summaries.length === 1 ? '' : 's'}):\n  ${files.html}\n  ${files.md}`,
    );
}

export async function cmdScheduleCreate(
  name: string,
  opts: { config: string; cron?: string[]; every?: string; catchupWindow?: string; paused?: boolean; note?: string },
): Promise<void> {
  const config = await loadConfigOrExit(opts.config);
  await withClient(async (client) => {
    const id = await createSchedule(client, {
      name,
      config,
      ...(opts.cron ? { cron: opts.cron } : {}),
      ...(opts.every ? { every: opts.every } : {}),
      ...(opts.catchupWindow ? { catchupWindow: opts.catchupWindow } : {}),
      ...(opts.paused ? { paused: true } : {}),
      ...(opts.note ? { note: opts.note } : {}),
    });
    say(`Created schedule ${id}: runs of "${config.run}" in lineage "${config.lineage ?? config.run}".`);
  });
}

export async function cmdScheduleList(opts: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const all = await listSchedules(client);
    if (opts.json) say(JSON.stringify(all, null, 2));
    else if (all.length === 0) say('No srlm schedules.');
    else for (const s of all) say(`${s.name.padEnd(24)} ${s.paused ? 'paused' : 'active'}  ${s.scheduleId}`);
  });
}

export async function cmdScheduleDescribe(name: string, opts: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const d = await describeSchedule(client, name);
    say(opts.json ? JSON.stringify(d, null, 2) : renderSchedule(d));
  });
}

export async function cmdSchedulePause(cmd: 'pause' | 'unpause', name: string, opts: { note?: string }): Promise<void> {
  await withClient(async (client) => {
    const handle = client.schedule.getHandle(scheduleIdOf(name));
    await (cmd === 'pause' ? handle.pause(opts.note) : handle.unpause(opts.note));
    say(`schedule ${name}: ${cmd === 'pause' ? 'paused' : 'active'}`);
  });
}

export async function cmdScheduleTrigger(name: string): Promise<void> {
  await withClient(async (client) => {
    await client.schedule.getHandle(scheduleIdOf(name)).trigger();
    say(`schedule ${name}: triggered`);
  });
}

export async function cmdScheduleBackfill(name: string, opts: { from: string; to: string }): Promise<void> {
  await withClient(async (client) => {
    const start = new Date(opts.from);
    const end = new Date(opts.to);
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start)
      throw new ConfigError(`--from/--to: need two ISO 8601 times, --from before --to (got "${opts.from}", "${opts.to}")`);
    await client.schedule.getHandle(scheduleIdOf(name)).backfill({ start, end });
    say(`schedule ${name}: backfilling ${start.toISOString()} .. ${end.toISOString()}`);
  });
}

export async function cmdScheduleDelete(name: string): Promise<void> {
  await withClient(async (client) => {
    await client.schedule.getHandle(scheduleIdOf(name)).delete();
    say(`schedule ${name}: deleted`);
  });
}

/** With --json, an error is one JSON object on stderr, {"error": {"kind", "message"}}; the exit code is the same. */
export function reportError(err: unknown, json: boolean): void {
  const message = err instanceof ConfigError ? err.message : describeFailure(err);
  const kind =
    err instanceof OperatorError
      ? err.kind
      : err instanceof ConfigError
        ? 'invalid-input'
        : err instanceof WorkflowFailedError
          ? 'run-failed'
          : 'error';
  sayErr(json ? JSON.stringify({ error: { kind, message } }) : `error: ${message}`);
}

/** Lines of a JSONL seed file, capped like the import caps it; undefined when the file is absent. */
function countLines(file: string | undefined, cap: number | undefined): number | undefined {
  if (!file || !fs.existsSync(file)) return cap;
  const n = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '').length;
  return cap === undefined ? n : Math.min(n, cap);
}

export async function cmdPlan(file: string, opts: { json?: boolean }): Promise<void> {
  const config = loadRunConfig(file);
  const counts: SeedCounts = {};
  const ift = countLines(config.seed.ift, config.seed.maxIft);
  const eft = countLines(config.seed.eft, config.seed.maxEft);
  const ranked = countLines(config.seed.ranked, config.seed.maxRanked);
  if (ift !== undefined && !config.seed.oasst) counts.ift = ift;
  if (eft !== undefined) counts.eft = eft;
  if (ranked !== undefined && !config.seed.oasst) counts.ranked = ranked;
  let plan;
  try {
    plan = planRun(config, counts);
  } catch (err) {
    if (err instanceof PlanError) throw new ConfigError(`${file}: ${err.message}`);
    throw err;
  }
  console.log(opts.json ? JSON.stringify(plan, null, 2) : renderPlan(plan));
  if (plan.problems.length > 0) {
    console.error(
      `error: ${file}: the run cannot work as configured (${plan.problems.length} problem${plan.problems.length === 1 ? '' : 's'} above)`,
    );
    process.exitCode = 1;
  }
}
