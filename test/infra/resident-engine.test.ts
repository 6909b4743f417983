/**
 * Resident models (`compute.resident`, backends/resident-compute.ts) with the real model:
 * SmolLM2-135M-Instruct on CPU behind `python -m srlm_compute serve`, started by the pool.
 * One server serves several generation jobs (the model loads once), a server killed between
 * jobs is replaced, an idle one is stopped, training stops them all first, a worker killed with
 * SIGKILL takes its server along, and a bad model directory is a non-retryable error.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeEvent, GenerateJob, GenerateOutput, GenerateRequest } from '../../backends/compute';
import { localServerArgs, ResidentCompute, ResidentPool, StopResidentsBeforeTraining } from '../../backends/resident-compute';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { FakeCompute } from '../../testing/fake-compute';
import { packagedModel } from '../../testing/packaged-model';
import { waitFor } from '../helpers/stack';
import { pidAlive } from '../helpers/tiny-model';

const MAX_TOKENS = 8;
const RESIDENT = { idleSeconds: 600, affinitySeconds: 30, maxModels: 1, requestTimeoutSeconds: 300 };

let tmp: string;
let model: string;
let python: string;
const pools: ResidentPool[] = [];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-resident-'));
  const env = loadEnvPaths();
  python = env.python;
  model = packagedModel(env.python, env.cacheDir, tmp);
}, 240_000);

afterAll(async () => {
  for (const p of pools) await p.stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function pool(over: { startTimeoutMs?: number } = {}): ResidentPool {
  const p = new ResidentPool({
    python,
    packageDir: path.join(repoRoot(), 'compute'),
    logFile: path.join(tmp, 'servers.log'),
    killGraceMs: 5000,
    ...over,
  });
  pools.push(p);
  return p;
}

let jobNo = 0;
function makeJob(ids: string[], modelDir = model): GenerateJob {
  const dir = path.join(tmp, `job-${jobNo++}`);
  fs.mkdirSync(dir);
  const input = path.join(dir, 'shard-0.requests.jsonl');
  const reqs: GenerateRequest[] = ids.map((id, i) => ({
    id,
    messages: [{ role: 'user', content: `Name a fruit. (${id})` }],
    n: 2,
    temperature: 0.7,
    top_p: 0.9,
    max_new_tokens: MAX_TOKENS,
    seed: i,
  }));
  fs.writeFileSync(input, reqs.map((r) => JSON.stringify(r) + '\n').join(''));
  return {
    model: modelDir,
    shards: [{ input, output: path.join(dir, 'shard-0.outputs.jsonl') }],
    device: 'cpu',
    batch_size: 4,
    threads: 2,
  };
}

function outputs(job: GenerateJob): GenerateOutput[] {
  return fs
    .readFileSync(job.shards![0]!.output, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as GenerateOutput);
}

function expectAnswered(job: GenerateJob, ids: string[]): void {
  const outs = outputs(job);
  expect(outs.map((o) => o.id).sort()).toEqual([...ids].sort());
  for (const o of outs) {
    expect(o.outputs).toHaveLength(2);
    for (const c of o.outputs) expect(c.tokens).toBeGreaterThan(0);
  }
  expect(outs.flatMap((o) => o.outputs).filter((c) => c.text.trim()).length).toBeGreaterThan(0);
}

describe('resident local engine (real model, compute/ serve)', () => {
  it('serves three jobs from one server: the model loads once, later jobs reuse it', async () => {
    const p = pool();
    const engine = new ResidentCompute(p, RESIDENT, new FakeCompute());
    const dones: ComputeEvent[] = [];
    const started = Date.now();
    for (let k = 0; k < 3; k++) {
      const ids = [`a${k}-0`, `a${k}-1`, `a${k}-2`];
      const job = makeJob(ids);
      dones.push(await engine.generate(job, {}));
      expectAnswered(job, ids);
    }
    const servers = p.list();
    expect(servers).toHaveLength(1);
    expect(servers[0]).toMatchObject({ model, engine: 'local', jobs: 3, inUse: 0 });
    expect(pidAlive(servers[0]!.pid!)).toBe(true);
    const resident = dones.map((d) => d.resident as { jobs: number; reused: boolean; load_seconds: number });
    expect(resident.map((r) => r.reused)).toEqual([false, true, true]);
    expect(new Set(resident.map((r) => r.load_seconds)).size).toBe(1); // one load
    console.log(`[resident] load ${resident[0]!.load_seconds.toFixed(1)} s; 3 jobs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // the server answers by the resident name
    const models = (await (await fetch(`${servers[0]!.url}/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['srlm-resident']);
  }, 240_000);

  it('a server killed between jobs is replaced by a new one for the next job', async () => {
    const p = pool();
    const engine = new ResidentCompute(p, RESIDENT, new FakeCompute());
    await engine.generate(makeJob(['k-0']), {});
    const first = p.list()[0]!;
    process.kill(first.pid!, 'SIGKILL');
    await waitFor('the killed server to leave the pool', () => p.list().length === 0, 30_000);
    const job = makeJob(['k-1', 'k-2']);
    const done = await engine.generate(job, {});
    expectAnswered(job, ['k-1', 'k-2']);
    const second = p.list()[0]!;
    expect(second.pid).not.toBe(first.pid);
    expect(done.resident).toMatchObject({ reused: false });
  }, 240_000);

  it('an idle server is stopped after idleSeconds; training stops the servers before it runs', async () => {
    const p = pool();
    const idle = new ResidentCompute(p, { ...RESIDENT, idleSeconds: 1 }, new FakeCompute());
    await idle.generate(makeJob(['i-0']), {});
    const pid = p.list()[0]!.pid!;
    await waitFor('the idle server to stop', () => !pidAlive(pid) && p.list().length === 0, 30_000);

    // as defaultDeps wires a worker: the local backend stops the pool's servers before it trains
    const wrapped = new FakeCompute();
    const local = new StopResidentsBeforeTraining(p, wrapped);
    const busy = new ResidentCompute(p, RESIDENT, local);
    await busy.generate(makeJob(['t-0']), {});
    const pid2 = p.list()[0]!.pid!;
    let aliveWhenTraining: boolean | null = null;
    const train = wrapped.train.bind(wrapped);
    wrapped.train = (job, ctl) => {
      aliveWhenTraining = pidAlive(pid2);
      return train(job, ctl);
    };
    const trainDir = path.join(tmp, 'train');
    fs.mkdirSync(trainDir);
    const data = path.join(trainDir, 'data.jsonl');
    fs.writeFileSync(data, JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' }) + '\n');
    await local.train(
      {
        mode: 'dpo',
        model,
        ref_model: null,
        data,
        output: path.join(trainDir, 'out'),
        lr: 1e-6,
        lr_end: 0,
        epochs: 1,
        batch_size: 1,
        grad_accum: 1,
        dropout: 0,
        beta: 0.1,
        max_length: 64,
        seed: 0,
        device: 'cpu',
        threads: 1,
        max_steps: 1,
        gradient_checkpointing: false,
      },
      {},
    );
    expect(aliveWhenTraining).toBe(false);
    expect(p.list()).toEqual([]);
  }, 240_000);

  it('a bad model directory fails at once, not retryable, naming the directory', async () => {
    const p = pool();
    const engine = new ResidentCompute(p, RESIDENT, new FakeCompute());
    const bad = path.join(tmp, 'no-model');
    fs.mkdirSync(bad);
    const err = await engine.generate(makeJob(['b-0'], bad), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).type).toBe('InvalidComputeInput');
    expect((err as ApplicationFailure).message).toContain(bad);
    expect(p.list()).toEqual([]);
  }, 120_000);

  it('a worker killed with SIGKILL takes its resident server along (the server dies with its parent)', async () => {
    // a Node process holding a pool, as a worker does; it prints the server's pid once it is up
    const script = path.join(tmp, 'holder.ts');
    fs.writeFileSync(
      script,
      `import { ResidentCompute, ResidentPool } from ${JSON.stringify(path.join(repoRoot(), 'backends/resident-compute'))};
import { FakeCompute } from ${JSON.stringify(path.join(repoRoot(), 'testing/fake-compute'))};
const pool = new ResidentPool({ python: ${JSON.stringify(python)}, packageDir: ${JSON.stringify(path.join(repoRoot(), 'compute'))} });
const engine = new ResidentCompute(pool, ${JSON.stringify(RESIDENT)}, new FakeCompute());
engine.generate(${JSON.stringify(makeJob(['w-0']))}, {}).then(() => { console.log('pid ' + pool.list()[0].pid); setInterval(() => undefined, 1000); });
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise<number>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on('line', (l) => {
        const m = /^pid (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    expect(pidAlive(pid)).toBe(true);
    child.kill('SIGKILL');
    await waitFor('the server to die with its worker', () => !pidAlive(pid), 15_000);
  }, 240_000);

  it("vllm engine: starts vLLM's OpenAI server (a FAKE of its entry point over compute/ serve) on a free port through the tether, waits until /v1/models answers, and generates on it", async () => {
    const compute = path.join(repoRoot(), 'compute');
    const log = path.join(tmp, 'fake-vllm.log');
    const p = new ResidentPool({
      python,
      vllmPython: python,
      packageDir: compute,
      env: {
        PYTHONPATH: `${compute}${path.delimiter}${path.join(compute, 'tests', 'fakes')}`,
        FAKE_VLLM_LOG: log,
        FAKE_VLLM_START_DELAY: '2',
      },
    });
    pools.push(p);
    const vllm = {
      kind: 'vllm' as const,
      tensor_parallel_size: 2,
      gpu_memory_utilization: 0.5,
      max_model_len: 4096,
      dtype: 'bfloat16' as const,
      requests_per_call: 64,
    };
    const engine = new ResidentCompute(p, RESIDENT, new FakeCompute(), vllm);
    const ids = ['v-0', 'v-1'];
    const job = makeJob(ids);
    const done = await engine.generate(job, {});
    expectAnswered(job, ids);
    expect(done.resident).toMatchObject({ reused: false });
    expect((done.resident as { load_seconds: number }).load_seconds).toBeGreaterThan(2); // it waited for the server
    const [line] = fs
      .readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { server_argv: string[]; pid: number });
    const argv = line!.server_argv;
    const flag = (name: string): string | undefined => argv[argv.indexOf(name) + 1];
    expect(flag('--model')).toBe(model);
    expect(flag('--served-model-name')).toBe('srlm-resident');
    expect(flag('--tensor-parallel-size')).toBe('2');
    expect(flag('--gpu-memory-utilization')).toBe('0.5');
    expect(flag('--dtype')).toBe('bfloat16');
    expect(flag('--max-model-len')).toBe('4096');
    expect(p.list()[0]).toMatchObject({ engine: 'vllm', url: `http://127.0.0.1:${flag('--port')}/v1` });
    // the tether exec()s the server: the pool's child is the server process itself
    expect(p.list()[0]!.pid).toBe(line!.pid);
    await p.stopAll();
    expect(pidAlive(line!.pid)).toBe(false);
  }, 240_000);

  it('a resident server does not keep its worker process alive: the process ends when its work does, and takes the server along', async () => {
    const script = path.join(tmp, 'done.ts');
    fs.writeFileSync(
      script,
      `import { ResidentCompute, ResidentPool } from ${JSON.stringify(path.join(repoRoot(), 'backends/resident-compute'))};
import { FakeCompute } from ${JSON.stringify(path.join(repoRoot(), 'testing/fake-compute'))};
const pool = new ResidentPool({ python: ${JSON.stringify(python)}, packageDir: ${JSON.stringify(path.join(repoRoot(), 'compute'))} });
const engine = new ResidentCompute(pool, ${JSON.stringify(RESIDENT)}, new FakeCompute());
engine.generate(${JSON.stringify(makeJob(['d-0']))}, {}).then(() => console.log('pid ' + pool.list()[0].pid));
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
    let pid = 0;
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const m = /^pid (\d+)$/.exec(l);
      if (m) pid = Number(m[1]);
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    expect(pid).toBeGreaterThan(0);
    await waitFor('the server to end with its worker', () => !pidAlive(pid), 15_000);
  }, 240_000);

  it('builds the argv of compute/ serve from the job settings', () => {
    expect(localServerArgs({ modelDir: '/m', device: 'cuda', batchSize: 32, threads: 0, idleMs: 1, maxModels: 1 })).toEqual([
      '-m',
      'srlm_compute',
      'serve',
      '--model',
      '/m',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--device',
      'cuda',
      '--batch-size',
      '32',
      '--threads',
      '0',
      '--served-model-name',
      'srlm-resident',
    ]);
  });
});
