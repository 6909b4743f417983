/**
 * A generation fleet (`compute.fleet.parts`) on a real Temporal dev server: the candidates and
 * judgments stages as parts on the generation queue, taken by every live generation worker
 * (each at most its compute concurrency), then assembled into the same stage a single worker
 * writes. Workers run FakeCompute (a fake, named so: deterministic text instead of a model).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStoreFor } from '../../activities';
import type { RunConfigInput } from '../../core/schemas';
import { repoRoot } from '../../infra/paths';
import { createWorkers } from '../../workers';
import { iterationWorkflowId, runWorkflowId, TASK_QUEUES } from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { type FakeOrchestration, fakeOrchestration } from '../helpers/fake-orchestration';
import { recordHistory } from '../helpers/histories';
import { waitFor } from '../helpers/stack';
import { duplicates, faultRunConfig, runRecords } from '../helpers/stages';
import { testTemporalAddress } from '../helpers/temporal';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';

const RUN = 'fleet';
const SHARD = 4;
/** some candidates come back empty: judge requests are then fewer than candidates */
const EMPTY_RATE = 0.1;

const config = (root: string, parts: number): RunConfigInput => ({ ...faultRunConfig(RUN, root, SHARD), compute: { fleet: { parts } } });

const stageDir = (root: string, stage: string): string => path.join(root, 'runs', RUN, 'iter-1', stage);

/**
 * The stage's files as bytes (sha256 by path): its record shards and the generation shards'
 * outputs; commit records without their time. Manifests and partial flushes are left out.
 */
function stageFiles(root: string, stage: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith('.commit.json')) {
        const { committedAt: _t, ...commit } = JSON.parse(fs.readFileSync(full, 'utf8')) as Record<string, unknown>;
        out[path.relative(root, full)] = JSON.stringify(commit);
      } else if (e.name !== 'manifest.json' && !e.name.endsWith('.partial.jsonl')) {
        out[path.relative(root, full)] = createHash('sha256').update(fs.readFileSync(full)).digest('hex');
      }
    }
  };
  walk(stageDir(root, stage));
  return out;
}

function manifest(root: string, stage: string): { count: number; shards: unknown[]; stats: Record<string, unknown> } {
  return JSON.parse(fs.readFileSync(path.join(stageDir(root, stage), 'manifest.json'), 'utf8'));
}

/** Each completed activity of the iteration: its type, the identity of the worker that ran its last attempt, and that attempt. */
async function activityRuns(client: Client): Promise<{ type: string; identity: string; attempt: number }[]> {
  const history = await client.workflow.getHandle(iterationWorkflowId(RUN, 1)).fetchHistory();
  const types = new Map<string, string>();
  const out: { type: string; identity: string; attempt: number }[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started)
      out.push({
        type: types.get(String(started.scheduledEventId)) ?? '?',
        identity: started.identity ?? '',
        attempt: started.attempt ?? 1,
      });
  }
  return out;
}

/** How many activities of a type the iteration scheduled before the first of them completed (all of them: they ran at once). */
async function scheduledAtOnce(client: Client, type: string): Promise<number> {
  const history = await client.workflow.getHandle(iterationWorkflowId(RUN, 1)).fetchHistory();
  const ofType = new Set<string>();
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === type) ofType.add(String(e.eventId));
    else if (ofType.has(String(e.activityTaskCompletedEventAttributes?.scheduledEventId))) return ofType.size;
  }
  return ofType.size;
}

const countBy = (xs: string[]): Record<string, number> => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});

