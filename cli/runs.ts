/**
 * Operations on a run's executions that the CLI offers: resume a run that ended without
 * completing, and cancel a running one. Library functions, so tests drive them directly.
 */
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { RunConfig } from '../core/schemas';
import { formatDuration, rates } from '../activities/progress';
import { iterationWorkflowId, type LiveStage, pauseSignal, resumeSignal, runWorkflowId, TASK_QUEUES } from '../workflows/contract';
import { ConfigError } from './config';
import { ensureSearchAttributes } from './search-attributes';

export interface ResumeOutcome {
  workflowId: string;
  /** the execution that ended */
  previousRunId: string;
  previousStatus: string;
  /** the new execution */
  runId: string;
  /** true when the config was replaced by the caller's */
  configChanged: boolean;
}

/** The input a closed execution was started with, read from its first history event. */
async function startInput(client: Client, workflowId: string, runId?: string): Promise<{ config?: unknown; scheduled?: unknown }> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const first = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  const payload = first?.input?.payloads?.[0];
  if (!payload) throw new ConfigError(`workflow ${workflowId}: its history has no start input to resume from`);
  const input = defaultPayloadConverter.fromPayload<{ config?: unknown; scheduled?: unknown }>(payload);
  if (!input || typeof input !== 'object' || !('config' in input))
    throw new ConfigError(`workflow ${workflowId}: start input has no config`);
  return input;
}

/** The `config` a closed execution was started with. */
export async function startedConfig(client: Client, workflowId: string, runId?: string): Promise<unknown> {
  return (await startInput(client, workflowId, runId)).config;
}

/**
 * Starts a new execution of a run that failed, was cancelled, terminated or timed out. Every
 * stage activity finds its published artifacts and returns them, so the new execution
 * starts working at the first incomplete stage (or shard, or checkpoint). With `config`, the
 * run continues under that config (same run name); otherwise under the one it had.
 */
