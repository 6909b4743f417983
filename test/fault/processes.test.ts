/**
 * Fault tests against real processes: worker processes SIGKILLed mid-shard, the workflow
 * worker's process killed, the Temporal dev server stopped and started again on its
 * database. Workers run FakeCompute (a fake, named so: deterministic text instead of a
 * model), each in its own OS process. Every faulted run must end with exactly the records
 * of a fault-free run of the same config: same ids and counts, no duplicates, no gaps.
 * Training processes killed mid-training are in training.test.ts (real model, real TRL).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStoreFor } from '../../activities';
import type { RunConfigInput } from '../../core/schemas';
import { type DevServerHandle, freePort, startDevServer } from '../../infra/dev-server';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { ALL_QUEUES, createWorkers, installQuietRuntime, workflowBundle } from '../../workers';
import { runWorkflowId, TASK_QUEUES } from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';
import { waitFor } from '../helpers/stack';
import { duplicates, faultRunConfig, runRecords } from '../helpers/stages';

const RUN = 'flt';
const SHARD = 4;

const config = (root: string): RunConfigInput => faultRunConfig(RUN, root, SHARD);

async function sigkill(w: WorkerProcess): Promise<void> {
  w.child.kill('SIGKILL');
  await w.exited;
}

/** Lines in a shard's local output file (requests finished by the compute process so far). */
function localLines(workDir: string, stage: string, shard: number): number {
  const f = path.join(workDir, 'runs', RUN, 'iter-1', stage, 'parts', 'all', `shard-${String(shard).padStart(5, '0')}.outputs.jsonl`);
  try {
    return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

const committed = (root: string, stage: string, shard: number): boolean =>
  fs.existsSync(path.join(root, 'runs', RUN, 'iter-1', stage, 'parts', 'all', `shard-${String(shard).padStart(5, '0')}.commit.json`));

/** Waits for the run to close, riding out a frontend that is briefly away. */
async function waitClosed(client: Client, timeoutMs = 240_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const d = await client.workflow.getHandle(runWorkflowId(RUN)).describe();
      if (d.status.name !== 'RUNNING') return d.status.name;
    } catch {
      // server restarting
    }
    if (Date.now() > deadline) throw new Error('run did not finish');
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('fault tests: killed processes (FakeCompute workers)', () => {
  let tmp: string;
  let server: DevServerHandle;
  let dbFile: string;
  let connection: Connection;
  let client: Client;
  const procs: WorkerProcess[] = [];
  let reference: Awaited<ReturnType<typeof runRecords>>;
  let referenceModel: string;

  beforeAll(async () => {
    installQuietRuntime();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-fault-'));
    dbFile = path.join(tmp, 'temporal.db');
    server = await startDevServer({ temporalBin: loadEnvPaths(repoRoot()).temporal, dbFile, uiPort: false });
    connection = await Connection.connect({ address: server.address });
    client = new Client({ connection });
    await workflowBundle(); // compiled once here, not in the middle of a timed wait
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await connection?.close();
    await server?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const start = (root: string) =>
    client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(RUN),
      args: [{ config: config(root) }],
      workflowExecutionTimeout: '10 minutes',
    });

  it('a fault-free reference run', async () => {
    const native = await NativeConnection.connect({ address: server.address });
    const workers = await createWorkers({
      connection: native,
      namespace: 'default',
      queues: ALL_QUEUES,
      deps: {
        storeFor: defaultStoreFor(path.join(tmp, 'default-store')),
        compute: new FakeCompute(),
        workDir: path.join(tmp, 'work-ref'),
        cacheDir: path.join(tmp, 'cache'),
        heartbeatIntervalMs: 200,
      },
    });
    const running = Promise.all(workers.map((w) => w.run()));
    const root = path.join(tmp, 'store-ref');
    await (await start(root)).result();
    for (const w of workers) w.shutdown();
    await running;
    await native.close();
    reference = await runRecords(root, RUN, 1);
    expect(reference['1/candidates']).toHaveLength(48);
    expect(reference['1/judgments']).toHaveLength(144);
    referenceModel = fs.readFileSync(path.join(root, `models/${RUN}/${RUN}.m2/weights.bin`), 'utf8');
  });

  it('SIGKILL of the generation worker mid-shard (candidates, then judging) and of the workflow worker: the run completes, at most one shard redone per kill', async () => {
    const root = path.join(tmp, 'store-kill');
    const work = path.join(tmp, 'work-kill');
    const log = path.join(tmp, 'generated.log');
    const gen = (): WorkerProcess => {
      const w = spawnWorker(server.address, 'generation', work, { SRLM_FAKE_DELAY_MS: '60', SRLM_FAKE_LOG: log });
      procs.push(w);
      return w;
    };
    let orch = spawnWorker(server.address, 'orchestration,training', work);
    procs.push(orch);
    let g = gen();
    await Promise.all([orch.ready, g.ready]);
    await start(root);

    // 1. candidates: shard 0 committed, shard 1 half written
    await waitFor('candidates mid-shard', () => committed(root, 'candidates', 0) && localLines(work, 'candidates', 1) >= 1);
    await sigkill(g);
    expect(committed(root, 'candidates', 2)).toBe(false);
    g = gen();
    // 2. judging: shard 3 committed, shard 4 half written; the workflow worker goes too
    await waitFor('judgments mid-shard', () => committed(root, 'judgments', 3) && localLines(work, 'judgments', 4) >= 1);
    await sigkill(g);
    await sigkill(orch);
    // the replacements also serve Prometheus metrics
    const genMetrics = `127.0.0.1:${await freePort()}`;
    const orchMetrics = `127.0.0.1:${await freePort()}`;
    g = spawnWorker(server.address, 'generation', work, { SRLM_FAKE_DELAY_MS: '60', SRLM_FAKE_LOG: log, SRLM_METRICS_BIND: genMetrics });
    procs.push(g);
    orch = spawnWorker(server.address, 'orchestration,training', work, { SRLM_METRICS_BIND: orchMetrics, SRLM_LOG: 'json' });
    procs.push(orch);

    expect(await waitClosed(client)).toBe('COMPLETED');
    const records = await runRecords(root, RUN, 1);
    for (const [stage, recs] of Object.entries(records)) expect(duplicates(recs ?? []), stage).toEqual([]);
    expect(records).toEqual(reference);
    expect(fs.readFileSync(path.join(root, `models/${RUN}/${RUN}.m2/weights.bin`), 'utf8')).toBe(referenceModel);
    // work redone: requests generated more than once, over both kills
    const ids = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const redone = ids.length - new Set(ids).size;
    expect(redone).toBeLessThanOrEqual(2 * SHARD);
    // and the final attempts really continued: committed shards and partial outputs were reused
    const stats = (stage: string) =>
      JSON.parse(fs.readFileSync(path.join(root, 'runs', RUN, 'iter-1', stage, 'manifest.json'), 'utf8')).stats;
    expect(stats('candidates').shardsReused).toBeGreaterThanOrEqual(1);
    expect(stats('candidates').requestsResumed).toBeGreaterThanOrEqual(1);
    expect(stats('judgments').shardsReused).toBeGreaterThanOrEqual(4);
    expect(stats('judgments').requestsResumed).toBeGreaterThanOrEqual(1);
    // Prometheus: the SDK's worker metrics and srlm's pipeline metrics, tagged by stage
    const scrape = async (bind: string) => (await fetch(`http://${bind}/metrics`)).text();
    const genText = await scrape(genMetrics);
    expect(genText).toMatch(/^temporal_\w+/m);
    expect(genText).toMatch(/^srlm_records_total\{[^}]*stage="judgments"[^}]*\} 144$/m);
    expect(genText).toMatch(/^srlm_generated_tokens_total\{[^}]*stage="judgments"/m);
    const orchText = await scrape(orchMetrics);
    expect(orchText).toMatch(new RegExp(`^srlm_records_total\\{[^}]*stage="pairs"[^}]*\\} ${reference['1/pairs']!.length}$`, 'm'));
    // structured logs (SRLM_LOG=json): run, iteration and stage on the workflow's and the activities' lines
    const logs = orch.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs.find((l) => l.msg === 'stage started' && l.stage === 'dpo')).toMatchObject({
      run: RUN,
      iteration: 1,
      workflowType: 'srlmIteration',
    });
    expect(logs.find((l) => l.msg === 'stage published' && l.stage === 'pairs')).toMatchObject({
      run: RUN,
      iteration: 1,
      activityType: 'selectPairs',
    });
    expect(logs.find((l) => l.msg === 'model published')).toMatchObject({ run: RUN, modelId: `${RUN}.m2` });
    console.log(`[fault] generated ${ids.length} requests for ${new Set(ids).size} distinct; redone ${redone} over 2 kills`);
  });

  it('the Temporal dev server stopped mid-run and started again on its database: the run completes', async () => {
    const root = path.join(tmp, 'store-server');
    fs.rmSync(path.join(tmp, 'work-kill', 'runs'), { recursive: true, force: true });
    await start(root);
    await waitFor('candidates under way', () => committed(root, 'candidates', 0));
    const port = Number(server.address.split(':').pop());
    await server.stop();
    await new Promise((r) => setTimeout(r, 1000));
    server = await startDevServer({ temporalBin: loadEnvPaths(repoRoot()).temporal, dbFile, port, uiPort: false });
    expect(await waitClosed(client)).toBe('COMPLETED');
    expect(await runRecords(root, RUN, 1)).toEqual(reference);
  });
});
