/**
 * The training image's entrypoint (backends/train-entry.ts) as a real process: its environment is
 * what the backends give the container (trainingJobManifest's pod env, createTrainingJobRequest's
 * hyperparameters), the S3 side a real Versity S3 Gateway, the training compute/ under
 * `srlm_compute.launch` (torchrun, one node, one CPU process) with the tiny random Llama.
 *
 * Kubernetes: a pod stopped with SIGTERM after its first checkpoint upload exits 143 with every
 * process of the launch gone; the next pod resumes from that checkpoint and uploads the model;
 * two pods (node ranks 0 and 1 on this host) train one 2-rank job over gloo.
 * SageMaker: a temporary directory stands in for /opt/ml. Bad settings and bad jobs exit 2.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PythonCompute, type TrainJob } from '../../backends/compute';
import { type KubernetesSettings, trainingJobManifest } from '../../backends/k8s-train';
import type { StagedInputs } from '../../backends/remote-train';
import { S3Store, s3ClientConfig } from '../../store/s3store';
import { createTrainingJobRequest, type SageMakerSettings } from '../../backends/sagemaker-train';
import { TrainingBackend } from '../../core/schemas';
import { freePort } from '../../infra/dev-server';
import { loadEnvPaths, repoRoot, s3ServerBin } from '../../infra/paths';
import { type S3ServerHandle, startS3Server } from '../../infra/s3-server';
import { makeTinyModel } from '../helpers/tiny-model';
import { trainJobFixture } from '../helpers/train-job';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const repo = repoRoot();
const paths = loadEnvPaths(repo);
const ACCESS = 'srlmtestaccess';
const SECRET = `srlm-test-secret-${randomBytes(6).toString('hex')}`;
const BUCKET = 'srlm-train-entry';
const PREFIX = 'runs/r1/train/m1/remote/0123456789ab';

let tmp: string;
let server: S3ServerHandle;
let store: S3Store;
let tiny: string;
let seq = 0;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The entrypoint as the image runs it; `onStderr` sees its log lines as they come. */
function entry(env: Record<string, string>, args: string[] = [], onStderr?: (line: string, pid: number) => void): Promise<Exit> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('SRLM_') && !k.startsWith('SM_') && !k.startsWith('AWS_')),
  );
  const child = spawn(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'backends/train-entry.ts'), ...args], {
    cwd: repo,
    env: {
      ...base,
      SRLM_PYTHON: paths.python,
      SRLM_CACHE_DIR: path.join(tmp, 'cache'),
      AWS_ACCESS_KEY_ID: ACCESS,
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: server.endpoint,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    partial += c.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onStderr?.(l, child.pid!);
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** compute/'s JSON events in an entrypoint's stdout. */
function events(out: string, kind: string): Record<string, unknown>[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.event === kind);
}

/** Processes whose command line names `dir` (the launcher, torchrun's agent, the ranks). */
async function processesNaming(dir: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,args=']);
  return stdout.split('\n').filter((l) => l.includes(dir) && !l.includes(' ps '));
}

/** Checks a safetensors file's header against its size; returns its tensor names. */
function safetensorsTensors(bytes: Buffer): string[] {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
  const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__');
  expect(Math.max(...tensors.map(([, t]) => t.data_offsets![1]))).toBe(bytes.length - 8 - n);
  return tensors.map(([k]) => k);
}

function writeData(file: string, rows: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    Array.from({ length: rows }, (_, i) =>
      JSON.stringify({ id: String(i), prompt: `Question ${i}: what is ${i} plus ${i}?`, completion: `The answer is ${2 * i}.` }),
    ).join('\n') + '\n',
  );
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-train-entry-'));
  server = await startS3Server({ bin: s3ServerBin(paths), dir: path.join(tmp, 's3'), accessKey: ACCESS, secretKey: SECRET, quiet: true });
  const client = new S3Client({
    ...s3ClientConfig({ endpoint: server.endpoint }),
    credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
  });
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  store = new S3Store({ bucket: BUCKET, prefix: '', client, cacheDir: path.join(tmp, 'test-cache') });
  const compute = new PythonCompute({ python: paths.python, packageDir: path.join(repo, 'compute'), workDir: path.join(tmp, 'jobs') });
  tiny = await makeTinyModel(compute, paths.python, repo, paths.cacheDir, tmp);
}, 600_000);

