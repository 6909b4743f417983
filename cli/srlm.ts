/**
 * srlm — durable self-rewarding training on Temporal.
 *
 *   srlm run --config configs/demo.json     embedded: start what is missing, run, watch
 *   srlm start --config run.json            start a run on an existing cluster
 *   srlm status <run>                       progress of a run
 *   srlm pause <run>                        pause between stages
 *   srlm resume <run> [--config run.json]   lift a pause, or start a new execution of a failed/cancelled/terminated run
 *   srlm watch <run>                        follow a running run with live progress
 *   srlm cancel <run>                       cancel a run; waits until its compute has stopped
 *   srlm models [--lineage L] [--json]      the model lineage recorded in the artifact store
 *   srlm report <run> [--out DIR]           the run's iteration summaries as one HTML page and Markdown
 */
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { loadEvalPrompts, loadEvalRanked } from '../activities/eval-data';
import { loadSeed } from '../activities/seed';
import { openStore } from '../activities/open-store';
import { isS3Uri, parseS3Uri } from '../core/s3uri';
import { consoleReporter, formatDuration } from '../activities/progress';
import { configHash } from '../core/ids';
import { terminalSafe } from '../core/terminal';
import { renderIterationSummaryMarkdown } from '../core/stats';
import type { RunConfig } from '../core/schemas';
import { temporalSettings } from '../infra/connection';
import { defaultStateDir, loadEnvPaths } from '../infra/paths';
import { progressQuery, scheduleId as scheduleIdOf, runWorkflowId, type RunProgress, type RunResult, TASK_QUEUES } from '../workflows/shared';
import { checkFilesExist, ConfigError, loadRunConfig } from './config';
import { connectOrExplain, noWorkerMessage, OperatorError, requireWorker, workflowPollers } from './connect';
import { listLineage, renderLineage } from './models';
import { buildRunReport, writeRunReport } from './report';
import { ensureSearchAttributes } from './search-attributes';
import { createSchedule, describeSchedule, listSchedules, renderSchedule } from './schedules';
import { cancelRun, formatLive, formatLiveStage, liveActivities, pauseRun, resumeRun, unpauseRun } from './runs';
import { startEmbeddedStack } from './stack';

/** The CLI's printers: every line has its control characters escaped (core/terminal.ts). */
const say = (line: string): void => console.log(terminalSafe(line));
const sayErr = (line: string): void => console.error(terminalSafe(line));

// TEMPORAL_ADDRESS / _NAMESPACE / _API_KEY / _TLS_* and the TOML profile, as the temporal CLI reads them
const settings = () => temporalSettings();
const address = (): string => settings().address;
const namespace = (): string => settings().namespace;
const connect = () => connectOrExplain(settings());

/** The run's workflow exists and a worker polls its queue: what a query (status, watch) needs. */
async function requireRunAndWorker(client: Client, run: string, what: string): Promise<void> {
  try {
    await client.workflow.getHandle(runWorkflowId(run)).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new ConfigError(`no run "${run}" (workflow ${runWorkflowId(run)}) in namespace ${namespace()} at ${address()}; \`srlm schedule describe\` lists a schedule's runs`);
    throw err;
  }
  await requireWorker(client, TASK_QUEUES.orchestration, address(), what);
}

/** Validates the config and its seed data before anything is started. */
async function loadConfigOrExit(file: string, runName?: string): Promise<RunConfig> {
  const config = loadRunConfig(file, runName ? { run: runName } : {});
  checkFilesExist(config, file);
  try {
    await loadSeed(config);
    if (config.evaluation?.prompts) await loadEvalPrompts(config.evaluation.prompts);
    if (config.evaluation?.judgeSet) await loadEvalRanked(config.evaluation.judgeSet);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw new ConfigError(err.message);
    throw err;
  }
  return config;
}

