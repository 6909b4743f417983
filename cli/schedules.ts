/**
 * Recurring retraining with Temporal Schedules. A schedule starts `srlmRun` with the given
 * config and `scheduled: true`: each execution (workflow ID `srlm-<name>-<time>`) is a run
 * of its own named `<name>-<time>`, in the config's lineage; with `"baseModel": {"promoted":
 * "<lineage>"}` each retraining starts from the model the previous one promoted. Overlap
 * policy Skip (a retraining never overlaps the previous one), a catch-up window, and pause
 * on failure.
 */
import {
  type CalendarSpecDescription,
  type Client,
  type Range,
  type ScheduleSpecDescription,
  ScheduleOverlapPolicy,
} from '@temporalio/client';
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
    spec: {
      ...(opts.cron?.length ? { cronExpressions: opts.cron } : {}),
      ...(opts.every ? { intervals: [{ every: opts.every as never }] } : {}),
    },
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
    spec: memo.spec ?? describeSpec(d.spec),
    nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
    recentRuns: d.info.recentActions.map((a) => ({
      workflowId: 'workflow' in a.action ? a.action.workflow.workflowId : '?',
      scheduledAt: a.scheduledAt.toISOString(),
    })),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
}

const MONTHS = ['JANUARY', 'FEBRUARY', 'MARCH', 'APRIL', 'MAY', 'JUNE', 'JULY', 'AUGUST', 'SEPTEMBER', 'OCTOBER', 'NOVEMBER', 'DECEMBER'];
const DAYS = ['SUNDAY', 'MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY'];

/** One cron field from the server's ranges: `*`, `5`, `1-5`, `*\/15`, `0-30/10`, joined by commas. */
function cronField<U extends string | number>(ranges: Range<U>[], min: number, max: number, toNumber: (u: U) => number = Number): string {
  if (ranges.length === 0) return '*';
  return ranges
    .map((r) => {
      const [a, b] = [toNumber(r.start), Math.max(toNumber(r.end), toNumber(r.start))];
      const step = r.step > 1 ? `/${r.step}` : '';
      if (a === min && b === max) return `*${step}`;
      return a === b && !step ? String(a) : `${a}-${b}${step}`;
    })
    .join(',');
}

function calendarAsCron(c: CalendarSpecDescription): string {
  const month = cronField(c.month, 1, 12, (m) => MONTHS.indexOf(m) + 1);
  const dow = cronField(c.dayOfWeek, 0, 6, (d) => DAYS.indexOf(d));
  const cron = `${cronField(c.minute, 0, 59)} ${cronField(c.hour, 0, 23)} ${cronField(c.dayOfMonth, 1, 31)} ${month} ${dow}`;
  const second = cronField(c.second, 0, 59);
  return `cron "${cron}"${second !== '0' ? ` at second ${second}` : ''}${c.comment ? ` (${c.comment})` : ''}`;
}

function durationText(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  const parts: string[] = [];
  let rest = ms;
  for (const [size, unit] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || `${ms}ms`;
}

/** A schedule's spec as a person writes it: cron lines and intervals (UTC unless a time zone is named). */
export function describeSpec(spec: ScheduleSpecDescription): string {
  const parts = [
    ...(spec.calendars ?? []).map(calendarAsCron),
    ...(spec.intervals ?? []).map(
      (i) => `every ${durationText(Number(i.every))}${Number(i.offset) ? ` offset ${durationText(Number(i.offset))}` : ''}`,
    ),
  ];
  return (parts.join('; ') || 'no times') + (spec.timezone ? ` in ${spec.timezone}` : '');
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
