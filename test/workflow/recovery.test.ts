/**
 * Recovering runs on a real Temporal dev server, with FakeCompute (a fake, named so) in place
 * of the model: a store that cannot be written, resuming with `srlm resume`, resetting with
 * the Temporal CLI, cancelling. Killed processes are in test/fault/.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalStore } from '../../store/store';
import { readCommittedShard } from '../../activities/shards';
import type { RunConfigInput } from '../../core/schemas';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import {
  iterationProgressQuery,
  iterationWorkflowId,
  type LiveStage,
  progressQuery,
  runWorkflowId,
  type RunProgress,
  scheduledRunName,
  TASK_QUEUES,
  type RunResult,
} from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { recordHistory } from '../helpers/histories';
import { startTestStack, type TestStack, waitFor } from '../helpers/stack';
import { duplicates, runRecords } from '../helpers/stages';
import { testTemporalAddress } from '../helpers/temporal';

const run = promisify(execFile);
const repo = path.resolve(__dirname, '../..');

function config(name: string, root: string, over: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    run: name,
    seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl') },
    iterations: 1,
    prompts: { count: 8, requestsPerRound: 8, maxRounds: 4 },
    durability: { shardSize: 4, retryInitialSeconds: 0.2, maximumAttempts: 2, heartbeatTimeoutSeconds: 10, partialFlushSeconds: 0 },
    store: { root },
    ...over,
  };
}

describe('recovering runs (FakeCompute)', () => {
  let client: Client;
  let tmp: string;
  let fake: FakeCompute;
  let stack: TestStack;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-recovery-'));
    fake = new FakeCompute({ judgeParseFailureRate: 0.1 });
    stack = await startTestStack({ address: testTemporalAddress(), compute: fake, dir: tmp });
    client = stack.client;
  });

  afterAll(async () => {
    // leave nothing running for the next test file's workers to pick up
    await client?.workflow
      .getHandle(runWorkflowId('rec'))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.stop();
  });

  const handle = (name: string) => client.workflow.getHandle(runWorkflowId(name));
  const execute = (c: RunConfigInput): Promise<RunResult> =>
    client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(String(c.run)),
      args: [{ config: c }],
      workflowExecutionTimeout: '5 minutes',
    });

  /** Makes `<root>/runs/<run>/iter-1/candidates` a file, so nothing can be written beneath it. */
  function blockCandidates(root: string, name: string): string {
    const blocker = path.join(root, 'runs', name, 'iter-1', 'candidates');
    fs.mkdirSync(path.dirname(blocker), { recursive: true });
    fs.writeFileSync(blocker, 'not a directory');
    return blocker;
  }

  const generateCallsFor = (name: string, stage: string): number =>
    fake.calls.filter(
      (c) => c.kind === 'generate' && JSON.stringify(c.job).includes(`/runs/${name}/iter-`) && JSON.stringify(c.job).includes(`/${stage}/`),
    ).length;

  let reference: Awaited<ReturnType<typeof runRecords>>;
  let referenceModel: string;

  it('a fault-free reference run', async () => {
    const root = path.join(tmp, 'store-ref');
    const result = await execute(config('rec', root));
    reference = await runRecords(root, 'rec', 1);
    for (const [stage, records] of Object.entries(reference)) {
      expect(records, stage).not.toBeNull();
      expect(records!.length, stage).toBeGreaterThan(0);
      expect(duplicates(records!), stage).toEqual([]);
    }
    referenceModel = fs.readFileSync(path.join(root, 'models/rec/rec.m2/weights.bin'), 'utf8');
    expect(result.finalModel.modelId).toBe('rec.m2');
    // a second run of the same name must not find this run's scratch files
    fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
  });

  it('a store write error fails the stage retryably, publishes nothing corrupt, and `srlm resume` finishes the run', async () => {
    const root = path.join(tmp, 'store-w');
    const blocker = blockCandidates(root, 'rec');
    const err = await execute(config('rec', root)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    await recordHistory(testTemporalAddress(), 'run-failed-store-error', runWorkflowId('rec'));
    const message = String((err as WorkflowFailedError).cause?.message);
    expect(message).toContain('run "rec" failed at stage iteration 1');
    expect(message).toMatch(/ENOTDIR|EEXIST|not a directory/);
    // retried (the attempts are in the history), then failed: not retried forever
    const history = await client.workflow.getHandle(runWorkflowId('rec')).fetchHistory();
    expect(history.events?.some((e) => e.workflowExecutionFailedEventAttributes)).toBe(true);
    // nothing of the failed stage is visible; earlier stages are intact
    const store = new LocalStore(root);
    expect(await store.exists('runs/rec/iter-1/candidates/manifest.json')).toBe(false);
    const partial = await runRecords(root, 'rec', 1);
    expect(partial['1/prompts']).toEqual(reference['1/prompts']);
    expect(partial['1/candidates']).toBeNull();
    const promptCalls = generateCallsFor('rec', 'prompts');
    const trainCalls = fake.calls.filter((c) => c.kind === 'train').length;

    // the operator fixes the store and resumes with the CLI
    fs.rmSync(blocker);
    const out = await run(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'cli/srlm.ts'), 'resume', 'rec'], {
      cwd: repo,
      env: { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() },
    });
    expect(out.stdout).toMatch(/Resumed run "rec": the failed execution \S+ is followed by \S+/);
    const result = (await client.workflow.getHandle(runWorkflowId('rec')).result()) as RunResult;
    await recordHistory(testTemporalAddress(), 'run-resumed', runWorkflowId('rec'));
    expect(result.finalModel.modelId).toBe('rec.m2');
    // completed stages were reused, not redone
    expect(generateCallsFor('rec', 'prompts')).toBe(promptCalls);
    expect(fake.calls.filter((c) => c.kind === 'train').length).toBe(trainCalls + 1); // DPO only
    expect(await runRecords(root, 'rec', 1)).toEqual(reference);
    expect(fs.readFileSync(path.join(root, 'models/rec/rec.m2/weights.bin'), 'utf8')).toBe(referenceModel);
    fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
  });

  it('`temporal workflow reset` of a failed run completes it', async () => {
    const root = path.join(tmp, 'store-reset');
    const blocker = blockCandidates(root, 'rec');
    await expect(execute(config('rec', root))).rejects.toBeInstanceOf(WorkflowFailedError);
    fs.rmSync(blocker);
    const temporal = loadEnvPaths(repoRoot()).temporal;
    const out = await run(temporal, [
      'workflow',
      'reset',
      '--address',
      testTemporalAddress(),
      '--workflow-id',
      runWorkflowId('rec'),
      '--type',
      'FirstWorkflowTask',
      '--reason',
      'store fixed',
    ]);
    expect(out.stdout + out.stderr).toMatch(/Resetting workflow srlm-rec/);
    const result = (await client.workflow.getHandle(runWorkflowId('rec')).result()) as RunResult;
    expect(result.finalModel.modelId).toBe('rec.m2');
    expect(await runRecords(root, 'rec', 1)).toEqual(reference);
    fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
  });

  it("docs/operations.md's Temporal CLI steps (show, extract the input, start) resume a failed run", async () => {
    const root = path.join(tmp, 'store-cli');
    const blocker = blockCandidates(root, 'rec');
    await expect(execute(config('rec', root))).rejects.toBeInstanceOf(WorkflowFailedError);
    fs.rmSync(blocker);
    const dir = fs.mkdtempSync(path.join(tmp, 'cli-'));
    const temporal = loadEnvPaths(repoRoot()).temporal;
    const a = ['--address', testTemporalAddress()];
    const shown = await run(temporal, ['workflow', 'show', ...a, '--workflow-id', 'srlm-rec', '--output', 'json'], { maxBuffer: 64 << 20 });
    fs.writeFileSync(path.join(dir, 'history.json'), shown.stdout);
    const extract =
      'const h = require("./history.json"); process.stdout.write(Buffer.from(h.events[0].workflowExecutionStartedEventAttributes.input.payloads[0].data, "base64"))';
    const input = await run(process.execPath, ['-e', extract], { cwd: dir });
    fs.writeFileSync(path.join(dir, 'input.json'), input.stdout);
    await run(temporal, [
      'workflow',
      'start',
      ...a,
      '--type',
      'srlmRun',
      '--task-queue',
      'srlm-orchestration',
      '--workflow-id',
      'srlm-rec',
      '--input-file',
      path.join(dir, 'input.json'),
    ]);
    const result = (await client.workflow.getHandle(runWorkflowId('rec')).result()) as RunResult;
    expect(result.finalModel.modelId).toBe('rec.m2');
    expect(await runRecords(root, 'rec', 1)).toEqual(reference);
    fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
  });

  it("`temporal workflow query --name progress` answers with the stage's shard counts and tokens/s; `srlm watch` draws them as bars until the run completes", async () => {
    const root = path.join(tmp, 'store-watch');
    fake.opts.delayPerRequestMs = 120;
    try {
      await client.workflow.start('srlmRun', {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: runWorkflowId('rec'),
        args: [{ config: config('rec', root) }],
      });
      const watching = run(
        path.join(repo, 'node_modules/.bin/tsx'),
        [path.join(repo, 'cli/srlm.ts'), 'watch', 'rec', '--interval', '0.3'],
        {
          cwd: repo,
          env: { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() },
          timeout: 120_000,
        },
      );
      // the Temporal CLI's query, on the run and on its iteration, while candidates are generated
      const query = async (workflowId: string): Promise<RunProgress> =>
        JSON.parse(
          (
            await run(loadEnvPaths(repoRoot()).temporal, [
              'workflow',
              'query',
              '--address',
              testTemporalAddress(),
              '--workflow-id',
              workflowId,
              '--name',
              'progress',
              '--output',
              'json',
            ])
          ).stdout,
        ).queryResult[0] as RunProgress;
      let seen: LiveStage | undefined;
      await waitFor(
        'live judging progress with committed shards in the query',
        async () => {
          const l = (await query(runWorkflowId('rec')).catch(() => null))?.live;
          if (l?.stage === 'judgments' && (l.shardsCommitted ?? 0) > 0 && l.done < l.total) seen = l;
          return !!seen;
        },
        60_000,
        200,
      );
      expect(seen!.iteration).toBe(1);
      expect(seen!.shards).toBe(Math.ceil(seen!.total / 4)); // shardSize 4
      expect(seen!.tokens).toBeGreaterThan(0);
      expect(seen!.tokensPerSecond).toBeGreaterThan(0);
      expect(seen!.etaSeconds).toBeGreaterThanOrEqual(0);
      expect(seen!.attempt).toBe(1);
      const iter = await query(iterationWorkflowId('rec', 1));
      expect(iter.stage).toBe('judgments');
      expect(iter.live).toMatchObject({ iteration: 1, stage: 'judgments', total: seen!.total });
      const out = await watching;
      expect(out.stdout).toMatch(/stage: iteration 1/);
      expect(out.stdout).toMatch(/judgments +\[#*\.*\] +\d+% {2}\d+\/\d+ {2}shards \d+\/\d+ {2}[\d.]+ tok\/s/);
      expect(out.stdout).toContain('Run "rec" completed; final model rec.m2.');
      // between stages and after the run, nothing stale is left in `live`
      expect((await handle('rec').query(progressQuery)).live).toBeUndefined();
    } finally {
      fake.opts.delayPerRequestMs = 0;
      fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
    }
  });

  it('the srlm CLI takes its connection from a Temporal TOML profile, like the temporal CLI', async () => {
    const file = path.join(tmp, 'temporal.toml');
    fs.writeFileSync(file, `[profile.tests]\naddress = "${testTemporalAddress()}"\nnamespace = "default"\n`);
    const env: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'tests' };
    delete env.TEMPORAL_ADDRESS;
    const out = await run(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'cli/srlm.ts'), 'status', 'rec', '--json'], {
      cwd: repo,
      env,
    });
    const p = JSON.parse(out.stdout) as { run: string; status: string };
    expect(p.run).toBe('rec');
    expect(p.status).toBe('completed');
    // and the temporal CLI reads the same profile
    const listed = await run(loadEnvPaths(repoRoot()).temporal, ['workflow', 'describe', '--workflow-id', runWorkflowId('rec')], { env });
    expect(listed.stdout).toMatch(/srlmRun/);
  });

  it("`srlm pause` holds a run between stages; the Temporal CLI's resume signal lets it finish", async () => {
    const root = path.join(tmp, 'store-pause');
    const handle = await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('rec'),
      args: [{ config: config('rec', root) }],
    });
    const store = new LocalStore(root);
    const child = client.workflow.getHandle(iterationWorkflowId('rec', 1));
    try {
      await waitFor('prompts', () => store.exists('runs/rec/iter-1/prompts/manifest.json'), 60_000);
      fake.opts.delayPerRequestMs = 300;
      const tsx = path.join(repo, 'node_modules/.bin/tsx');
      const env = { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() };
      const paused = await run(tsx, [path.join(repo, 'cli/srlm.ts'), 'pause', 'rec', '--reason', 'disk check'], { cwd: repo, env });
      expect(paused.stdout).toContain('pausing');
      // the running stage finishes; then nothing runs and no stage starts
      const idle = async () => ((await child.describe()).raw.pendingActivities ?? []).length === 0;
      await waitFor('the running stage to finish', idle, 60_000);
      const stages = (await child.query(iterationProgressQuery)).stagesDone.length;
      fake.opts.delayPerRequestMs = 0;
      await new Promise((r) => setTimeout(r, 1500));
      expect(await idle()).toBe(true);
      expect((await child.query(iterationProgressQuery)).stagesDone.length).toBe(stages);
      expect(await store.exists('runs/rec/iter-1/pairs/manifest.json')).toBe(false);
      const p = await handle.query(progressQuery);
      expect(p.status).toBe('paused');
      expect(p.paused?.reason).toBe('disk check');
      const status = await run(tsx, [path.join(repo, 'cli/srlm.ts'), 'status', 'rec'], { cwd: repo, env });
      expect(status.stdout).toMatch(/paused since .*: disk check/);
      await run(loadEnvPaths(repoRoot()).temporal, [
        'workflow',
        'signal',
        '--address',
        testTemporalAddress(),
        '--workflow-id',
        runWorkflowId('rec'),
        '--name',
        'resume',
      ]);
      const result = (await handle.result()) as RunResult;
      await recordHistory(testTemporalAddress(), 'run-paused-resumed', runWorkflowId('rec'));
      await recordHistory(testTemporalAddress(), 'iteration-paused-resumed', iterationWorkflowId('rec', 1));
      expect(result.finalModel.modelId).toBe('rec.m2');
      expect(await runRecords(root, 'rec', 1)).toEqual(reference);
    } finally {
      fake.opts.delayPerRequestMs = 0;
      fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
    }
  });

  it('`srlm start` registers and keeps search attributes; `temporal workflow list --query` finds the run by them', async () => {
    const root = path.join(tmp, 'store-sa');
    const file = path.join(tmp, 'sa-run.json');
    fs.writeFileSync(file, JSON.stringify(config('rec', root)));
    const env = { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() };
    const started = await run(
      path.join(repo, 'node_modules/.bin/tsx'),
      [path.join(repo, 'cli/srlm.ts'), 'start', '--config', file, '--json'],
      { cwd: repo, env },
    );
    expect(JSON.parse(started.stdout)).toMatchObject({
      run: 'rec',
      workflowId: 'srlm-rec',
      attached: false,
      configHash: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(started.stderr).not.toMatch(/without search attributes/);
    const result = (await client.workflow.getHandle(runWorkflowId('rec')).result()) as RunResult;
    await recordHistory(testTemporalAddress(), 'run-search-attributes', runWorkflowId('rec'));
    await recordHistory(testTemporalAddress(), 'iteration-search-attributes', iterationWorkflowId('rec', 1));
    expect(result.finalModel.modelId).toBe('rec.m2');
    const temporal = loadEnvPaths(repoRoot()).temporal;
    const list = async (query: string) =>
      (await run(temporal, ['workflow', 'list', '--address', testTemporalAddress(), '--query', query, '--output', 'json'])).stdout;
    await waitFor('visibility', async () => (await list(`SrlmRun = 'rec' AND SrlmStage = 'done'`)).includes('srlm-rec'), 20_000, 250);
    expect(await list(`SrlmModel = 'rec.m2' AND ExecutionStatus = 'Completed'`)).toContain('"srlm-rec"');
    expect(await list(`SrlmRun = 'rec' AND SrlmIteration = 1 AND SrlmStage = 'summary'`)).toContain('srlm-rec-iter-1');
    expect(await list(`SrlmRun = 'no-such-run'`)).not.toContain('srlm-rec');
    fs.rmSync(path.join(tmp, 'work', 'runs', 'rec'), { recursive: true, force: true });
  });

  it('a schedule created, triggered and backfilled with `srlm schedule` starts runs from the promoted model of the lineage', async () => {
    const root = path.join(tmp, 'store-ref'); // where the reference run promoted rec.m2
    expect(JSON.parse(fs.readFileSync(path.join(root, 'models/rec/promoted.json'), 'utf8')).modelId).toBe('rec.m2');
    const file = path.join(tmp, 'nightly.json');
    fs.writeFileSync(file, JSON.stringify({ ...config('nightly', root), lineage: 'rec', baseModel: { promoted: 'rec' } }));
    const env = { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() };
    const srlm = async (...args: string[]) =>
      (await run(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'cli/srlm.ts'), 'schedule', ...args], { cwd: repo, env }))
        .stdout;
    expect(await srlm('create', 'nightly', '--config', file, '--cron', '0 3 1 1 *', '--note', 'weekly retraining')).toContain(
      'Created schedule srlm-schedule-nightly',
    );
    try {
      expect(JSON.parse(await srlm('list', '--json'))).toContainEqual({
        name: 'nightly',
        scheduleId: 'srlm-schedule-nightly',
        paused: false,
      });
      expect(await srlm('trigger', 'nightly')).toContain('triggered');
      const firstRun = async () =>
        (JSON.parse(await srlm('describe', 'nightly', '--json')) as { recentRuns: { workflowId: string }[] }).recentRuns[0]?.workflowId;
      await waitFor('the triggered run', async () => Boolean(await firstRun()), 30_000, 500);
      const workflowId = (await firstRun())!;
      expect(workflowId).toMatch(/^srlm-nightly-\d{4}-/);
      const result = (await client.workflow.getHandle(workflowId).result()) as RunResult;
      await recordHistory(testTemporalAddress(), 'run-scheduled-promoted', workflowId);
      // it started from the promoted model, trained in the same lineage, and promoted its own result
      expect(result.models[0]!.model.modelId).toBe('rec.m2');
      expect(result.run).toBe(scheduledRunName(workflowId));
      expect(result.finalModel.lineage).toBe('rec');
      expect(result.finalModel.modelId).toBe(`${result.run}.m2`);
      expect(JSON.parse(fs.readFileSync(path.join(root, 'models/rec/promoted.json'), 'utf8'))).toMatchObject({
        modelId: result.finalModel.modelId,
        previous: 'rec.m2',
      });
      expect(await srlm('pause', 'nightly', '--note', 'holiday')).toContain('paused');
      const described = await srlm('describe', 'nightly');
      expect(described).toContain('PAUSED — holiday');
      expect(described).toContain('cron "0 3 1 1 *"');
      expect(await srlm('unpause', 'nightly')).toContain('active');
      // a backfill over a past firing time starts one more run
      expect(await srlm('backfill', 'nightly', '--from', '2026-01-01T00:00:00Z', '--to', '2026-01-01T06:00:00Z')).toContain('backfilling');
      await waitFor(
        'the backfilled run',
        async () => (JSON.parse(await srlm('describe', 'nightly', '--json')) as { recentRuns: unknown[] }).recentRuns.length >= 2,
        30_000,
        500,
      );
      const recent = (JSON.parse(await srlm('describe', 'nightly', '--json')) as { recentRuns: { workflowId: string }[] }).recentRuns;
      const backfilled = recent.map((r) => r.workflowId).find((id) => id !== workflowId)!;
      expect(backfilled).toContain('2026-01-01T03:00:00Z');
      await client.workflow.getHandle(backfilled).result();
    } finally {
      expect(await srlm('delete', 'nightly')).toContain('deleted');
    }
    expect(JSON.parse(await srlm('list', '--json'))).toEqual([]);
  });

  it("docs/operations.md's `temporal schedule create` command makes a schedule whose runs work the same", async () => {
    const root = path.join(tmp, 'store-ref');
    const cfg = { ...config('tcli', root), lineage: 'rec', baseModel: { promoted: 'rec' } };
    const temporal = loadEnvPaths(repoRoot()).temporal;
    const a = ['--address', testTemporalAddress()];
    await run(temporal, [
      'schedule',
      'create',
      ...a,
      '--schedule-id',
      'srlm-schedule-tcli',
      '--cron',
      '0 3 * * 1',
      '--overlap-policy',
      'Skip',
      '--catchup-window',
      '6h',
      '--pause-on-failure',
      '--type',
      'srlmRun',
      '--task-queue',
      'srlm-orchestration',
      '--workflow-id',
      'srlm-tcli',
      '--input',
      JSON.stringify({ config: cfg, scheduled: true }),
    ]);
    try {
      await run(temporal, ['schedule', 'trigger', ...a, '--schedule-id', 'srlm-schedule-tcli']);
      const recent = async () => (await client.schedule.getHandle('srlm-schedule-tcli').describe()).info.recentActions[0];
      await waitFor('the triggered run', async () => Boolean(await recent()), 30_000, 500);
      const action = (await recent())!.action;
      const result = (await client.workflow.getHandle('workflow' in action ? action.workflow.workflowId : '').result()) as RunResult;
      expect(result.run).toMatch(/^tcli-\d{4}-/);
      expect(result.finalModel.lineage).toBe('rec');
    } finally {
      await run(temporal, ['schedule', 'delete', ...a, '--schedule-id', 'srlm-schedule-tcli']);
    }
  });

  it('`temporal workflow execute` with an invalid config fails at once with a message naming the key', async () => {
    const temporal = loadEnvPaths(repoRoot()).temporal;
    const input = JSON.stringify({ config: { ...config('badcli', path.join(tmp, 'store-bad')), judge: { samplez: 3 } } });
    const t0 = Date.now();
    const err = await run(temporal, [
      'workflow',
      'execute',
      '--address',
      testTemporalAddress(),
      '--type',
      'srlmRun',
      '--task-queue',
      'srlm-orchestration',
      '--workflow-id',
      'srlm-badcli',
      '--input',
      input,
    ]).then(
      () => null,
      (e: { stdout: string; stderr: string }) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.stdout + err!.stderr).toMatch(/unknown key "samplez" at "judge"/);
    expect(Date.now() - t0).toBeLessThan(20_000); // not retried
    const history = await client.workflow.getHandle('srlm-badcli').fetchHistory();
    expect(history.events?.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(1);
  });

  it('cancelling a run stops generation within seconds and keeps committed shards', async () => {
    const root = path.join(tmp, 'store-cancel');
    try {
      const handle = await client.workflow.start('srlmRun', {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: runWorkflowId('rec'),
        args: [{ config: config('rec', root) }],
      });
      const store = new LocalStore(root);
      // slow generation down once the prompts exist, so cancellation meets a running stage
      await waitFor('prompts', () => store.exists('runs/rec/iter-1/prompts/manifest.json'), 60_000);
      fake.opts.delayPerRequestMs = 500;
      // wait until candidates have a committed shard and more are being generated
      await waitFor(
        'a committed candidates shard',
        () => store.exists('runs/rec/iter-1/candidates/parts/all/shard-00000.commit.json'),
        60_000,
      );
      const abortedBefore = fake.aborted;
      const t0 = Date.now();
      // the Temporal CLI's cancel (`srlm cancel` sends the same request and waits like this)
      await run(loadEnvPaths(repoRoot()).temporal, [
        'workflow',
        'cancel',
        '--address',
        testTemporalAddress(),
        '--workflow-id',
        runWorkflowId('rec'),
      ]);
      let status = 'RUNNING';
      await waitFor('the run to stop', async () => (status = (await handle.describe()).status.name) !== 'RUNNING', 30_000, 100);
      const seconds = (Date.now() - t0) / 1000;
      expect(status).toBe('CANCELLED');
      await recordHistory(testTemporalAddress(), 'run-cancelled', runWorkflowId('rec'));
      expect(seconds).toBeLessThan(10);
      // the workflow waited for the activity to stop its compute
      expect(fake.aborted).toBe(abortedBefore + 1);
      const p = await handle.query(progressQuery).catch(() => null);
      if (p) expect(p.status).toBe('cancelled');
      // published artifacts stay valid
      expect((await runRecords(root, 'rec', 1))['1/prompts']).toEqual(reference['1/prompts']);
      const shard0 = await readCommittedShard(
        store,
        { run: 'rec', iteration: 1, stage: 'candidates' },
        'all',
        0,
        await firstShardRequests(tmp),
      );
      expect(shard0?.size).toBe(4);
    } finally {
      fake.opts.delayPerRequestMs = 0;
    }
  });
});

/** The requests of candidates shard 0, as the activity wrote them for the compute process. */
async function firstShardRequests(tmp: string) {
  const file = path.join(tmp, 'work', 'runs', 'rec', 'iter-1', 'candidates', 'parts', 'all', 'shard-00000.requests.jsonl');
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
