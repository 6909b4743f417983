/**
 * The SageMaker training backend against moto's server (real AWS API mock, S3 and SageMaker),
 * through the recording proxy of test/helpers/moto-server.ts. moto completes a training job
 * the moment it is created and has no StopTrainingJob, so the "still running" and "stopping"
 * states are the proxy's named rewrite of moto's answers; creation, the request fields moto
 * stored, completion, model artifacts and re-attachment are moto's own.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeTrainingJobCommand, ListTrainingJobsCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeEvent, TrainJob } from '../../backends/compute';
import { remoteJobBase, RemoteTrainer, stageInputs } from '../../backends/remote-train';
import { S3Store, s3ClientConfig } from '../../store/s3store';
import { SageMakerPlatform } from '../../backends/sagemaker-train';
import { LocalStore } from '../../store/store';
import { TrainingBackend } from '../../core/schemas';
import { FakeCompute } from '../../testing/fake-compute';
import { trainJobFixture } from '../helpers/train-job';
import { type MotoServer, type SageMakerProxy, startMoto, startSageMakerProxy } from '../helpers/moto-server';

const BUCKET = 'srlm-sm-test';
const ROOT = `s3://${BUCKET}/team/prod`;
const settings = TrainingBackend.parse({
  kind: 'sagemaker',
  image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/srlm-train:1',
  roleArn: 'arn:aws:iam::123456789012:role/srlm-training',
  instanceType: 'ml.p4d.24xlarge',
  instanceCount: 2,
  volumeSizeGB: 200,
  maxRuntimeSeconds: 7200,
  spot: true,
  maxWaitSeconds: 10800,
}) as Extract<TrainingBackend, { kind: 'sagemaker' }>;

let moto: MotoServer;
let proxy: SageMakerProxy;
let tmp: string;
let s3: S3Client;
let store: S3Store;
const clients: SageMakerClient[] = [];
let seq = 0;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  process.env.AWS_REGION = 'us-east-1';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  moto = await startMoto();
  proxy = await startSageMakerProxy(moto.url);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-sm-'));
  s3 = new S3Client(s3ClientConfig({ endpoint: moto.url, region: 'us-east-1' }));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  store = new S3Store({ bucket: BUCKET, prefix: 'team/prod', cacheDir: path.join(tmp, 'objects'), client: s3 });
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  s3?.destroy();
  await proxy?.close();
  await moto?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh backend, as a fresh worker process would build it. */
function trainer(pollMs = 20): RemoteTrainer {
  const client = new SageMakerClient({ endpoint: proxy.url, region: 'us-east-1', maxAttempts: 1 });
  clients.push(client);
  return new RemoteTrainer(new SageMakerPlatform(settings, store, client, pollMs), store, new FakeCompute());
}

/** A job whose base model is in the store and whose data is a local file, as trainModel hands it over. */
async function newJob(): Promise<{ job: TrainJob; base: string }> {
  const n = ++seq;
  const modelKey = `models/demo/run${n}.m0`;
  await store.putBytes(`${modelKey}/config.json`, '{"model_type": "llama"}');
  await store.putBytes(`${modelKey}/manifest.json`, '{}');
  const dir = path.join(tmp, `job${n}`);
  fs.mkdirSync(dir, { recursive: true });
  const data = path.join(dir, 'sft.jsonl');
  fs.writeFileSync(data, '{"prompt": "p", "response": "r"}\n');
  const base = remoteJobBase(`run${n}`, 'm1', `abcdef0123456789${n}`);
  const job = trainJobFixture({
    mode: 'sft',
    model: store.uri(modelKey),
    data,
    output: path.join(dir, 'model'),
    checkpoint_dir: path.join(dir, 'ckpt'),
    remote: { job_name: base, store_prefix: `runs/run${n}/train/m1/remote/abc`, model_key: modelKey },
  });
  return { job, base };
}

/** Plays the training container: puts model.tar.gz where SageMaker would upload /opt/ml/model (no sha256 metadata, as SageMaker writes it). */
async function uploadModelTarball(job: TrainJob, name: string): Promise<void> {
  const src = path.join(tmp, `container-${name}`);
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'model.safetensors'), `weights of ${name}`);
  fs.writeFileSync(path.join(src, 'metrics.json'), JSON.stringify({ train_loss: 0.42 }));
  const tarball = path.join(tmp, `${name}.tar.gz`);
  execFileSync('tar', ['-czf', tarball, '-C', src, '.']);
  const key = `team/prod/${job.remote!.store_prefix}/output/${name}/output/model.tar.gz`;
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: fs.readFileSync(tarball) }));
}