export async function resumeRun(client: Client, run: string, opts: { config?: RunConfig } = {}): Promise<ResumeOutcome> {
  const workflowId = runWorkflowId(run);
  let desc;
  try {
    desc = await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new ConfigError(`run "${run}" has no workflow ${workflowId} to resume; start it with \`srlm start\``);
    throw err;
  }
  const status = desc.status.name;
  if (status === 'RUNNING')
    throw new ConfigError(`run "${run}" is still running (workflow ${workflowId}, run id ${desc.runId}); nothing to resume`);
  if (status === 'COMPLETED') throw new ConfigError(`run "${run}" completed (workflow ${workflowId}); nothing to resume`);
  if (opts.config && opts.config.run !== run) {
    throw new ConfigError(`the config names run "${opts.config.run}", not "${run}": a resumed run keeps its name`);
  }
  const previous = await startInput(client, workflowId, desc.runId);
  const config = opts.config ?? previous.config;
  const sa = await ensureSearchAttributes(client, client.options.namespace);
  const handle = await client.workflow.start('srlmRun', {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId,
    // a scheduled run stays one (same name, derived from the workflow ID)
    args: [{ config, searchAttributes: sa.enabled, ...(previous.scheduled === true ? { scheduled: true } : {}) }],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
  return {
    workflowId,
    previousRunId: desc.runId,
    previousStatus: status,
    runId: handle.firstExecutionRunId,
    configChanged: opts.config !== undefined,
  };
}

/** Requests cancellation and waits until the run has stopped (its compute processes first). */
export async function cancelRun(client: Client, run: string, waitMs = 120_000, workflowId = runWorkflowId(run)): Promise<string> {
  const handle = client.workflow.getHandle(workflowId);
  await handle.cancel();
  const deadline = Date.now() + waitMs;
  for (;;) {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return d.status.name;
    if (Date.now() > deadline) return 'RUNNING';
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface LiveActivity {
  workflowId: string;
  activity: string;
  attempt: number;
  /** the last heartbeat's details (progress: done/total, shards, tokens, loss, checkpoint) */
  details: Record<string, unknown> | null;
}

/**
 * Activities running now in a run and in its current iteration, with their last heartbeat
 * details: where shard counts, tokens and training loss live between progress queries.
 */
export async function liveActivities(client: Client, run: string, iteration: number): Promise<LiveActivity[]> {
  const ids = [runWorkflowId(run), ...(iteration > 0 ? [iterationWorkflowId(run, iteration)] : [])];
  const out: LiveActivity[] = [];
  for (const workflowId of ids) {
    const desc = await client.workflow
      .getHandle(workflowId)
      .describe()
      .catch(() => null);
    if (!desc || desc.status.name !== 'RUNNING') continue;
    for (const a of desc.raw.pendingActivities ?? []) {
      const payload = a.heartbeatDetails?.payloads?.[0];
      let details: Record<string, unknown> | null = null;
      if (payload) {
        try {
          details = defaultPayloadConverter.fromPayload<Record<string, unknown>>(payload) ?? null;
        } catch {
          details = null;
        }
      }
      out.push({ workflowId, activity: a.activityType?.name ?? '?', attempt: a.attempt ?? 1, details });
    }
  }
  return out;
}

/** One line for a live activity: stage, done/total, shards, rate, ETA, loss, checkpoint, attempt. */
export function formatLive(a: LiveActivity): string {
  const d = a.details ?? {};
  const num = (k: string): number | null => (typeof d[k] === 'number' && Number.isFinite(d[k]) ? (d[k] as number) : null);
  const done = num('done');
  const total = num('total');
  const elapsed = num('elapsedS');
  const tokens = num('tokens');
  const parts = [`${typeof d.stage === 'string' ? d.stage : a.activity}`];
  if (done !== null && total) parts.push(`${done}/${total} (${((100 * done) / total).toFixed(0)}%)`);
  if (num('shards') !== null) parts.push(`shards ${num('shardsCommitted') ?? 0}/${num('shards')} committed`);
  const r = rates(done ?? 0, total ?? 0, tokens ?? 0, elapsed ?? 0);
  if (tokens && elapsed) parts.push(`${r.tokensPerSecond.toFixed(1)} tok/s`);
  if (r.etaSeconds !== undefined) parts.push(`ETA ${r.etaSeconds}s`);
  if (num('loss') !== null) parts.push(`loss ${num('loss')!.toFixed(4)}`);
  if (num('checkpointStep')) parts.push(`checkpoint at step ${num('checkpointStep')}`);
  if (a.attempt > 1) parts.push(`attempt ${a.attempt}`);
  return parts.join('  ');
}

/** A text progress bar: `[#######.............]  35%`. */
export function progressBar(done: number, total: number, width = 24): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(Math.floor(frac * 100)).padStart(3)}%`;
}

/** One line for the `live` part of the progress query: bar, counts, shards, tokens/s, ETA, loss. */
export function formatLiveStage(l: LiveStage): string {
  const parts = [l.stage.padEnd(12), progressBar(l.done, l.total), `${l.done}/${l.total}`];
  if (l.shards !== undefined) parts.push(`shards ${l.shardsCommitted ?? 0}/${l.shards}`);
  if (l.tokensPerSecond > 0) parts.push(`${l.tokensPerSecond.toFixed(1)} tok/s`);
  if (l.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(l.etaSeconds)}`);
  if (l.loss !== undefined) parts.push(`loss ${l.loss.toFixed(4)}`);
  if (l.checkpointStep) parts.push(`checkpoint at step ${l.checkpointStep}`);
  if (l.attempt > 1) parts.push(`attempt ${l.attempt}`);
  return parts.join('  ');
}

/** Pauses a running run: the running stage finishes, the next one waits for `resume`. */
export async function pauseRun(client: Client, run: string, reason?: string): Promise<void> {
  const handle = client.workflow.getHandle(runWorkflowId(run));
  const d = await handle.describe().catch((err: unknown) => {
    if (err instanceof WorkflowNotFoundError) throw new ConfigError(`run "${run}" has no workflow ${runWorkflowId(run)}`);
    throw err;
  });
  if (d.status.name !== 'RUNNING') throw new ConfigError(`run "${run}" is not running (${d.status.name.toLowerCase()}); nothing to pause`);
  await handle.signal(pauseSignal, reason ? { reason } : {});
}

/** Lifts a pause of a running run. Returns false when the run is not running. */
export async function unpauseRun(client: Client, run: string): Promise<boolean> {
  const handle = client.workflow.getHandle(runWorkflowId(run));
  const d = await handle.describe().catch(() => null);
  if (!d || d.status.name !== 'RUNNING') return false;
  await handle.signal(resumeSignal);
  return true;
}