describe('a generation fleet (compute.fleet.parts, FakeCompute workers)', () => {
  let tmp: string;
  let client: Client;
  let orchestration: FakeOrchestration | undefined;
  const procs: WorkerProcess[] = [];
  let reference: Awaited<ReturnType<typeof runRecords>>;
  let referenceModel: string;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-fleet-'));
    // workflows and training in this process, for every run of the file
    orchestration = await fakeOrchestration(tmp);
    client = orchestration.client;
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await orchestration?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** In-process generation workers, one per identity, each with its own fake engine and work directory (its "host"). */
  async function generationWorkers(identities: string[], delayMs: number) {
    const fakes = identities.map(() => new FakeCompute({ emptyAnswerRate: EMPTY_RATE, delayPerRequestMs: delayMs }));
    const workers: Worker[] = [];
    // a connection each: the SDK takes two workers of one queue on one connection for a mistake
    const connections: NativeConnection[] = [];
    for (const [k, identity] of identities.entries()) {
      const work = path.join(tmp, `work-${identity}`);
      connections.push(await NativeConnection.connect({ address: testTemporalAddress() }));
      workers.push(
        ...(await createWorkers({
          connection: connections[k]!,
          namespace: 'default',
          queues: ['generation'],
          identity,
          computeConcurrency: 1,
          deps: {
            storeFor: defaultStoreFor(path.join(tmp, 'default-store')),
            compute: fakes[k]!,
            workDir: work,
            cacheDir: path.join(tmp, 'cache'),
            heartbeatIntervalMs: 200,
          },
          heartbeatThrottleMs: 200,
        })),
      );
    }
    const running = Promise.all(workers.map((w) => w.run()));
    return {
      fakes,
      async stop() {
        for (const w of workers) w.shutdown();
        await running;
        for (const c of connections) await c.close();
      },
    };
  }

  const runToEnd = async (cfg: RunConfigInput): Promise<void> => {
    await client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(RUN),
      args: [{ config: cfg }],
      workflowExecutionTimeout: '5 minutes',
    });
  };

  it('reference: one generation worker, parts = 1 (as without a fleet: no part activities, no patch marker)', async () => {
    const gen = await generationWorkers(['gen-ref'], 0);
    const root = path.join(tmp, 'store-ref');
    try {
      await runToEnd(config(root, 1));
    } finally {
      await gen.stop();
    }
    reference = await runRecords(root, RUN, 1);
    expect(reference['1/candidates']).toHaveLength(48);
    // empty candidates are not judged: fewer judgments than 3 per candidate
    const judged = reference['1/candidates']!.filter((c) => (c as unknown as { text: string }).text.trim() !== '').length;
    expect(judged).toBeLessThan(48);
    expect(reference['1/judgments']).toHaveLength(3 * judged);
    const types = (await activityRuns(client)).map((r) => r.type);
    expect(types.filter((t) => t === 'generateCandidates' || t === 'judgeCandidates')).toEqual(['generateCandidates', 'judgeCandidates']);
    expect(types.filter((t) => t.endsWith('Part'))).toEqual([]);
    const history = await client.workflow.getHandle(iterationWorkflowId(RUN, 1)).fetchHistory();
    expect((history.events ?? []).filter((e) => e.markerRecordedEventAttributes)).toEqual([]);
    referenceModel = fs.readFileSync(path.join(root, `models/${RUN}/${RUN}.m2/weights.bin`), 'utf8');
  }, 180_000);

  it("parts = 3 over two workers: both take parts, each at most one at a time, and the stages are byte-identical to one worker's", async () => {
    const gen = await generationWorkers(['gen-a', 'gen-b'], 25);
    const root = path.join(tmp, 'store-fleet');
    const started = Date.now();
    try {
      await runToEnd(config(root, 3));
    } finally {
      await gen.stop();
    }
    console.log(`[fleet] parts=3 run over two workers: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await recordHistory(testTemporalAddress(), 'iteration-fleet', iterationWorkflowId(RUN, 1));

    const runs = await activityRuns(client);
    for (const type of ['generateCandidatesPart', 'judgeCandidatesPart']) {
      const by = countBy(runs.filter((r) => r.type === type).map((r) => r.identity));
      expect(
        Object.values(by).reduce((a, b) => a + b, 0),
        type,
      ).toBe(3);
      expect(Object.keys(by).sort(), type).toEqual(['gen-a', 'gen-b']);
      expect(await scheduledAtOnce(client, type), type).toBe(3);
    }
    // one assembling activity per stage, after its parts
    expect(runs.filter((r) => r.type === 'generateCandidates')).toHaveLength(1);
    expect(runs.filter((r) => r.type === 'judgeCandidates')).toHaveLength(1);
    // compute concurrency 1: neither engine ever ran two generate calls at once
    for (const f of gen.fakes) expect(f.maxInFlight).toBe(1);

    expect(await runRecords(root, RUN, 1)).toEqual(reference);
    for (const stage of ['candidates', 'judgments']) {
      expect(stageFiles(root, stage), stage).toEqual(stageFiles(path.join(tmp, 'store-ref'), stage));
      const [fleet, single] = [manifest(root, stage), manifest(path.join(tmp, 'store-ref'), stage)];
      expect(fleet.shards).toEqual(single.shards);
      expect(fleet.stats.fleetParts).toBe(3);
      // the parts' work is the stage's: as much generated as by the single worker, nothing reused
      for (const k of ['requestsGenerated', 'shards', 'skipped', 'shardsReused'])
        expect(fleet.stats[k], `${stage} ${k}`).toBe(single.stats[k]);
      expect(fleet.stats.tokens).toBe(single.stats.tokens);
    }
    expect(manifest(root, 'judgments').stats.emptyCandidates).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(root, `models/${RUN}/${RUN}.m2/weights.bin`), 'utf8')).toBe(referenceModel);
  }, 180_000);

  it("evaluation on a fleet: the models and opponents are evaluated at once on both workers, with a single worker's results", async () => {
    const heldOut = path.join(tmp, 'held-out.jsonl');
    fs.writeFileSync(
      heldOut,
      ['Name three uses of copper.', 'What is 17 times 3?', 'Explain what a leap year is.', 'Give one tip for sleeping well.']
        .map((p, i) => JSON.stringify({ id: `h${i + 1}`, instruction: p, output: `A reference answer to: ${p}` }))
        .join('\n') + '\n',
    );
    const evaluated = (root: string, parts: number): RunConfigInput => ({
      ...config(root, parts),
      evaluation: {
        prompts: { file: heldOut },
        judgeSet: { ranked: path.join(repoRoot(), 'seed/ranked.jsonl'), offset: 8, max: 4 },
        judge: { kind: 'model', model: { packaged: 'smollm2-135m-instruct' } },
        opponents: ['previous', 'sft-baseline', 'reference'],
        judgeSamples: 2,
      },
    });
    const summaryOf = (root: string) =>
      JSON.parse(fs.readFileSync(path.join(root, 'runs', RUN, 'iter-1', 'summary.json'), 'utf8')) as { evaluation: unknown };

    let gen = await generationWorkers(['gen-eval-ref'], 0);
    try {
      await runToEnd(evaluated(path.join(tmp, 'store-eval-ref'), 1));
    } finally {
      await gen.stop();
    }
    expect((await activityRuns(client)).filter((r) => r.type === 'evalResponses')).toHaveLength(3);
    // without a fleet, one after another
    expect(await scheduledAtOnce(client, 'evalResponses')).toBe(1);

    gen = await generationWorkers(['gen-eval-a', 'gen-eval-b'], 25);
    try {
      await runToEnd(evaluated(path.join(tmp, 'store-eval-fleet'), 3));
    } finally {
      await gen.stop();
    }
    await recordHistory(testTemporalAddress(), 'iteration-fleet-evaluated', iterationWorkflowId(RUN, 1));
    const runs = await activityRuns(client);
    // M2, M1 and the SFT baseline answer at once; M1 and M2 judge at once; three head-to-heads at once
    for (const [type, n] of [
      ['evalResponses', 3],
      ['evalJudgeQuality', 2],
      ['evalHeadToHead', 3],
    ] as const) {
      const by = countBy(runs.filter((r) => r.type === type).map((r) => r.identity));
      expect(
        Object.values(by).reduce((a, b) => a + b, 0),
        type,
      ).toBe(n);
      expect(Object.keys(by).sort(), type).toEqual(['gen-eval-a', 'gen-eval-b']);
      expect(await scheduledAtOnce(client, type), type).toBe(n);
    }
    for (const f of gen.fakes) expect(f.maxInFlight).toBe(1);
    const fleet = summaryOf(path.join(tmp, 'store-eval-fleet')).evaluation;
    expect(fleet).toMatchObject({
      headToHead: [{ opponent: `${RUN}.m1` }, { opponent: `${RUN}.sft-baseline` }, { opponent: 'reference' }],
    });
    expect(fleet).toEqual(summaryOf(path.join(tmp, 'store-eval-ref')).evaluation);
  }, 180_000);

  it('SIGKILL of one generation worker process mid-part: its part is retried on the other and every request is answered exactly once', async () => {
    const root = path.join(tmp, 'store-kill');
    const log = path.join(tmp, 'generated.log');
    const workOf = (id: string): string => path.join(tmp, `work-proc-${id}`);
    const spawnGen = (id: string): WorkerProcess => {
      const w = spawnWorker(testTemporalAddress(), 'generation', workOf(id), {
        SRLM_FAKE_DELAY_MS: '60',
        SRLM_FAKE_LOG: log,
        SRLM_FAKE_EMPTY_RATE: String(EMPTY_RATE),
        SRLM_TEST_IDENTITY: id,
      });
      procs.push(w);
      return w;
    };
    const a = spawnGen('proc-a');
    const b = spawnGen('proc-b');
    await Promise.all([a.ready, b.ready]);
    const handle = await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(RUN),
      args: [{ config: config(root, 3) }],
      workflowExecutionTimeout: '5 minutes',
    });

    // proc-a is generating a judgments shard that is not committed yet
    const partsDir = (work: string) => path.join(work, 'runs', RUN, 'iter-1', 'judgments', 'parts', 'all');
    let killedShard = '';
    await waitFor(
      'proc-a mid-part in judgments',
      () => {
        const dir = partsDir(workOf('proc-a'));
        if (!fs.existsSync(dir)) return false;
        for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.outputs.jsonl'))) {
          const lines = fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).length;
          if (
            lines >= 1 &&
            !fs.existsSync(path.join(stageDir(root, 'judgments'), 'parts', 'all', f.replace('.outputs.jsonl', '.commit.json')))
          ) {
            killedShard = f;
            return true;
          }
        }
        return false;
      },
      120_000,
    );
    a.child.kill('SIGKILL');
    await a.exited;

    await handle.result();
    const records = await runRecords(root, RUN, 1);
    for (const [stage, recs] of Object.entries(records)) expect(duplicates(recs ?? []), stage).toEqual([]);
    expect(records).toEqual(reference);
    expect(stageFiles(root, 'judgments')).toEqual(stageFiles(path.join(tmp, 'store-ref'), 'judgments'));
    expect(fs.readFileSync(path.join(root, `models/${RUN}/${RUN}.m2/weights.bin`), 'utf8')).toBe(referenceModel);

    // the killed part was finished by proc-b on a later attempt; no other part needed one
    const parts = (await activityRuns(client)).filter((r) => r.type === 'judgeCandidatesPart');
    expect(parts).toHaveLength(3);
    expect(parts.filter((r) => r.attempt > 1).map((r) => r.identity)).toEqual(['proc-b']);
    // every judge request answered exactly once in the stage; redone work at most the killed shard
    const ids = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const redone = ids.length - new Set(ids).size;
    expect(redone).toBeLessThanOrEqual(SHARD);
    console.log(
      `[fleet] killed proc-a in ${killedShard}; generated ${ids.length} requests for ${new Set(ids).size} distinct, redone ${redone}`,
    );
    // the other worker stops as a worker does (its polls end): nothing of a later test goes to it
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 240_000);
});
