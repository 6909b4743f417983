/**
 * Training faults against real processes: the Python training process (TRL) is SIGKILLed
 * mid-training and the retried attempt resumes from the newest checkpoint in the store; a
 * run cancelled mid-training stops its training process within seconds. The model is a tiny
 * randomly initialised Llama built from SmolLM2's tokenizer (`make-tiny-model`), so each
 * step takes milliseconds: the point is the machinery, not the model.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNewestCheckpoint } from '../../store/checkpoints';
import { PythonCompute } from '../../backends/compute';
import { LocalStore } from '../../store/store';
import { ModelManifest, type RunConfigInput } from '../../core/schemas';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { runWorkflowId, TASK_QUEUES } from '../../workflows/contract';
import { startTestStack, type TestStack, waitFor } from '../helpers/stack';
import { testTemporalAddress } from '../helpers/temporal';
import { makeTinyModel, pidAlive } from '../helpers/tiny-model';

const repo = repoRoot();
const env = loadEnvPaths(repo);
const EVERY = 5;
// 16 examples, batch 2, 3 epochs (about 1 s per step on 2 CPU cores: the 49k-token vocabulary dominates)
const STEPS = 24;

/** Pids of running `srlm_compute train` processes whose job file is under `dir` (this test's own). */
async function trainPids(dir: string): Promise<number[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,args=']);
  return stdout
    .split('\n')
    .filter((l) => l.includes('srlm_compute train --job') && l.includes(dir))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe('fault tests: the training process (real TRL, tiny model)', () => {
  let tmp: string;
  let tiny: string;
  let client: Client;
  let stack: TestStack;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-train-fault-'));
    const compute = new PythonCompute({ python: env.python, packageDir: path.join(repo, 'compute'), workDir: path.join(tmp, 'jobs') });
    tiny = await makeTinyModel(compute, env.python, repo, env.cacheDir, tmp);

    stack = await startTestStack({ address: testTemporalAddress(), compute, dir: tmp, cacheDir: env.cacheDir, heartbeatMs: 500 });
    client = stack.client;
  }, 600_000);

  afterAll(async () => {
    await client?.workflow
      .getHandle(runWorkflowId('tr'))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.stop();
  });

  function config(root: string, epochs: number): RunConfigInput {
    return {
      run: 'tr',
      baseModel: { path: tiny },
      seed: { ift: path.join(repo, 'seed/ift.jsonl'), maxIft: 16 },
      iterations: 0,
      sft: { lr: 1e-3, lrEnd: 1e-4, batchSize: 2, epochs, maxLength: 256, dropout: 0.1 },
      compute: { device: 'cpu', threads: 0, gradientCheckpointing: false },
      durability: { checkpointEvery: EVERY, retryInitialSeconds: 0.5, heartbeatTimeoutSeconds: 60, maximumAttempts: 3 },
      store: { root },
    };
  }

  const execute = (c: RunConfigInput) =>
    client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('tr'),
      args: [{ config: c }],
      workflowExecutionTimeout: '10 minutes',
    });

  const m1Manifest = (root: string) =>
    ModelManifest.parse(JSON.parse(fs.readFileSync(path.join(root, 'models/tr/tr.m1/manifest.json'), 'utf8')));

  /** The newest published checkpoint step of the run's M1 training, or 0. */
  async function publishedStep(root: string): Promise<number> {
    const base = path.join(root, 'runs/tr/train/m1/checkpoints');
    if (!fs.existsSync(base)) return 0;
    let best = 0;
    for (const job of fs.readdirSync(base)) {
      const scan = await findNewestCheckpoint(new LocalStore(root), `runs/tr/train/m1/checkpoints/${job}`);
      best = Math.max(best, scan.newest?.step ?? 0);
    }
    return best;
  }

  let referenceWeights: string;

  it('a fault-free reference training', { timeout: 300_000 }, async () => {
    const root = path.join(tmp, 'store-ref');
    await execute(config(root, 3));
    const m = m1Manifest(root);
    referenceWeights = m.files.find((f) => f.path === 'model.safetensors')!.sha256;
    expect(m.metrics.steps).toBe(STEPS);
    expect(m.metrics.resumed_from_step).toBe(0);
    // checkpoints are removed once the model is published
    const ckpts = path.join(root, 'runs/tr/train/m1/checkpoints');
    expect(fs.existsSync(ckpts) ? fs.readdirSync(ckpts) : []).toEqual([]);
    fs.rmSync(path.join(tmp, 'work', 'runs', 'tr'), { recursive: true, force: true });
  });

  it(
    'SIGKILL of the training process: the retry resumes from the last checkpoint, losing at most the checkpoint interval, and ends with the same weights',
    { timeout: 300_000 },
    async () => {
      const root = path.join(tmp, 'store-kill');
      const result = execute(config(root, 3));
      await waitFor('the second checkpoint', async () => (await publishedStep(root)) >= 2 * EVERY);
      const pids = await trainPids(tmp);
      expect(pids).toHaveLength(1);
      const checkpointAtKill = await publishedStep(root);
      process.kill(-pids[0]!, 'SIGKILL');
      await result;
      const m = m1Manifest(root);
      const resumed = Number(m.metrics.resumed_from_step);
      expect(resumed).toBeGreaterThanOrEqual(checkpointAtKill);
      expect(resumed % EVERY).toBe(0);
      expect(m.metrics.steps).toBe(STEPS);
      expect(Number(m.metrics.steps_run)).toBe(STEPS - resumed);
      // resuming restored weights, optimizer, scheduler, RNG and data position exactly
      expect(m.files.find((f) => f.path === 'model.safetensors')!.sha256).toBe(referenceWeights);
      fs.rmSync(path.join(tmp, 'work', 'runs', 'tr'), { recursive: true, force: true });
    },
  );

  it('cancelling a run mid-training stops the training process within seconds and keeps its checkpoint', { timeout: 300_000 }, async () => {
    const root = path.join(tmp, 'store-cancel');
    const handle = await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('tr'),
      args: [{ config: config(root, 100) }], // long enough to cancel mid-training (sft.epochs is bounded at 100)
    });
    await waitFor('a published checkpoint', async () => (await publishedStep(root)) >= EVERY);
    const [pid] = await trainPids(tmp);
    expect(pid).toBeDefined();
    const t0 = Date.now();
    // `srlm cancel` requests cancellation and waits until the run has stopped
    const out = await promisify(execFile)(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'cli/srlm.ts'), 'cancel', 'tr'], {
      cwd: repo,
      env: { ...process.env, TEMPORAL_ADDRESS: testTemporalAddress() },
    });
    const seconds = (Date.now() - t0) / 1000;
    expect(out.stdout).toContain('run "tr": cancelled.');
    expect(pidAlive(pid!)).toBe(false);
    expect(seconds).toBeLessThan(15);
    console.log(`[fault] cancel -> training process gone and run cancelled in ${seconds.toFixed(1)} s`);
    // published artifacts are intact: M0's manifest, the seed stage, the last checkpoint
    const store = new LocalStore(root);
    expect(await store.exists('models/tr/tr.m0/manifest.json')).toBe(true);
    expect(await store.exists('runs/tr/iter-0/seed-ift/manifest.json')).toBe(true);
    expect(await store.exists('models/tr/tr.m1/manifest.json')).toBe(false);
    expect(await publishedStep(root)).toBeGreaterThanOrEqual(EVERY);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
  });
});
