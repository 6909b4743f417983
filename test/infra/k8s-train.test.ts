/**
 * The Kubernetes training backend: its manifests checked offline against the Kubernetes 1.37
 * OpenAPI schemas (kubernetes-validate, strict), and its lifecycle — create, poll, re-attach,
 * delete on cancel, failures — through the real @kubernetes/client-node against
 * test/helpers/fake-k8s-api.ts, a FAKE API server (no cluster can run here). The store is
 * moto's S3.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeEvent, TrainJob } from '../../backends/compute';
import { KubernetesPlatform, rendezvousServiceManifest, trainingJobManifest } from '../../backends/k8s-train';
import { remoteJobBase, RemoteTrainer, type StagedInputs } from '../../backends/remote-train';
import { S3Store, s3ClientConfig } from '../../store/s3store';
import { TrainingBackend } from '../../core/schemas';
import { FakeCompute } from '../../testing/fake-compute';
import { trainJobFixture } from '../helpers/train-job';
import { type FakeK8sApi, startFakeK8sApi } from '../helpers/fake-k8s-api';
import { type MotoServer, startMoto, toolsPython } from '../helpers/moto-server';

type K8s = Extract<TrainingBackend, { kind: 'kubernetes' }>;
const settings = TrainingBackend.parse({
  kind: 'kubernetes',
  namespace: 'ml',
  image: 'registry.example.com/srlm-train:1',
  nodes: 4,
  gpusPerNode: 8,
  serviceAccount: 'srlm-trainer',
  nodeSelector: { 'node.kubernetes.io/instance-type': 'p4d.24xlarge' },
  tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
  env: { AWS_REGION: 'us-east-1' },
}) as K8s;

let moto: MotoServer;
let api: FakeK8sApi;
let tmp: string;
let s3: S3Client;
let store: S3Store;
let seq = 0;

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  moto = await startMoto();
  api = await startFakeK8sApi();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-k8s-'));
  s3 = new S3Client(s3ClientConfig({ endpoint: moto.url, region: 'us-east-1' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'srlm-k8s' }));
  store = new S3Store({ bucket: 'srlm-k8s', prefix: 'prod', cacheDir: path.join(tmp, 'objects'), client: s3 });
}, 90_000);

afterAll(async () => {
  s3?.destroy();
  await api?.close();
  await moto?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function trainer(pollMs = 10): RemoteTrainer {
  return new RemoteTrainer(new KubernetesPlatform(settings, store, api.kubeConfig(), pollMs), store, new FakeCompute());
}

async function newJob(): Promise<{ job: TrainJob; base: string }> {
  const n = ++seq;
  const dir = path.join(tmp, `job${n}`);
  fs.mkdirSync(path.join(dir, 'base'), { recursive: true });
  // a base model outside the store (a user's directory): the backend uploads it
  fs.writeFileSync(path.join(dir, 'base', 'config.json'), '{"model_type": "llama"}');
  fs.writeFileSync(path.join(dir, 'dpo.jsonl'), '{"prompt": "p", "chosen": "a", "rejected": "b"}\n');
  const base = remoteJobBase(`k8s-run${n}`, 'm2', `0123456789abcdef${n}`, 56);
  const job = trainJobFixture({
    mode: 'dpo',
    model: path.join(dir, 'base'),
    data: path.join(dir, 'dpo.jsonl'),
    output: path.join(dir, 'model'),
    lr: 1e-6,
    lr_end: 1e-7,
    checkpoint_dir: path.join(dir, 'ckpt'),
    remote: { job_name: base, store_prefix: `runs/k8s-run${n}/train/m2/remote/d${n}`, model_key: null },
  });
  return { job, base };
}

/** Plays rank 0 of the pods: uploads the trained model's files under SRLM_OUTPUT_URI. */
async function podWritesModel(job: TrainJob, text: string): Promise<void> {
  await store.putBytes(`${job.remote!.store_prefix}/output/model.safetensors`, text);
  await store.putBytes(`${job.remote!.store_prefix}/output/metrics.json`, '{"train_loss": 0.3}');
}