async function describe_(name: string) {
  const c = new SageMakerClient({ endpoint: moto.url, region: 'us-east-1' });
  try {
    return await c.send(new DescribeTrainingJobCommand({ TrainingJobName: name }));
  } finally {
    c.destroy();
  }
}

const creates = (name: string) => proxy.ops('CreateTrainingJob').filter((c) => c.body.TrainingJobName === name);

describe('SageMaker training backend (moto)', () => {
  it('creates the job with the configured fields, waits for it, and unpacks the model into job.output', async () => {
    const { job, base } = await newJob();
    await uploadModelTarball(job, base);
    const events: ComputeEvent[] = [];
    const done = await trainer().train(job, { onEvent: (e) => events.push(e) });
    expect(done).toMatchObject({ event: 'done', backend: 'sagemaker', job_name: base, attached: false, status: 'Completed/Completed' });
    expect(creates(base)).toHaveLength(1);

    // what moto recorded
    const d = await describe_(base);
    expect(d.RoleArn).toBe(settings.roleArn);
    expect(d.AlgorithmSpecification?.TrainingImage).toBe(settings.image);
    expect(d.ResourceConfig).toMatchObject({ InstanceType: 'ml.p4d.24xlarge', InstanceCount: 2, VolumeSizeInGB: 200 });
    expect(d.StoppingCondition).toMatchObject({ MaxRuntimeInSeconds: 7200, MaxWaitTimeInSeconds: 10800 });
    expect(d.EnableManagedSpotTraining).toBe(true);
    const prefix = `${ROOT}/${job.remote!.store_prefix}`;
    expect(d.CheckpointConfig).toEqual({ S3Uri: `${prefix}/checkpoints`, LocalPath: '/opt/ml/checkpoints' });
    expect(d.OutputDataConfig?.S3OutputPath).toBe(`${prefix}/output`);
    const channels = Object.fromEntries((d.InputDataConfig ?? []).map((c) => [c.ChannelName, c.DataSource?.S3DataSource?.S3Uri]));
    expect(channels).toEqual({ model: `${store.uri(job.remote!.model_key!)}/`, train: `${prefix}/input/data/sft.jsonl` });
    const srlmJob = JSON.parse(d.HyperParameters!.srlm_job!) as Record<string, unknown>;
    expect(srlmJob).toMatchObject({
      mode: 'sft',
      model: '/opt/ml/input/data/model',
      data: '/opt/ml/input/data/train/sft.jsonl',
      output: '/opt/ml/model',
      checkpoint_dir: '/opt/ml/checkpoints',
      resume_from: null,
      lr: 1e-5,
    });
    expect(srlmJob).not.toHaveProperty('remote');
    // the metric definitions as sent (moto replaces them with its own in what it stores)
    const sent = creates(base)[0]!.body.AlgorithmSpecification as { MetricDefinitions: { Name: string }[] };
    expect(sent.MetricDefinitions.map((m) => m.Name)).toEqual(['step', 'total_steps', 'loss']);

    // the data went to the store; the model came back
    expect(await store.exists(`${job.remote!.store_prefix}/input/data/sft.jsonl`)).toBe(true);
    expect(fs.readFileSync(path.join(job.output, 'model.safetensors'), 'utf8')).toBe(`weights of ${base}`);
    expect(JSON.parse(fs.readFileSync(path.join(job.output, 'metrics.json'), 'utf8'))).toEqual({ train_loss: 0.42 });
    expect(events.filter((e) => e.event === 'progress').at(-1)).toMatchObject({ job_name: base, state: 'succeeded' });
  });

  it('re-attaches after a worker restart: a second backend finds the job by name and creates none', async () => {
    const { job, base } = await newJob();
    await uploadModelTarball(job, base);
    // the first worker staged the inputs and created the job, then died while it ran
    proxy.hold.set(base, { TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training' });
    const firstClient = new SageMakerClient({ endpoint: proxy.url, region: 'us-east-1' });
    clients.push(firstClient);
    await new SageMakerPlatform(settings, store, firstClient).submit(base, job, await stageInputs(store, job, job.remote!));
    expect(creates(base)).toHaveLength(1);
    const created = (await describe_(base)).CreationTime;
    const events: ComputeEvent[] = [];
    const second = trainer().train({ ...job, output: `${job.output}-2` }, { onEvent: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 150));
    proxy.hold.delete(base);
    const done = await second;
    expect(done).toMatchObject({ job_name: base, attached: true });
    expect(events[0]).toMatchObject({ event: 'start', attached: true, job_name: base });
    expect(creates(base)).toHaveLength(1);
    expect((await describe_(base)).CreationTime).toEqual(created);
    const list = await new SageMakerClient({ endpoint: moto.url, region: 'us-east-1' }).send(
      new ListTrainingJobsCommand({ NameContains: base }),
    );
    expect(list.TrainingJobSummaries?.map((s) => s.TrainingJobName)).toEqual([base]);
    expect(fs.existsSync(path.join(`${job.output}-2`, 'model.safetensors'))).toBe(true);
  });

  it('polls a running job, reporting its status, step and loss as progress events', async () => {
    const { job, base } = await newJob();
    await uploadModelTarball(job, base);
    proxy.hold.set(base, {
      TrainingJobStatus: 'InProgress',
      SecondaryStatus: 'Training',
      FinalMetricDataList: [
        { MetricName: 'step', Value: 3, Timestamp: Date.now() / 1000 },
        { MetricName: 'total_steps', Value: 10, Timestamp: Date.now() / 1000 },
        { MetricName: 'loss', Value: 1.25, Timestamp: Date.now() / 1000 },
      ],
    });
    const progress: ComputeEvent[] = [];
    const run = trainer(10).train(job, { onEvent: (e) => e.event === 'progress' && progress.push(e) });
    const t0 = Date.now();
    while (progress.length < 5 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    proxy.hold.delete(base);
    await run;
    expect(progress.length).toBeGreaterThanOrEqual(5);
    expect(progress[1]).toMatchObject({
      job_name: base,
      state: 'running',
      status: 'InProgress/Training',
      step: 3,
      total_steps: 10,
      loss: 1.25,
    });
    expect(progress.at(-1)).toMatchObject({ state: 'succeeded' });
    expect(proxy.ops('DescribeTrainingJob').filter((c) => c.body.TrainingJobName === base).length).toBeGreaterThanOrEqual(5);
  });

  it('stops the job when the activity is cancelled, then throws', async () => {
    const { job, base } = await newJob();
    proxy.hold.set(base, { TrainingJobStatus: 'InProgress', SecondaryStatus: 'Downloading' });
    const ac = new AbortController();
    let seen = 0;
    const run = trainer().train(job, { signal: ac.signal, onEvent: (e) => e.event === 'progress' && ++seen === 2 && ac.abort() });
    await expect(run).rejects.toThrow(`sagemaker training job ${base} cancelled`);
    expect(proxy.ops('StopTrainingJob').filter((c) => c.body.TrainingJobName === base)).toHaveLength(1);
    expect(proxy.ops('StopTrainingJob')).toHaveLength(1);
    proxy.hold.delete(base);
  });

  it('a failed job: retryable with its reason; invalid input is not retried; the next attempt submits the next name', async () => {
    const { job, base } = await newJob();
    proxy.hold.set(base, {
      TrainingJobStatus: 'Failed',
      SecondaryStatus: 'Failed',
      FailureReason: 'InternalServerError: We encountered an internal error.',
    });
    const err = await trainer()
      .train(job, {})
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'RemoteTrainingFailed', nonRetryable: false });
    expect((err as Error).message).toContain('InternalServerError: We encountered an internal error.');

    // the retry: base failed, so base-2 is created (SageMaker never frees a name)
    proxy.hold.set(`${base}-2`, {
      TrainingJobStatus: 'Failed',
      SecondaryStatus: 'Failed',
      FailureReason: 'AlgorithmError: InvalidComputeInput: sft.jsonl:1: field "response" missing',
    });
    const bad = await trainer()
      .train(job, {})
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ type: 'InvalidComputeInput', nonRetryable: true });
    expect((bad as Error).message).toContain(`${base}-2 failed on its input`);
    expect(creates(base)).toHaveLength(1);
    expect(creates(`${base}-2`)).toHaveLength(1);
    proxy.hold.delete(base);
    proxy.hold.delete(`${base}-2`);
  });

  it('a job completed without the model archive fails for good, naming the URI', async () => {
    const { job, base } = await newJob();
    const err = await trainer()
      .train(job, {})
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'RemoteOutputMissing', nonRetryable: true });
    expect((err as Error).message).toContain(`${ROOT}/${job.remote!.store_prefix}/output/${base}/output/model.tar.gz does not exist`);
  });

  it('refuses a store that is not s3://, naming store.root', async () => {
    const local = new LocalStore(path.join(tmp, 'local-store'));
    const client = new SageMakerClient({ endpoint: proxy.url, region: 'us-east-1' });
    clients.push(client);
    const t = new RemoteTrainer(new SageMakerPlatform(settings, local, client, 10), local, new FakeCompute());
    const { job } = await newJob();
    const before = proxy.calls.length;
    const err = await t.train(job, {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'InvalidConfig', nonRetryable: true });
    expect((err as Error).message).toMatch(/compute\.training\.kind "sagemaker" needs an s3:\/\/ store: set store\.root/);
    expect(proxy.calls.length).toBe(before);
  });
});
