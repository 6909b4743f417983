/**
 * Resident-model affinity (`compute.resident`) on a real Temporal dev server: a model's later
 * generation activities are scheduled on the queue of the worker that ran its earlier ones
 * (`srlm-generation@<host id>`), and go to the shared generation queue when that worker is
 * killed (a real OS process, SIGKILL). Workers run FakeCompute (a fake, named so:
 * deterministic text instead of a model); the resident engine itself is tested with the real
 * model in test/infra/resident-engine.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunConfigInput } from '../../core/schemas';
import { hostQueue, iterationWorkflowId, runWorkflowId, TASK_QUEUES } from '../../workflows/contract';
import { type FakeOrchestration, fakeOrchestration } from '../helpers/fake-orchestration';
import { recordHistory } from '../helpers/histories';
import { waitFor } from '../helpers/stack';
import { faultRunConfig, runRecords } from '../helpers/stages';
import { testTemporalAddress } from '../helpers/temporal';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';

const SHARD = 4;

const config = (run: string, root: string, extra: Partial<NonNullable<RunConfigInput['compute']>> = {}): RunConfigInput => ({
  ...faultRunConfig(run, root, SHARD),
  compute: { resident: { affinitySeconds: 3 }, ...extra },
});

interface ActivityRun {
  type: string;
  queue: string;
  identity: string | null;
  /** how it ended: completed, or the timeout that ended it */
  end: string;
}

/** Each scheduled activity of an iteration: its type, the queue it was scheduled on, who ran it and how it ended. */
async function activityRuns(client: Client, run: string): Promise<ActivityRun[]> {
  const history = await client.workflow.getHandle(iterationWorkflowId(run, 1)).fetchHistory();
  const byId = new Map<string, ActivityRun>();
  const out: ActivityRun[] = [];
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const r = { type: s.activityType?.name ?? '', queue: s.taskQueue?.name ?? '', identity: null, end: 'open' };
      byId.set(String(e.eventId), r);
      out.push(r);
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) byId.get(String(started.scheduledEventId))!.identity = started.identity ?? null;
    const done = e.activityTaskCompletedEventAttributes;
    if (done) byId.get(String(done.scheduledEventId))!.end = 'completed';
    const timedOut = e.activityTaskTimedOutEventAttributes;
    if (timedOut) {
      const r = byId.get(String(timedOut.scheduledEventId))!;
      r.end = `timeout:${timedOut.failure?.timeoutFailureInfo?.timeoutType ?? '?'}`;
    }
  }
  return out;
}

