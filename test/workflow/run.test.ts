/**
 * Orchestration on a real Temporal dev server, with FakeCompute (a fake, named so) in place
 * of the model: the point here is the workflow shape, idempotent stages and failures.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure, Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStoreFor } from '../../activities';
import { findStage, readStage } from '../../store/artifacts';
import { LocalStore } from '../../store/store';
import type { TrainJob } from '../../backends/compute';
import { Candidate, GeneratedPrompt, Judgment, PreferencePair, type RunConfigInput, SftExample, StageManifest } from '../../core/schemas';
import { ALL_QUEUES, createWorkers, installQuietRuntime } from '../../workers';
import { iterationWorkflowId, runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { recordHistory } from '../helpers/histories';
import { FakeCompute } from '../../testing/fake-compute';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');

function demoConfig(run: string, root: string, over: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    run,
    seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl') },
    iterations: 2,
    eft: { samples: 3 },
    prompts: { count: 12, requestsPerRound: 8, maxRounds: 5 },
    store: { root },
    ...over,
  };
}

describe('srlmRun workflow (FakeCompute)', () => {
  let client: Client;
  let connection: Connection;
  let native: NativeConnection;
  let tmp: string;
  let fake: FakeCompute;
  let workers: Worker[];
  let running: Promise<unknown>;

  beforeAll(async () => {
    installQuietRuntime();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-wf-'));
    connection = await Connection.connect({ address: testTemporalAddress() });
    client = new Client({ connection });
    native = await NativeConnection.connect({ address: testTemporalAddress() });
    fake = new FakeCompute({ judgeParseFailureRate: 0.1 });
    workers = await createWorkers({
      connection: native,
      namespace: 'default',
      queues: ALL_QUEUES,
      deps: {
        storeFor: defaultStoreFor(path.join(tmp, 'default-store')),
        compute: fake,
        workDir: path.join(tmp, 'work'),
        cacheDir: path.join(tmp, 'cache'),
        heartbeatIntervalMs: 200,
      },
    });
    running = Promise.all(workers.map((w) => w.run()));
  });

  afterAll(async () => {
    for (const w of workers ?? []) w.shutdown();
    await running;
    await connection?.close();
    await native?.close();
  });

  async function runToEnd(config: RunConfigInput): Promise<RunResult> {
    return client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(String(config.run)),
      args: [{ config }],
      workflowExecutionTimeout: '5 minutes',
    });
  }

  it('runs M0 -> SFT -> M1 -> M2 -> M3 and publishes every stage with a valid manifest', async () => {
    const root = path.join(tmp, 'store-a');
    const result = await runToEnd(demoConfig('wf-a', root));
    await recordHistory(testTemporalAddress(), 'run-completed', runWorkflowId('wf-a'));
    await recordHistory(testTemporalAddress(), 'iteration-completed', iterationWorkflowId('wf-a', 2));
    expect(result.models.map((m) => m.name)).toEqual(['M0', 'SFT baseline', 'M1', 'M2', 'M3']);
    expect(result.summaries).toHaveLength(2);
    const store = new LocalStore(root);
    for (const t of [1, 2]) {
      for (const stage of ['prompts', 'candidates', 'judgments', 'pairs']) {
        const m = StageManifest.parse(JSON.parse((await store.getBytes(`runs/wf-a/iter-${t}/${stage}/manifest.json`)).toString()));
        expect(m.count).toBeGreaterThan(0);
      }
      expect(await store.exists(`runs/wf-a/iter-${t}/summary.md`)).toBe(true);
    }
    const s1 = result.summaries[0]!;
    expect(s1.prompts.kept).toBe(12);
    expect(s1.candidates.count).toBe(48); // N = 4 per prompt
    expect(s1.judge.judgments).toBe(144); // 3 judgments per candidate
    expect(s1.judge.parseRate).toBeGreaterThan(0.7);
    expect(s1.judge.parseRate).toBeLessThan(1);
    expect(s1.dpo).toEqual({ loss: 0.69, rewardAccuracy: 0.5, rewardMargin: 0.01, steps: 1 });
    expect(s1.pairs.kept + Object.values(s1.pairs.dropped).reduce((a, b) => a + b, 0)).toBe(12);
    // M_{t+1} is trained from M_t with M_t as reference
    const dpoJobs = fake.calls.filter((c) => c.kind === 'train' && (c.job as { mode: string }).mode === 'dpo');
    expect(dpoJobs).toHaveLength(2);
    // prompts of iteration 2 are new: the filter saw iteration 1's prompts
    const p1 = await readStage(store, (await findStage(store, { run: 'wf-a', iteration: 1, stage: 'prompts' }))!, GeneratedPrompt);
    const p2 = await readStage(store, (await findStage(store, { run: 'wf-a', iteration: 2, stage: 'prompts' }))!, GeneratedPrompt);
    const first = new Set(p1.map((p) => p.prompt));
    expect(p2.filter((p) => first.has(p.prompt))).toEqual([]);
  });

  it('compute.training local with launcher torchrun: every training job carries the launch and the strategy', async () => {
    const before = fake.calls.length;
    await runToEnd(
      demoConfig('wf-torchrun', path.join(tmp, 'store-tr'), {
        iterations: 1,
        compute: { training: { kind: 'local', launcher: 'torchrun', nprocPerNode: 2, strategy: 'ddp' } },
      }),
    );
    const jobs = fake.calls
      .slice(before)
      .filter((c) => c.kind === 'train')
      .map((c) => c.job as TrainJob);
    expect(jobs.map((j) => j.mode)).toEqual(['sft', 'sft', 'dpo']); // SFT baseline, M1, M2
    for (const j of jobs) {
      expect(j.launcher).toEqual({ kind: 'torchrun', nproc_per_node: 2 });
      expect(j.distributed).toEqual({ strategy: 'ddp' });
      expect(j.remote).toBeUndefined();
    }
  });

  it('records: pairs are max vs min of mean parsed scores, parse failures excluded', async () => {
    const root = path.join(tmp, 'store-a');
    const store = new LocalStore(root);
    const ref = async (stage: string, iteration = 1) => (await findStage(store, { run: 'wf-a', iteration, stage }))!;
    const candidates = await readStage(store, await ref('candidates'), Candidate);
    const judgments = await readStage(store, await ref('judgments'), Judgment);
    const pairs = await readStage(store, await ref('pairs'), PreferencePair);
    expect(new Set(candidates.map((c) => c.id)).size).toBe(candidates.length);
    expect(new Set(judgments.map((j) => j.id)).size).toBe(judgments.length);
    for (const pair of pairs) {
      const meanOf = (id: string) => {
        const s = judgments.filter((j) => j.candidateId === id && j.score !== null).map((j) => j.score!);
        return s.reduce((a, b) => a + b, 0) / s.length;
      };
      const scored = candidates
        .filter((c) => c.promptId === pair.promptId)
        .map((c) => meanOf(c.id))
        .filter((x) => !Number.isNaN(x));
      expect(meanOf(pair.chosenId)).toBe(Math.max(...scored));
      expect(meanOf(pair.rejectedId)).toBe(Math.min(...scored));
      expect(pair.chosenId).not.toBe(pair.rejectedId);
      expect(pair.chosenScore).toBeGreaterThan(pair.rejectedScore);
    }
    const eft = await readStage(store, await ref('eft', 0), SftExample);
    for (const e of eft) expect(e.kind).toBe('eft');
  });

  it('`srlm models` shows the lineage: M0 -> M1 -> M2 -> M3 with parents, methods and data', async () => {
    const root = path.join(tmp, 'store-a');
    const cli = (args: string[]) =>
      execFileSync(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'cli/srlm.ts'), 'models', '--store', root, ...args], {
        encoding: 'utf8',
      });
    const entries = JSON.parse(cli(['--json'])) as {
      modelId: string;
      parent: string | null;
      method: string;
      depth: number;
      trainedOn: string[];
    }[];
    const byId = Object.fromEntries(entries.map((e) => [e.modelId, e]));
    expect(Object.keys(byId).sort()).toEqual(['wf-a.m0', 'wf-a.m1', 'wf-a.m2', 'wf-a.m3', 'wf-a.sft-baseline']);
    expect(byId['wf-a.m3']).toMatchObject({ parent: 'wf-a.m2', method: 'dpo', depth: 3 });
    expect(byId['wf-a.m2']).toMatchObject({ parent: 'wf-a.m1', method: 'dpo', depth: 2 });
    expect(byId['wf-a.m1']).toMatchObject({ parent: 'wf-a.m0', method: 'sft', depth: 1 });
    expect(byId['wf-a.m0']).toMatchObject({ parent: null, method: 'import', depth: 0 });
    expect(entries.filter((e) => (e as { promoted?: boolean }).promoted).map((e) => e.modelId)).toEqual(['wf-a.m3']);
    expect(byId['wf-a.m2']!.trainedOn[0]).toMatch(/runs\/wf-a\/iter-1\/pairs\/manifest\.json$/);
    const text = cli([]);
    expect(text).toContain('lineage wf-a');
    expect(text).toMatch(/\n {8}wf-a\.m3 {2}\(dpo of wf-a\.m2; 1 dataset.*<- promoted\n?/);
  });

  it('starting a completed run again reuses every artifact and trains nothing', async () => {
    const root = path.join(tmp, 'store-a');
    const before = fake.calls.length;
    const manifestsBefore = fs.readFileSync(path.join(root, 'runs/wf-a/iter-2/pairs/manifest.json'), 'utf8');
    const result = await runToEnd(demoConfig('wf-a', root));
    expect(result.summaries).toHaveLength(2);
    expect(fake.calls.length).toBe(before);
    expect(fs.readFileSync(path.join(root, 'runs/wf-a/iter-2/pairs/manifest.json'), 'utf8')).toBe(manifestsBefore);
  });

  it('empty candidates and prompts over the context are skipped and counted in the summary', async () => {
    fake.opts.emptyAnswerRate = 0.25;
    fake.opts.tooLongRate = 0.2;
    try {
      const result = await runToEnd(demoConfig('wf-empty', path.join(tmp, 'store-empty'), { iterations: 1 }));
      const s = result.summaries[0]!;
      const empty = s.skipped['empty candidates (not judged)'] ?? 0;
      expect(empty).toBeGreaterThan(0);
      expect(s.judge.judgments).toBe((s.candidates.count - empty) * 3);
      const md = fs.readFileSync(path.join(tmp, 'store-empty/runs/wf-empty/iter-1/summary.md'), 'utf8');
      expect(md).toContain(`| empty candidates (not judged) | ${empty} |`);
      const tooLong = s.skipped['prompts over the context'] ?? 0;
      expect(tooLong).toBeGreaterThan(0);
      expect(s.candidates.count).toBe((s.prompts.kept - tooLong) * 4);
    } finally {
      fake.opts.tooLongRate = 0;
      fake.opts.emptyAnswerRate = 0;
    }
  });

  it('fails at once, without retrying, on an invalid config, naming the key', async () => {
    const bad = { ...demoConfig('wf-bad', path.join(tmp, 'store-bad')), candidates: { n: 0 } };
    const err = await runToEnd(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.message).toContain('"candidates.n"');
    expect(cause.message).toContain('run "wf-bad" failed at stage validate');
    expect(cause.type).toBe('InvalidConfig');
    expect(fake.calls.filter((c) => (c.job as { output?: string }).output?.includes('wf-bad'))).toHaveLength(0);
  });

  it('fails with NoPreferencePairs when every candidate ties, naming run and iteration', async () => {
    // restart the workers with a fake judge that gives every candidate the same score
    const tieFake = new FakeCompute({ constantScore: 3 });
    for (const w of workers) w.shutdown();
    await running;
    workers = await createWorkers({
      connection: native,
      namespace: 'default',
      queues: ALL_QUEUES,
      deps: {
        storeFor: defaultStoreFor(path.join(tmp, 'default-store')),
        compute: tieFake,
        workDir: path.join(tmp, 'work-tie'),
        cacheDir: path.join(tmp, 'cache'),
        heartbeatIntervalMs: 200,
      },
    });
    running = Promise.all(workers.map((w) => w.run()));
    const err = await runToEnd(
      demoConfig('wf-tie', path.join(tmp, 'store-tie'), { iterations: 1, seed: { ift: path.join(repo, 'seed/ift.jsonl') } }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const message = String((err as WorkflowFailedError).cause?.message);
    expect(((err as WorkflowFailedError).cause as ApplicationFailure).type).toBe('NoPreferencePairs');
    expect(message).toContain('wf-tie');
    expect(message).toContain('iteration 1');
    expect(message).toMatch(/no preference pairs/);
  });
});