async function startOrAttach(client: Client, config: RunConfig): Promise<{ workflowId: string; attached: boolean }> {
  const workflowId = runWorkflowId(config.run);
  const sa = await ensureSearchAttributes(client, client.options.namespace);
  if (!sa.enabled) sayErr(`note: runs are started without search attributes: ${sa.reason}`);
  try {
    await client.workflow.start('srlmRun', { taskQueue: TASK_QUEUES.orchestration, workflowId, args: [{ config, searchAttributes: sa.enabled }] });
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
async function watch(client: Client, workflowId: string, print: (l: string) => void, stop?: AbortSignal, live = false, liveEveryMs = 5000): Promise<RunResult | null> {
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
  if (out.promoted) print(`\npromoted: ${out.promoted}${out.promoted !== out.finalModel.modelId ? ` (the newest model that passed its promotion gate; the final model ${out.finalModel.modelId} did not)` : ''}`);
  if (stageTimes.length) {
    print('\nWall time per stage (as observed by this CLI):');
    for (const [stage, s] of stageTimes) print(`  ${stage.padEnd(20)} ${formatDuration(s)}`);
  }
  return out;
}

/** The store `srlm run --local-s3` uses when no --store is given. */
const LOCAL_S3_STORE = 's3://srlm-local/artifacts';

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
        throw new ConfigError(`--store ${store}: not a usable file URI (${(err as Error).message}); write file:///absolute/path or the directory itself`);
      }
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) {
      throw new ConfigError(`--store ${store}: only a directory, file:///absolute/path or s3://bucket/prefix is a store`);
    }
    const abs = path.resolve(dir);
    if (mustExist && !fs.existsSync(abs)) throw new ConfigError(`--store ${store}: ${abs} does not exist; name the store a run wrote (--store, SRLM_STORE_ROOT or --state-dir)`);
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

async function cmdRun(opts: { config: string; run?: string; stateDir?: string; store?: string; localS3?: boolean }): Promise<void> {
  const config = await loadConfigOrExit(opts.config, opts.run);
  const store = opts.store ?? (opts.localS3 ? LOCAL_S3_STORE : undefined);
  if (store) config.store = { ...config.store, root: checkStoreRoot(store) };
  const localBucket = opts.localS3 && config.store.root && isS3Uri(config.store.root) ? parseS3Uri(config.store.root).bucket : null;
  if (opts.localS3 && !localBucket) throw new ConfigError(`--local-s3 needs an s3:// store; the run's store is ${config.store.root ?? 'the default directory'}`);
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  const t0 = Date.now();
  if (settings().secured) {
    throw new ConfigError(`srlm run is the embedded stack (a local dev server and in-process workers), but the connection settings name a secured cluster at ${address()}; use \`srlm start\` there, with workers from workers/main.ts`);
  }
  const stack = await startEmbeddedStack({ address: address(), namespace: namespace(), stateDir, reporter: consoleReporter(5000), ...(localBucket ? { localS3: { bucket: localBucket } } : {}) });
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
        const runStore = isS3Uri(root) ? openStore(root, config.store.s3 ?? {}, path.join(loadEnvPaths().cacheDir, 'objects')) : openStore(root);
        const files = await writeRunReport(await buildRunReport(runStore, result.run, (l) => sayErr(l)), path.join(stateDir, 'reports', result.run));
        say(`Report: ${files.html}\n        ${files.md}`);
      } catch (err) {
        sayErr(`note: the report could not be written (${(err as Error).message}); try \`srlm report ${result.run}\``);
      }
    }
  } finally {
    // in-flight activities are cancelled after the workers' grace time; compute children get SIGTERM
    release();
    await running.catch(() => undefined);
    await stack.close();
  }
}

async function cmdStart(opts: { config: string; run?: string; json?: boolean }): Promise<void> {
  const config = await loadConfigOrExit(opts.config, opts.run);
  const connection = await connect();
  try {
    const client = new Client({ connection, namespace: namespace() });
    if ((await workflowPollers(client, TASK_QUEUES.orchestration)) === 0) sayErr(`note: ${noWorkerMessage(TASK_QUEUES.orchestration, address(), 'the run waits in the queue until one does')}`);
    const { workflowId, attached } = await startOrAttach(client, config);
    if (opts.json) say(JSON.stringify({ run: config.run, workflowId, attached, configHash: configHash(config) }));
    else say(`${attached ? 'Already running' : 'Started'}: ${workflowId}`);
  } finally {
    await connection.close();
  }
}