afterAll(async () => {
  await server?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('train-entry: Kubernetes contract (S3 on Versity S3 Gateway)', () => {
  const settings = TrainingBackend.parse({ kind: 'kubernetes', image: 'srlm-train:1', gpusPerNode: 0 }) as KubernetesSettings;

  /** Stages model and data as the backend does; returns the environment of pod 0 (rendezvous on this host). */
  async function stage(
    rows: number,
    over: Partial<TrainJob> = {},
    backend = settings,
  ): Promise<{ env: Record<string, string>; inputs: StagedInputs }> {
    const p = `${PREFIX}-${++seq}`;
    for (const f of fs.readdirSync(tiny)) await store.putFile(`${p}/input/model/${f}`, path.join(tiny, f));
    const data = path.join(tmp, `data-${seq}`, 'sft.jsonl');
    writeData(data, rows);
    await store.putFile(`${p}/input/data/sft.jsonl`, data);
    const inputs = {
      modelUri: store.uri(`${p}/input/model`),
      dataUri: store.uri(`${p}/input/data/sft.jsonl`),
      outputUri: store.uri(`${p}/output`),
      checkpointUri: store.uri(`${p}/checkpoints`),
    };
    const job = trainJobFixture({
      mode: 'sft',
      model: tiny,
      data,
      output: path.join(tmp, 'unused'),
      lr: 1e-3,
      lr_end: 1e-4,
      batch_size: 2,
      max_length: 128,
      device: 'cpu',
      checkpoint_every: 2,
      ...over,
    });
    const pod = trainingJobManifest(backend, `srlm-entry-${seq}`, job, inputs).spec!.template.spec!.containers[0]!;
    const env = Object.fromEntries((pod.env ?? []).map((e) => [e.name, e.value!]));
    // one node on this host: rank 0's address is ours (the pod would resolve <job>-0.<job>)
    return {
      env: {
        ...env,
        SRLM_MASTER_ADDR: '127.0.0.1',
        SRLM_MASTER_PORT: String(await freePort()),
        JOB_COMPLETION_INDEX: '0',
        SRLM_TRAIN_WORK_DIR: path.join(tmp, `work-${seq}`),
      },
      inputs,
    };
  }

  const key = (uri: string): string => uri.slice(`s3://${BUCKET}/`.length);

  it('a pod stopped after its first checkpoint upload exits 143; the next resumes from it and uploads the model', async () => {
    const { env, inputs } = await stage(32); // 16 steps, a checkpoint every 2
    expect(JSON.parse(env.SRLM_TRAIN_JOB!).distributed).toEqual({ strategy: 'ddp' });
    expect(env.SRLM_NPROC_PER_NODE).toBe('1');

    let running: string[] = [];
    const first = await entry(env, [], (line, pid) => {
      if (/checkpoint at step \d+ uploaded/.test(line) && running.length === 0) {
        void processesNaming(env.SRLM_TRAIN_WORK_DIR!).then((p) => {
          running = p;
          process.kill(pid, 'SIGTERM'); // what Kubernetes does to a pod it deletes or evicts
        });
      }
    });
    expect(first.stderr).toContain('SIGTERM: stopping the launcher');
    expect(first.code, first.stderr).toBe(143);
    expect(events(first.stdout, 'error').at(-1)).toMatchObject({ message: 'cancelled by SIGTERM' });
    // the launcher, torchrun's agent and the rank were running, and are gone
    expect(running.filter((l) => l.includes('srlm_compute.launch')).length).toBe(1);
    expect(running.filter((l) => l.includes('torch.distributed.run')).length).toBe(1);
    expect(await processesNaming(env.SRLM_TRAIN_WORK_DIR!)).toEqual([]);
    const stopped = await store.list(key(inputs.checkpointUri));
    const steps = [...new Set(stopped.map((k) => /step-(\d{6})\/manifest\.json$/.exec(k)?.[1]).filter(Boolean))].map(Number);
    expect(steps.length).toBe(1); // the newest complete one only
    expect(steps[0]).toBeGreaterThanOrEqual(2);
    expect(steps[0]).toBeLessThan(16);
    expect(await store.list(key(inputs.outputUri))).toEqual([]);

    const second = await entry(env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`resuming from the checkpoint at step ${steps[0]}`);
    expect(events(second.stdout, 'start')[0]).toMatchObject({ resumed_from_step: steps[0] });
    expect(events(second.stdout, 'done')[0]).toMatchObject({ steps: 16, steps_run: 16 - steps[0]!, resumed_from_step: steps[0] });

    // the model: config, weights, tokenizer and metrics under SRLM_OUTPUT_URI
    const out = key(inputs.outputUri);
    const files = (await store.list(out)).map((k) => k.slice(out.length + 1));
    expect(files).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'metrics.json']));
    expect(JSON.parse((await store.getBytes(`${out}/config.json`)).toString())).toMatchObject({
      model_type: 'llama',
      hidden_size: 64,
      num_hidden_layers: 2,
    });
    expect(safetensorsTensors(await store.getBytes(`${out}/model.safetensors`))).toContain('model.embed_tokens.weight');
    expect(JSON.parse((await store.getBytes(`${out}/metrics.json`)).toString())).toMatchObject({
      steps: 16,
      resumed_from_step: steps[0],
      world_size: 1,
    });
    // the second pod's checkpoints went up too (the newest kept: step 14, none at the last step)
    const kept = (await store.list(key(inputs.checkpointUri))).filter((k) => k.endsWith('/manifest.json'));
    expect(kept).toEqual([`${key(inputs.checkpointUri)}/step-000014/manifest.json`]);
  }, 300_000);

  it('two pods (JOB_COMPLETION_INDEX 0 and 1) train as one torchrun job of 2 ranks (gloo); pod 0 uploads the model, both exit 0', async () => {
    const twoNodes = TrainingBackend.parse({ kind: 'kubernetes', image: 'srlm-train:1', gpusPerNode: 0, nodes: 2 }) as KubernetesSettings;
    const { env, inputs } = await stage(8, { checkpoint_every: 2 }, twoNodes); // 4 steps of 2 examples, one per rank
    expect(env.SRLM_NNODES).toBe('2');
    const pod1 = { ...env, JOB_COMPLETION_INDEX: '1', SRLM_TRAIN_WORK_DIR: `${env.SRLM_TRAIN_WORK_DIR}-node1` };
    const [node0, node1] = await Promise.all([entry(env), entry(pod1)]);
    expect(node0.code, node0.stderr).toBe(0);
    expect(node1.code, node1.stderr).toBe(0);
    expect(node1.stderr).toContain('kubernetes: node 1 of 2, 1 process(es) per node');
    expect(events(node0.stdout, 'start')[0]).toMatchObject({ world_size: 2, strategy: 'ddp', per_device_batch_size: 1 });
    expect(events(node0.stdout, 'done')[0]).toMatchObject({ steps: 4 });
    // rank 1 prints no progress; node 1 uploads nothing
    expect(events(node1.stdout, 'progress')).toEqual([]);
    expect(node1.stderr).not.toContain('uploaded');
    expect(node0.stderr).toContain(`model uploaded to ${inputs.outputUri}`);
    const out = key(inputs.outputUri);
    expect(JSON.parse((await store.getBytes(`${out}/metrics.json`)).toString())).toMatchObject({ steps: 4, world_size: 2 });
    expect((await store.list(key(inputs.checkpointUri))).filter((k) => k.endsWith('/manifest.json'))).toEqual([
      `${key(inputs.checkpointUri)}/step-000002/manifest.json`,
    ]);
  }, 240_000);

  it('bad settings and a bad job exit 2 with a message naming them; nothing is uploaded', async () => {
    const { env, inputs } = await stage(4);
    const nodes = await entry({ ...env, SRLM_NNODES: 'two' });
    expect(nodes.code).toBe(2);
    expect(nodes.stderr).toContain('invalid input: SRLM_NNODES must be an integer from 1 to 1024, got "two"');
    const rank = await entry({ ...env, JOB_COMPLETION_INDEX: '1' });
    expect(rank.code).toBe(2);
    expect(rank.stderr).toContain('JOB_COMPLETION_INDEX must be an integer from 0 to 0, got "1"');
    const { SRLM_OUTPUT_URI: _o, ...noOutput } = env;
    const missing = await entry(noOutput);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('SRLM_OUTPUT_URI is not set');
    const noData = await entry({ ...env, SRLM_DATA_URI: `${inputs.dataUri}.missing` });
    expect(noData.code).toBe(2);
    expect(noData.stderr).toContain(`SRLM_DATA_URI ${inputs.dataUri}.missing: no such object`);

    // compute/ refuses the job (found by the launcher before any rank starts)
    const bad = await entry({ ...env, SRLM_TRAIN_JOB: JSON.stringify({ ...JSON.parse(env.SRLM_TRAIN_JOB!), lr: -1 }) });
    expect(bad.code, bad.stderr).toBe(2);
    expect(events(bad.stdout, 'error')[0]).toMatchObject({
      kind: 'invalid_input',
      message: expect.stringContaining("key 'lr' must be > 0"),
    });
    expect(await store.list(key(inputs.outputUri))).toEqual([]);
  }, 120_000);
});