describe('resident-model affinity (compute.resident, FakeCompute workers)', () => {
  let tmp: string;
  let client: Client;
  let orchestration: FakeOrchestration | undefined;
  const procs: WorkerProcess[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-affinity-'));
    // workflows and training in this process, for every run of the file
    orchestration = await fakeOrchestration(tmp);
    client = orchestration.client;
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await orchestration?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const generationWorker = (hostId: string, delayMs: number): WorkerProcess => {
    const w = spawnWorker(testTemporalAddress(), 'generation', path.join(tmp, `work-${hostId}`), {
      SRLM_HOST_ID: hostId,
      SRLM_TEST_IDENTITY: hostId,
      SRLM_FAKE_DELAY_MS: String(delayMs),
    });
    procs.push(w);
    return w;
  };

  it('two live workers: candidates and judgments go to the queue of the worker that wrote the prompts, and run there', async () => {
    const run = 'affinity-two';
    const a = generationWorker('host-a', 0);
    const b = generationWorker('host-b', 0);
    await Promise.all([a.ready, b.ready]);
    const root = path.join(tmp, 'store-two');
    try {
      await client.workflow.execute('srlmRun', {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: runWorkflowId(run),
        args: [{ config: config(run, root) }],
        workflowExecutionTimeout: '5 minutes',
      });
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
    await recordHistory(testTemporalAddress(), 'iteration-affinity', iterationWorkflowId(run, 1));
    const runs = await activityRuns(client, run);
    const prompts = runs.find((r) => r.type === 'generatePrompts')!;
    expect(prompts.queue).toBe(TASK_QUEUES.generation);
    expect(['host-a', 'host-b']).toContain(prompts.identity);
    const holder = hostQueue(prompts.identity!);
    for (const type of ['generateCandidates', 'judgeCandidates']) {
      const r = runs.filter((x) => x.type === type);
      expect(r, type).toHaveLength(1);
      expect(r[0]!.queue, type).toBe(holder);
      expect(r[0]!.identity, type).toBe(prompts.identity);
      expect(r[0]!.end, type).toBe('completed');
    }
    // the stages are whole
    const records = await runRecords(root, run, 1);
    expect(records['1/candidates']).toHaveLength(48);
    expect(records['1/judgments']!.length).toBe(3 * 48);
  }, 180_000);

  it('a fleet (parts = 3) over two workers: judgments part k goes to the worker that generated candidates part k', async () => {
    const run = 'affinity-fleet';
    const a = generationWorker('host-f', 20);
    const b = generationWorker('host-g', 20);
    await Promise.all([a.ready, b.ready]);
    const root = path.join(tmp, 'store-fleet');
    try {
      await client.workflow.execute('srlmRun', {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: runWorkflowId(run),
        args: [{ config: config(run, root, { fleet: { parts: 3 } }) }],
        workflowExecutionTimeout: '5 minutes',
      });
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
    await recordHistory(testTemporalAddress(), 'iteration-fleet-affinity', iterationWorkflowId(run, 1));
    const history = await client.workflow.getHandle(iterationWorkflowId(run, 1)).fetchHistory();
    // part number of each scheduled part activity, from its input
    const parts = new Map<string, { type: string; part: number; queue: string }>();
    const ranBy = new Map<string, string>();
    for (const e of history.events ?? []) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s && s.activityType?.name?.endsWith('Part')) {
        const input = JSON.parse(Buffer.from(s.input!.payloads![0]!.data!).toString('utf8')) as { part: number };
        parts.set(String(e.eventId), { type: s.activityType.name, part: input.part, queue: s.taskQueue?.name ?? '' });
      }
      const started = e.activityTaskStartedEventAttributes;
      if (started && parts.has(String(started.scheduledEventId))) ranBy.set(String(started.scheduledEventId), started.identity ?? '');
    }
    const of = (type: string) =>
      [...parts.entries()]
        .filter(([, p]) => p.type === type)
        .map(([id, p]) => ({ ...p, identity: ranBy.get(id)! }))
        .sort((x, y) => x.part - y.part);
    const cands = of('generateCandidatesPart');
    const judges = of('judgeCandidatesPart');
    expect(cands.map((c) => c.queue)).toEqual([TASK_QUEUES.generation, TASK_QUEUES.generation, TASK_QUEUES.generation]);
    expect(new Set(cands.map((c) => c.identity))).toEqual(new Set(['host-f', 'host-g'])); // both took parts
    expect(judges.map((j) => j.part)).toEqual([0, 1, 2]);
    for (const j of judges) {
      expect(j.queue, `judgments part ${j.part}`).toBe(hostQueue(cands[j.part]!.identity));
      expect(j.identity, `judgments part ${j.part}`).toBe(cands[j.part]!.identity);
    }
    const records = await runRecords(root, run, 1);
    expect(records['1/candidates']).toHaveLength(48);
    expect(records['1/judgments']).toHaveLength(3 * 48);
  }, 180_000);

  it('the holding worker is killed (SIGKILL) during candidates: the pinned attempt is not taken again in time and the stage finishes on the shared queue, on the other worker', async () => {
    const run = 'affinity-killed';
    const root = path.join(tmp, 'store-killed');
    // alone at first, and slow: it writes the prompts, then takes the pinned candidates
    const a = generationWorker('host-k', 400);
    await a.ready;
    const handle = await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(run),
      args: [{ config: config(run, root) }],
      workflowExecutionTimeout: '5 minutes',
    });
    // running now (a started event reaches the history only when the attempt ends): the iteration's pending activities
    await waitFor(
      'candidates running on host-k',
      async () => {
        try {
          const d = await client.workflow.getHandle(iterationWorkflowId(run, 1)).describe();
          return (d.raw.pendingActivities ?? []).some(
            (p) => p.activityType?.name === 'generateCandidates' && p.lastWorkerIdentity === 'host-k' && Number(p.state) === 2,
          );
        } catch {
          return false; // the iteration has not started yet
        }
      },
      120_000,
    );
    a.child.kill('SIGKILL');
    await a.exited;
    const b = generationWorker('host-l', 0);
    await b.ready;
    try {
      await handle.result();
    } finally {
      b.child.kill('SIGTERM');
      await b.exited;
    }
    const all = await activityRuns(client, run);
    const runs = all.filter((r) => r.type === 'generateCandidates');
    console.log(`[affinity] after the kill: ${JSON.stringify(all.filter((r) => r.type !== 'generatePrompts'))}`);
    // pinned on host-k's queue: its retry after the lost heartbeat found nobody there
    // (2: TIMEOUT_TYPE_SCHEDULE_TO_START in the API's enum)
    expect(runs[0]).toMatchObject({ queue: hostQueue('host-k'), end: 'timeout:2' });
    // then the shared queue, where host-l took it
    expect(runs[1]).toMatchObject({ queue: TASK_QUEUES.generation, identity: 'host-l', end: 'completed' });
    // judgments follow the model to host-l
    expect((await activityRuns(client, run)).find((r) => r.type === 'judgeCandidates')).toMatchObject({
      queue: hostQueue('host-l'),
      identity: 'host-l',
      end: 'completed',
    });
    const records = await runRecords(root, run, 1);
    expect(records['1/candidates']).toHaveLength(48);
  }, 240_000);
});