async function cmdStatus(run: string, opts: { json?: boolean }): Promise<void> {
  const connection = await connect();
  try {
    const client = new Client({ connection, namespace: namespace() });
    await requireRunAndWorker(client, run, `run "${run}" cannot answer its progress query`);
    const p = await client.workflow.getHandle(runWorkflowId(run)).query(progressQuery);
    if (opts.json) say(JSON.stringify(p, null, 2));
    else {
      say(`run ${p.run}: ${p.status}, stage ${p.stage}, iteration ${p.iteration}/${p.iterations}`);
      for (const m of p.models) say(`  ${m.name.padEnd(13)} ${m.modelId}`);
      if (p.live) say(`  ${formatLiveStage(p.live)}`);
      if (p.paused) say(`  paused since ${p.paused.since}: ${p.paused.reason}`);
      if (p.error) say(`  error: ${p.error}`);
      for (const g of p.gates ?? []) say(`  gate, iteration ${g.iteration}: ${g.model} ${g.passed ? 'passed' : `FAILED (${g.onFail}): ${g.failed.join('; ')}`}`);
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

async function cmdPause(run: string, opts: { reason?: string; json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    await pauseRun(client, run, opts.reason);
    if (opts.json) say(JSON.stringify({ run, workflowId: runWorkflowId(run), paused: true, reason: opts.reason ?? null }));
    else say(`run "${run}": pausing; the running stage finishes, the next waits for \`srlm resume ${run}\`.`);
  });
}

async function cmdResume(run: string, opts: { config?: string; watch?: boolean; json?: boolean }): Promise<void> {
  const config = opts.config ? await loadConfigOrExit(opts.config, run) : undefined;
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
    say(`Resumed run "${run}": the ${out.previousStatus.toLowerCase()} execution ${out.previousRunId} is followed by ${out.runId} (workflow ${out.workflowId})${out.configChanged ? ', with the new config' : ''}.`);
    say('Completed stages, committed shards and training checkpoints are reused.');
    if (opts.watch) await watch(client, out.workflowId, (l) => say(l));
  });
}

/** A --interval value: seconds, a positive number up to a day. */
function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !(n > 0) || n > 86400) throw new InvalidArgumentError(`must be a number of seconds above 0 and at most 86400, got "${value}"`);
  return n;
}

async function cmdWatch(run: string, opts: { interval?: number }): Promise<void> {
  await withClient(async (client) => {
    await requireRunAndWorker(client, run, `run "${run}" cannot be watched (its progress query needs one)`);
    const out = await watch(client, runWorkflowId(run), (l) => say(l), undefined, true, (opts.interval ?? 5) * 1000);
    if (out) say(`\nRun "${out.run}" completed; final model ${out.finalModel.modelId}.`);
  });
}

async function cmdCancel(run: string, opts: { json?: boolean }): Promise<void> {
  await withClient(async (client) => {
    const status = await cancelRun(client, run);
    if (opts.json) return say(JSON.stringify({ run, workflowId: runWorkflowId(run), status }));
    say(`run "${run}": ${status === 'RUNNING' ? 'cancellation requested; still stopping' : status.toLowerCase()}. Published artifacts are kept; \`srlm resume ${run}\` continues it.`);
  });
}

async function cmdModels(opts: { lineage?: string; store?: string; stateDir?: string; json?: boolean }): Promise<void> {
  const given = opts.store ?? process.env.SRLM_STORE_ROOT ?? path.join(opts.stateDir ?? defaultStateDir(), 'artifacts');
  const root = checkStoreRoot(given, true);
  const entries = await listLineage(openStore(root, {}, path.join(loadEnvPaths().cacheDir, 'objects')), opts.lineage);
  say(opts.json ? JSON.stringify(entries, null, 2) : renderLineage(entries));
}

async function cmdReport(run: string, opts: { store?: string; stateDir?: string; out?: string; json?: boolean }): Promise<void> {
  const stateDir = opts.stateDir ?? defaultStateDir();
  const given = opts.store ?? (process.env.SRLM_STORE_ROOT || path.join(stateDir, 'artifacts'));
  const root = checkStoreRoot(given, true);
  // the object cache bootstrap set up serves S3 stores; a directory needs none. The AWS SDK's
  // Node version notice is silenced as in the workers (see README, Installation).
  if (isS3Uri(root)) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const store = isS3Uri(root) ? openStore(root, {}, path.join(loadEnvPaths().cacheDir, 'objects')) : openStore(root);
  const report = await buildRunReport(store, run, (l) => sayErr(l));
  const files = await writeRunReport(report, opts.out ?? path.join(stateDir, 'reports', run));
  if (opts.json) say(JSON.stringify(files));
  else say(`Report of run "${run}" (${report.summaries.length} iteration${report.summaries.length === 1 ? '' : 's'}):\n  ${files.html}\n  ${files.md}`);
}

const program = new Command()
  .name('srlm')
  .description('Durable self-rewarding training for language models (Yuan et al. 2024) on Temporal');