describe('train-entry: SageMaker contract (a temporary directory as /opt/ml)', () => {
  const settings = TrainingBackend.parse({
    kind: 'sagemaker',
    image: '1.dkr.ecr.x.amazonaws.com/srlm-train:1',
    roleArn: 'arn:aws:iam::123456789012:role/t',
    instanceType: 'ml.m5.xlarge',
    nprocPerNode: 1,
  }) as SageMakerSettings;

  /** The container's /opt/ml as SageMaker lays it out, with the backend's hyperparameters. */
  function optMl(over: Record<string, unknown> = {}): string {
    const root = path.join(tmp, `opt-ml-${++seq}`);
    fs.cpSync(tiny, path.join(root, 'input/data/model'), { recursive: true });
    writeData(path.join(root, 'input/data/train/sft.jsonl'), 6);
    const job = trainJobFixture({
      mode: 'sft',
      model: tiny,
      data: '/w/sft.jsonl',
      output: '/w/out',
      lr: 1e-3,
      lr_end: 1e-4,
      batch_size: 2,
      max_length: 128,
      device: 'cpu',
      checkpoint_every: 1,
    });
    const hp = createTrainingJobRequest(settings, `srlm-sm-${seq}`, job, {
      modelUri: 's3://b/m',
      dataUri: 's3://b/d/sft.jsonl',
      outputUri: 's3://b/o',
      checkpointUri: 's3://b/c',
    }).HyperParameters!;
    const srlmJob = { ...JSON.parse(hp.srlm_job!), ...over };
    fs.mkdirSync(path.join(root, 'input/config'), { recursive: true });
    fs.writeFileSync(path.join(root, 'input/config/hyperparameters.json'), JSON.stringify({ ...hp, srlm_job: JSON.stringify(srlmJob) }));
    fs.writeFileSync(
      path.join(root, 'input/config/resourceconfig.json'),
      JSON.stringify({ current_host: 'algo-1', hosts: ['algo-1'], network_interface_name: 'eth0' }),
    );
    fs.mkdirSync(path.join(root, 'model'));
    return root;
  }

  it('trains from the channels, keeps the newest checkpoint in <root>/checkpoints and writes the model to <root>/model', async () => {
    const root = optMl();
    const run = await entry(
      { SRLM_SAGEMAKER_ROOT: root, SRLM_TRAIN_WORK_DIR: path.join(tmp, `work-${seq}`), SRLM_MASTER_PORT: String(await freePort()) },
      ['train'],
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('sagemaker: node 0 of 1, 1 process(es) per node');
    expect(events(run.stdout, 'done')[0]).toMatchObject({ steps: 3 });
    // SageMaker's metric definitions read these lines
    expect(run.stdout).toMatch(/"step": 3/);
    expect(fs.readdirSync(path.join(root, 'model'))).toEqual(
      expect.arrayContaining(['config.json', 'model.safetensors', 'metrics.json', 'tokenizer.json']),
    );
    expect(safetensorsTensors(fs.readFileSync(path.join(root, 'model/model.safetensors')))).toContain('model.embed_tokens.weight');
    // checkpoints at steps 1 and 2 (none at the last); the older one removed
    expect(fs.readdirSync(path.join(root, 'checkpoints'))).toEqual(['step-000002']);
    expect(fs.existsSync(path.join(root, 'output/failure'))).toBe(false);
  }, 240_000);

  it('an invalid job exits 2 and leaves "InvalidComputeInput: ..." in <root>/output/failure; missing files are named', async () => {
    const root = optMl({ batch_size: 0 });
    const bad = await entry({ SRLM_SAGEMAKER_ROOT: root, SRLM_TRAIN_WORK_DIR: path.join(tmp, `work-${seq}`) }, ['train']);
    expect(bad.code, bad.stderr).toBe(2);
    const failure = fs.readFileSync(path.join(root, 'output/failure'), 'utf8');
    expect(failure).toMatch(/^InvalidComputeInput: .*batch_size/);
    expect(fs.readdirSync(path.join(root, 'model'))).toEqual([]);

    fs.rmSync(path.join(root, 'input/config/resourceconfig.json'));
    fs.rmSync(path.join(root, 'output'), { recursive: true });
    const noConfig = await entry({ SRLM_SAGEMAKER_ROOT: root }, ['train']);
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toContain(`${path.join(root, 'input/config/resourceconfig.json')}: cannot read it (ENOENT)`);
    expect(fs.readFileSync(path.join(root, 'output/failure'), 'utf8')).toMatch(/^InvalidComputeInput: .*resourceconfig\.json/);

    // neither contract's files nor variables: one line saying what is missing
    const nothing = await entry({}, []);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('no training job: set SRLM_TRAIN_JOB');
    const smOnly = await entry({ SM_CURRENT_HOST: 'algo-1', SRLM_SAGEMAKER_ROOT: path.join(tmp, 'nowhere') }, ['train']);
    expect(smOnly.code).toBe(2);
    expect(smOnly.stderr).toContain(
      `this looks like SageMaker (SM_CURRENT_HOST, SRLM_SAGEMAKER_ROOT set) but ${path.join(tmp, 'nowhere', 'input/config/hyperparameters.json')} does not exist`,
    );
  }, 120_000);
});