function validate(docs: object[], name: string): { status: number | null; out: string } {
  const file = path.join(tmp, `${name}.json`);
  fs.writeFileSync(file, docs.map((d) => JSON.stringify(d)).join('\n---\n'));
  const r = spawnSync(toolsPython(), ['-m', 'kubernetes_validate', '-k', '1.37.0', '--strict', file], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const inputs: StagedInputs = {
  modelUri: 's3://b/p/models/demo/r.m1',
  dataUri: 's3://b/p/runs/r/train/m2/remote/d/input/data/dpo.jsonl',
  outputUri: 's3://b/p/runs/r/train/m2/remote/d/output',
  checkpointUri: 's3://b/p/runs/r/train/m2/remote/d/checkpoints',
};

describe('Kubernetes training backend', () => {
  it('its Job and Service validate strictly against the Kubernetes 1.37 schemas; a broken one does not', async () => {
    const { job } = await newJob();
    const name = remoteJobBase('demo', 'm2', 'feedfacecafebeef', 56);
    const jobManifest = trainingJobManifest(settings, name, job, inputs);
    const svc = rendezvousServiceManifest(settings, name, '7d7b4d0e-9b1e-4d5f-8f3a-2b1c0d9e8f7a');
    const ok = validate([jobManifest, svc], 'valid');
    expect(ok.out).not.toMatch(/error|fail/i);
    expect(ok.status).toBe(0);
    // minimal settings (CPU, defaults) too
    const cpu = TrainingBackend.parse({ kind: 'kubernetes', image: 'srlm-train:1', gpusPerNode: 0 }) as K8s;
    expect(validate([trainingJobManifest(cpu, name, job, inputs), rendezvousServiceManifest(cpu, name)], 'cpu').status).toBe(0);

    // the validator bites: a misspelt field (strict), a wrong type
    const misspelt = JSON.parse(JSON.stringify(jobManifest)) as { spec: Record<string, unknown> };
    misspelt.spec.completionsMode = 'Indexed';
    const r1 = validate([misspelt], 'misspelt');
    expect(r1.status).not.toBe(0);
    expect(r1.out).toMatch(/completionsMode/);
    const mistyped = JSON.parse(JSON.stringify(jobManifest)) as { spec: Record<string, unknown> };
    mistyped.spec.parallelism = 'four';
    const r2 = validate([mistyped], 'mistyped');
    expect(r2.status).not.toBe(0);
    expect(r2.out).toMatch(/'four' is not of type 'integer'/);
  });

  it('the manifests: indexed Job, torchrun rendezvous at pod 0 through the headless Service, GPUs, scheduling, S3 locations as env', async () => {
    const { job } = await newJob();
    const m = trainingJobManifest(settings, 'srlm-x-1234567890ab', job, inputs);
    expect(m.spec).toMatchObject({ completionMode: 'Indexed', completions: 4, parallelism: 4, backoffLimit: 2 });
    const pod = m.spec!.template.spec!;
    expect(pod).toMatchObject({
      restartPolicy: 'Never',
      subdomain: 'srlm-x-1234567890ab',
      serviceAccountName: 'srlm-trainer',
      nodeSelector: settings.nodeSelector,
      tolerations: settings.tolerations,
    });
    const c = pod.containers[0]!;
    expect(c.resources?.limits).toEqual({ 'nvidia.com/gpu': '8' });
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      SRLM_MODEL_URI: inputs.modelUri,
      SRLM_DATA_URI: inputs.dataUri,
      SRLM_OUTPUT_URI: inputs.outputUri,
      SRLM_CHECKPOINT_URI: inputs.checkpointUri,
      SRLM_NNODES: '4',
      SRLM_NPROC_PER_NODE: '8',
      SRLM_MASTER_ADDR: 'srlm-x-1234567890ab-0.srlm-x-1234567890ab',
      SRLM_MASTER_PORT: '29500',
      AWS_REGION: 'us-east-1',
    });
    expect(JSON.parse(env.SRLM_TRAIN_JOB!)).toMatchObject({
      mode: 'dpo',
      model: inputs.modelUri,
      data: inputs.dataUri,
      output: inputs.outputUri,
      checkpoint_dir: inputs.checkpointUri,
    });
    expect(JSON.parse(env.SRLM_TRAIN_JOB!)).not.toHaveProperty('remote');
    expect(m.spec!.podFailurePolicy!.rules[0]).toMatchObject({ action: 'FailJob', onExitCodes: { operator: 'In', values: [2] } });
    const svc = rendezvousServiceManifest(settings, 'srlm-x-1234567890ab', 'uid-1');
    expect(svc.spec).toMatchObject({
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: { 'srlm.dev/job': 'srlm-x-1234567890ab' },
    });
    expect(m.spec!.template.metadata!.labels!['srlm.dev/job']).toBe('srlm-x-1234567890ab');
    expect(svc.metadata!.ownerReferences).toEqual([{ apiVersion: 'batch/v1', kind: 'Job', name: 'srlm-x-1234567890ab', uid: 'uid-1' }]);
  });

  it('creates the Job and its Service, polls until Complete, and copies the model from the store', async () => {
    const { job, base } = await newJob();
    const events: ComputeEvent[] = [];
    const run = trainer().train(job, { onEvent: (e) => events.push(e) });
    const t0 = Date.now();
    while (!api.jobs.has(`ml/${base}`) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    api.setJobStatus('ml', base, { active: 4, ready: 4 });
    await new Promise((r) => setTimeout(r, 100));
    await podWritesModel(job, 'k8s weights');
    api.setJobStatus('ml', base, { succeeded: 4, conditions: [{ type: 'Complete', status: 'True' }] });
    const done = await run;
    expect(done).toMatchObject({ event: 'done', backend: 'kubernetes', job_name: base, attached: false });
    expect(fs.readFileSync(path.join(job.output, 'model.safetensors'), 'utf8')).toBe('k8s weights');

    const posts = api.requests.filter((r) => r.method === 'POST');
    expect(posts.map((r) => r.path)).toEqual(['/apis/batch/v1/namespaces/ml/jobs', '/api/v1/namespaces/ml/services']);
    const sent = posts[0]!.body as {
      metadata: { name: string };
      spec: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } };
    };
    expect(sent.metadata.name).toBe(base);
    const env = Object.fromEntries(sent.spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    // the base model lay outside the store: it was uploaded under the job's prefix, as was the data
    expect(env.SRLM_MODEL_URI).toBe(store.uri(`${job.remote!.store_prefix}/input/model`));
    expect(await store.exists(`${job.remote!.store_prefix}/input/model/config.json`)).toBe(true);
    expect(await store.exists(`${job.remote!.store_prefix}/input/data/dpo.jsonl`)).toBe(true);
    expect((posts[1]!.body as { metadata: { ownerReferences: { uid: string }[] } }).metadata.ownerReferences[0]!.uid).toBe(
      api.jobs.get(`ml/${base}`)!.metadata.uid,
    );
    const progress = events.filter((e) => e.event === 'progress');
    expect(progress.some((e) => e.state === 'running' && String(e.status).startsWith('Running (active 4/4, ready 4'))).toBe(true);
    expect(progress.at(-1)).toMatchObject({ state: 'succeeded' });
  });

  it('re-attaches to the Job after a worker restart instead of creating another', async () => {
    const { job, base } = await newJob();
    // the dead worker's Job, still running
    const platform = new KubernetesPlatform(settings, store, api.kubeConfig(), 10);
    await platform.submit(base, job, { ...inputs, outputUri: store.uri(`${job.remote!.store_prefix}/output`) });
    api.setJobStatus('ml', base, { active: 4, ready: 4 });
    // ... and died before its Service existed
    api.services.delete(`ml/${base}`);
    const before = api.requests.filter((r) => r.method === 'POST').length;
    const run = trainer().train(job, {});
    await new Promise((r) => setTimeout(r, 100));
    await podWritesModel(job, 'attached weights');
    api.setJobStatus('ml', base, { succeeded: 4, conditions: [{ type: 'Complete', status: 'True' }] });
    expect(await run).toMatchObject({ attached: true, job_name: base });
    // no second Job; the missing Service again, owned by the Job
    expect(
      api.requests
        .filter((r) => r.method === 'POST')
        .slice(before)
        .map((r) => r.path),
    ).toEqual(['/api/v1/namespaces/ml/services']);
    expect(api.services.get(`ml/${base}`)!.metadata.ownerReferences).toEqual([
      { apiVersion: 'batch/v1', kind: 'Job', name: base, uid: api.jobs.get(`ml/${base}`)!.metadata.uid },
    ]);
    expect(fs.readFileSync(path.join(job.output, 'model.safetensors'), 'utf8')).toBe('attached weights');
  });

  it('deletes the Job (propagationPolicy Background) and its Service when cancelled, then throws', async () => {
    const { job, base } = await newJob();
    const ac = new AbortController();
    let n = 0;
    const run = trainer().train(job, { signal: ac.signal, onEvent: (e) => e.event === 'progress' && ++n === 3 && ac.abort() });
    await expect(run).rejects.toThrow(`kubernetes training job ${base} cancelled`);
    const del = api.requests.filter((r) => r.method === 'DELETE' && r.path.endsWith(`/${base}`));
    expect(del.map((r) => r.path)).toEqual([`/apis/batch/v1/namespaces/ml/jobs/${base}`, `/api/v1/namespaces/ml/services/${base}`]);
    expect(del[0]!.query.propagationPolicy).toBe('Background');
    expect(api.jobs.has(`ml/${base}`)).toBe(false);
  });

  it('failures: exit code 2 (podFailurePolicy) is not retried; BackoffLimitExceeded is, and the retry creates <name>-2', async () => {
    const { job, base } = await newJob();
    const run = trainer().train(job, {});
    const t0 = Date.now();
    while (!api.jobs.has(`ml/${base}`) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    api.setJobStatus('ml', base, {
      failed: 3,
      conditions: [
        { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
      ],
    });
    const err = await run.catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'RemoteTrainingFailed', nonRetryable: false });
    expect((err as Error).message).toContain('BackoffLimitExceeded: Job has reached the specified backoff limit');

    const retry = trainer().train(job, {});
    while (!api.jobs.has(`ml/${base}-2`) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    api.setJobStatus('ml', `${base}-2`, {
      failed: 1,
      conditions: [
        {
          type: 'Failed',
          status: 'True',
          reason: 'PodFailurePolicy',
          message: `Container trainer for pod ml/${base}-2-0-abcde failed with exit code 2 matching FailJob rule at index 0`,
        },
      ],
    });
    const bad = await retry.catch((e: unknown) => e);
    expect(bad).toMatchObject({ type: 'InvalidComputeInput', nonRetryable: true });
    expect(api.jobs.has(`ml/${base}`)).toBe(true); // the failed Job stays for its logs
  });

  it('a Job that completed without uploading a model fails for good, naming the location', async () => {
    const { job, base } = await newJob();
    const run = trainer().train(job, {});
    const t0 = Date.now();
    while (!api.jobs.has(`ml/${base}`) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    api.setJobStatus('ml', base, { succeeded: 4, conditions: [{ type: 'Complete', status: 'True' }] });
    const err = await run.catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'RemoteOutputMissing', nonRetryable: true });
    expect((err as Error).message).toContain(`wrote no model under ${store.uri(`${job.remote!.store_prefix}/output`)}`);
  });
});