program
  .command('run')
  .description('run on the embedded stack: start a Temporal dev server and workers if none answer, start (or resume) the run, watch it')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--run <name>', 'override the run name in the config')
  .option('--state-dir <dir>', 'state directory (Temporal database, artifacts, work files)', undefined)
  .option('--store <dir|s3-uri>', "artifact store, replacing the config's store.root: a directory or s3://bucket/prefix (endpoint and credentials the AWS way)")
  .option('--local-s3', `also start a local S3-compatible server (Versity S3 Gateway, built by bootstrap) in the state directory and keep the artifacts there (default store ${LOCAL_S3_STORE})`)
  .action(cmdRun);

program
  .command('start')
  .description('start a run on an existing Temporal cluster (workers run elsewhere)')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--run <name>', 'override the run name in the config')
  .option('--json', 'machine-readable output')
  .action(cmdStart);

program
  .command('status')
  .description("show a run's progress")
  .argument('<run>', 'run name')
  .option('--json', 'machine-readable output')
  .action(cmdStatus);

program
  .command('pause')
  .description('pause a running run: the running stage finishes, the next one waits for `srlm resume`')
  .argument('<run>', 'run name')
  .option('--reason <text>', 'why (shown by status and the progress query)')
  .option('--json', 'machine-readable output')
  .action(cmdPause);

program
  .command('resume')
  .description('continue a run: lift a pause, or start a new execution of a run that failed, was cancelled or terminated (reusing every completed artifact)')
  .argument('<run>', 'run name')
  .option('-c, --config <file>', 'continue under this (fixed) config instead of the one the run had')
  .option('--watch', 'watch the resumed run until it ends')
  .option('--json', 'machine-readable output')
  .action(cmdResume);

program
  .command('watch')
  .description('follow a running run: stage changes, live progress of its activities (done/total, shards, tok/s, loss, checkpoints), iteration summaries')
  .argument('<run>', 'run name')
  .option('--interval <seconds>', 'seconds between progress lines', parseSeconds, 5)
  .action(cmdWatch);

program
  .command('cancel')
  .description('cancel a run: its compute processes are stopped, published artifacts stay')
  .argument('<run>', 'run name')
  .option('--json', 'machine-readable output')
  .action(cmdCancel);

program
  .command('models')
  .description('list the models in the artifact store: parent, method, training data, metrics')
  .option('--lineage <name>', 'only this lineage')
  .option('--store <dir|s3-uri>', 'artifact store: a directory or s3://bucket/prefix (default $SRLM_STORE_ROOT or <state dir>/artifacts; S3 endpoint and credentials the AWS way, e.g. AWS_ENDPOINT_URL_S3, AWS_PROFILE)')
  .option('--state-dir <dir>', 'state directory of the embedded stack')
  .option('--json', 'machine-readable output')
  .action(cmdModels);

program
  .command('report')
  .description("a run's iteration summaries as one self-contained HTML page with charts (judge scores, head-to-head, judge quality, lengths, drops, reward-hacking watch, gate) and as Markdown tables")
  .argument('<run>', 'run name')
  .option('--store <dir|s3-uri>', 'artifact store: a directory or s3://bucket/prefix (default $SRLM_STORE_ROOT or <state dir>/artifacts; S3 endpoint and credentials the AWS way)')
  .option('--state-dir <dir>', 'state directory of the embedded stack')
  .option('--out <dir>', 'where report.html and report.md go (default <state dir>/reports/<run>)')
  .option('--json', 'print {"html": path, "md": path}')
  .action(cmdReport);

const schedule = program.command('schedule').description('recurring retraining with Temporal Schedules (overlap Skip, catch-up window, pause on failure)');

schedule
  .command('create')
  .description('create a schedule that starts a run of this config; with "baseModel": {"promoted": "<lineage>"} each run starts from the last promoted model')
  .argument('<name>', 'schedule name; runs are named <name>-<time>')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--cron <expr...>', 'cron expression(s) in UTC, e.g. "0 3 * * 1"')
  .option('--every <interval>', 'a fixed interval instead, e.g. 24h')
  .option('--catchup-window <duration>', 'how late a missed run may still start (default 1 hour)')
  .option('--paused', 'create it paused')
  .option('--note <text>', 'a note shown by describe')
  .action(async (name: string, opts: { config: string; cron?: string[]; every?: string; catchupWindow?: string; paused?: boolean; note?: string }) => {
    const config = await loadConfigOrExit(opts.config);
    await withClient(async (client) => {
      const id = await createSchedule(client, { name, config, ...(opts.cron ? { cron: opts.cron } : {}), ...(opts.every ? { every: opts.every } : {}), ...(opts.catchupWindow ? { catchupWindow: opts.catchupWindow } : {}), ...(opts.paused ? { paused: true } : {}), ...(opts.note ? { note: opts.note } : {}) });
      say(`Created schedule ${id}: runs of "${config.run}" in lineage "${config.lineage ?? config.run}".`);
    });
  });

