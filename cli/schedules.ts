/**
 * Recurring retraining with Temporal Schedules. A schedule starts `srlmRun` with the given
 * config and `scheduled: true`: each execution (workflow ID `srlm-<name>-<time>`) is a run
 * of its own named `<name>-<time>`, in the config's lineage; with `"baseModel": {"promoted":
 * "<lineage>"}` each retraining starts from the model the previous one promoted. Overlap
 * policy Skip (a retraining never overlaps the previous one), a catch-up window, and pause
 * on failure.
 */
import { type Client, ScheduleOverlapPolicy } from '@temporalio/client';
import type { RunConfig } from '../core/schemas';
import { runWorkflowId, scheduleId, TASK_QUEUES } from '../workflows/contract';
import { ensureSearchAttributes } from './search-attributes';

export interface CreateScheduleOptions {
  name: string;
  config: RunConfig;
  /** cron expressions (UTC), e.g. "0 3 * * 1" */
  cron?: string[];
  /** or a fixed interval, e.g. "24h" */
  every?: string;
  catchupWindow?: string;
  paused?: boolean;
  note?: string;
}

export async function createSchedule(client: Client, opts: CreateScheduleOptions): Promise<string> {
  if (!opts.cron?.length && !opts.every) throw new Error('a schedule needs --cron or --every');
  const sa = await ensureSearchAttributes(client, client.options.namespace);
  const id = scheduleId(opts.name);
  await client.schedule.create({
    scheduleId: id,
    spec: { ...(opts.cron?.length ? { cronExpressions: opts.cron } : {}), ...(opts.every ? { intervals: [{ every: opts.every as never }] } : {}) },
    action: {
      type: 'startWorkflow',
      workflowType: 'srlmRun',
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(opts.name),
      args: [{ config: opts.config, scheduled: true, searchAttributes: sa.enabled }],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: (opts.catchupWindow ?? '1 hour') as never, pauseOnFailure: true },
    state: { paused: opts.paused ?? false, ...(opts.note ? { note: opts.note } : {}) },
    // the spec as the user wrote it (the server returns cron strings as calendars)
    memo: { spec: [...(opts.cron ?? []).map((c) => `cron "${c}"`), ...(opts.every ? [`every ${opts.every}`] : [])].join('; ') },
  });
  return id;
}

export interface ScheduleSummary {
  name: string;
  scheduleId: string;
  paused: boolean;
  note: string | null;
  spec: string;
  nextRuns: string[];
  recentRuns: { workflowId: string; scheduledAt: string }[];
  running: string[];
}

export async function describeSchedule(client: Client, name: string): Promise<ScheduleSummary> {
  const d = await client.schedule.getHandle(scheduleId(name)).describe();
  const memo = (d.memo ?? {}) as { spec?: string };
  return {
    name,
    scheduleId: d.scheduleId,
    paused: d.state.paused,
    note: d.state.note ?? null,
    spec: memo.spec ?? JSON.stringify(d.spec),
    nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
    recentRuns: d.info.recentActions.map((a) => ({ workflowId: 'workflow' in a.action ? a.action.workflow.workflowId : '?', scheduledAt: a.scheduledAt.toISOString() })),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
}

export async function listSchedules(client: Client): Promise<{ name: string; scheduleId: string; paused: boolean }[]> {
  const out: { name: string; scheduleId: string; paused: boolean }[] = [];
  for await (const s of client.schedule.list()) {
    if (!s.scheduleId.startsWith('srlm-schedule-')) continue;
    out.push({ name: s.scheduleId.slice('srlm-schedule-'.length), scheduleId: s.scheduleId, paused: s.state.paused });
  }
  return out;
}

export function renderSchedule(s: ScheduleSummary): string {
  return [
    `schedule ${s.name} (${s.scheduleId})${s.paused ? ' PAUSED' : ''}${s.note ? ` — ${s.note}` : ''}`,
    `  spec: ${s.spec}`,
    `  next: ${s.nextRuns.join(', ') || '–'}`,
    `  running: ${s.running.join(', ') || '–'}`,
    `  recent: ${s.recentRuns.map((r) => `${r.workflowId} (${r.scheduledAt})`).join(', ') || '–'}`,
  ].join('\n');
}
