/**
 * Progress of long activities: heartbeats carry it to Temporal (visible in the Web UI and
 * `temporal activity` output), and a reporter shows it to a person watching the main job.
 */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { type LiveStage, stageProgressSignal } from '../workflows/contract';

export interface StageProgress {
  run: string;
  iteration: number;
  stage: string;
  done: number;
  total: number;
  tokens: number;
  elapsedS: number;
  note?: string;
}

export type ProgressReporter = (p: StageProgress) => void;

export function formatProgress(p: StageProgress): string {
  const { tokensPerSecond, etaSeconds } = rates(p.done, p.total, p.tokens, p.elapsedS);
  const parts = [
    `[${p.run} iter ${p.iteration}] ${p.stage}`,
    `${p.done}/${p.total}`,
    p.tokens > 0 ? `${tokensPerSecond.toFixed(1)} tok/s` : '',
    etaSeconds ? `ETA ${formatDuration(etaSeconds)}` : '',
    `elapsed ${formatDuration(p.elapsedS)}`,
    p.note ?? '',
  ];
  return parts.filter(Boolean).join('  ');
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Prints progress lines, at most one per `intervalMs` per stage (and always the last one). */
export function consoleReporter(intervalMs = 5000, write: (line: string) => void = (l) => console.log(l)): ProgressReporter {
  const lastAt = new Map<string, number>();
  return (p) => {
    const key = `${p.run}/${p.iteration}/${p.stage}`;
    const now = Date.now();
    const final = p.total > 0 && p.done >= p.total;
    if (!final && now - (lastAt.get(key) ?? 0) < intervalMs) return;
    lastAt.set(key, now);
    write(formatProgress(p));
  };
}

/**
 * Heartbeats on a timer while `work` runs, with the latest progress as details, and hands
 * `work` the activity's cancellation signal. Compute runs in a child process, so the event
 * loop stays free for these heartbeats.
 */
export async function withHeartbeats<T>(
  work: (update: (details: unknown) => void, signal: AbortSignal) => Promise<T>,
  intervalMs = 5000,
): Promise<T> {
  const ctx = Context.current();
  let details: unknown = undefined;
  ctx.heartbeat(details);
  const timer = setInterval(() => ctx.heartbeat(details), intervalMs);
  try {
    return await work((d) => {
      details = d;
    }, ctx.cancellationSignal);
  } catch (err) {
    // A cancelled activity reports cancellation, not the error its stopped child produced,
    // so the workflow sees a cancellation (and retries nothing).
    if (ctx.cancellationSignal.aborted) {
      const reason: unknown = ctx.cancellationSignal.reason;
      throw reason instanceof Error ? reason : new CancelledFailure(`activity cancelled: ${String(reason)}`);
    }
    throw err;
  } finally {
    clearInterval(timer);
  }
}

/** A log line from an activity with run, iteration and stage as fields (the SDK adds workflow and activity). */
export function stageLog(
  level: 'info' | 'warn',
  message: string,
  fields: { run: string; iteration: number; stage: string } & Record<string, unknown>,
): void {
  try {
    Context.current().log[level](message, fields);
  } catch {
    // outside an activity
    (level === 'warn' ? console.warn : console.log)(`[${fields.run} iter ${fields.iteration} ${fields.stage}] ${message}`);
  }
}

export interface LiveSignaller {
  /** sends `live` unless one went out less than the interval ago (`force` sends anyway) */
  update(live: Omit<LiveStage, 'at' | 'attempt'>, force?: boolean): void;
  /** sends the final state and waits for every send to settle */
  finish(live: Omit<LiveStage, 'at' | 'attempt'>): Promise<void>;
}

/**
 * Signals a stage's progress to the workflow that runs the activity and to that workflow's
 * parent (the run, when the activity belongs to an iteration), at most once per `intervalMs`,
 * so that `temporal workflow query --name progress` shows shard counts and tokens/s. Each send
 * is one history event per workflow, hence the interval. A failed send (the workflow has
 * ended, no client in a test environment) is dropped: progress is advisory.
 */
export function liveSignaller(intervalMs: number): LiveSignaller {
  let ctx: Context;
  let client: Client;
  try {
    ctx = Context.current();
    client = ctx.client;
  } catch {
    return { update: () => undefined, finish: async () => undefined };
  }
  const self = ctx.info.workflowExecution?.workflowId;
  if (!self) return { update: () => undefined, finish: async () => undefined };
  const attempt = ctx.info.attempt;
  let targets: Promise<string[]> | null = null;
  const resolveTargets = async (): Promise<string[]> => {
    const desc = await client.workflow
      .getHandle(self)
      .describe()
      .catch(() => null);
    const parent = desc?.parentExecution?.workflowId;
    return parent ? [self, parent] : [self];
  };
  let last = 0;
  let chain: Promise<void> = Promise.resolve();
  const send = (live: Omit<LiveStage, 'at' | 'attempt'>): void => {
    const payload: LiveStage = { ...live, attempt, at: new Date().toISOString() };
    chain = chain.then(async () => {
      const ids = await (targets ??= resolveTargets());
      await Promise.all(
        ids.map((id) =>
          client.workflow
            .getHandle(id)
            .signal(stageProgressSignal, payload)
            .catch(() => undefined),
        ),
      );
    });
  };
  return {
    update(live, force = false) {
      const now = Date.now();
      if (!force && now - last < intervalMs) return;
      last = now;
      send(live);
    },
    async finish(live) {
      last = Date.now();
      send(live);
      await chain;
    },
  };
}

/** Rate and ETA from counts: tokens/s over the elapsed time, seconds left at the current pace. */
export function rates(done: number, total: number, tokens: number, elapsedS: number): { tokensPerSecond: number; etaSeconds?: number } {
  const tokensPerSecond = elapsedS > 0 ? Math.round((10 * tokens) / elapsedS) / 10 : 0;
  if (done <= 0 || done >= total || elapsedS <= 0) return { tokensPerSecond };
  return { tokensPerSecond, etaSeconds: Math.round(((total - done) * elapsedS) / done) };
}