schedule
  .command('list')
  .description("list srlm's schedules")
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) =>
    withClient(async (client) => {
      const all = await listSchedules(client);
      if (opts.json) say(JSON.stringify(all, null, 2));
      else if (all.length === 0) say('No srlm schedules.');
      else for (const s of all) say(`${s.name.padEnd(24)} ${s.paused ? 'paused' : 'active'}  ${s.scheduleId}`);
    }),
  );

schedule
  .command('describe')
  .description('spec, state, next and recent runs of a schedule')
  .argument('<name>', 'schedule name')
  .option('--json', 'machine-readable output')
  .action(async (name: string, opts: { json?: boolean }) =>
    withClient(async (client) => {
      const d = await describeSchedule(client, name);
      say(opts.json ? JSON.stringify(d, null, 2) : renderSchedule(d));
    }),
  );

for (const [cmd, what] of [['pause', 'pause a schedule (no new runs start)'], ['unpause', 'unpause a schedule']] as const) {
  schedule
    .command(cmd)
    .description(what)
    .argument('<name>', 'schedule name')
    .option('--note <text>', 'why')
    .action(async (name: string, opts: { note?: string }) =>
      withClient(async (client) => {
        const handle = client.schedule.getHandle(scheduleIdOf(name));
        await (cmd === 'pause' ? handle.pause(opts.note) : handle.unpause(opts.note));
        say(`schedule ${name}: ${cmd === 'pause' ? 'paused' : 'active'}`);
      }),
    );
}

schedule
  .command('trigger')
  .description('start a run of the schedule now (skipped if one is running)')
  .argument('<name>', 'schedule name')
  .action(async (name: string) =>
    withClient(async (client) => {
      await client.schedule.getHandle(scheduleIdOf(name)).trigger();
      say(`schedule ${name}: triggered`);
    }),
  );

schedule
  .command('backfill')
  .description('take the runs the schedule would have started in a past time range')
  .argument('<name>', 'schedule name')
  .requiredOption('--from <time>', 'start (ISO 8601)')
  .requiredOption('--to <time>', 'end (ISO 8601)')
  .action(async (name: string, opts: { from: string; to: string }) =>
    withClient(async (client) => {
      const start = new Date(opts.from);
      const end = new Date(opts.to);
      if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start) throw new ConfigError(`--from/--to: need two ISO 8601 times, --from before --to (got "${opts.from}", "${opts.to}")`);
      await client.schedule.getHandle(scheduleIdOf(name)).backfill({ start, end });
      say(`schedule ${name}: backfilling ${start.toISOString()} .. ${end.toISOString()}`);
    }),
  );

schedule
  .command('delete')
  .description('delete a schedule (its runs and models stay)')
  .argument('<name>', 'schedule name')
  .action(async (name: string) =>
    withClient(async (client) => {
      await client.schedule.getHandle(scheduleIdOf(name)).delete();
      say(`schedule ${name}: deleted`);
    }),
  );

/** With --json, an error is one JSON object on stderr, {"error": {"kind", "message"}}; the exit code is the same. */
function reportError(err: unknown, json: boolean): void {
  const message = err instanceof ConfigError ? err.message : describeFailure(err);
  const kind = err instanceof OperatorError ? err.kind : err instanceof ConfigError ? 'invalid-input' : err instanceof WorkflowFailedError ? 'run-failed' : 'error';
  sayErr(json ? JSON.stringify({ error: { kind, message } }) : `error: ${message}`);
}

const jsonWanted = process.argv.slice(2).includes('--json');
if (jsonWanted) {
  // commander's own usage errors (unknown option, missing argument) as JSON too
  program.configureOutput({ writeErr: (text) => process.stderr.write(text.startsWith('error: ') ? `${terminalSafe(JSON.stringify({ error: { kind: 'usage', message: text.slice(7).trim() } }))}\n` : text) });
  for (const sub of program.commands) sub.configureOutput(program.configureOutput());
  for (const sub of schedule.commands) sub.configureOutput(program.configureOutput());
}

program.parseAsync(process.argv).catch((err) => {
  reportError(err, jsonWanted);
  process.exit(1);
});
