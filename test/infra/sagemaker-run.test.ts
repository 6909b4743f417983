/**
 * A whole run (M0 -> SFT baseline -> M1 -> M2) on a real Temporal dev server whose SFT and DPO
 * run as SageMaker training jobs (`compute.training.kind: "sagemaker"`) on moto's server, with
 * the store in moto's S3. moto runs no container, so a FAKE training container (below, named
 * so) reacts to each CreateTrainingJob the way the real image would: it reads the job's
 * channels and `srlm_job` hyperparameter from S3, trains with FakeCompute (a fake, named so),
 * and uploads model.tar.gz where SageMaker puts /opt/ml/model. Generation is FakeCompute too.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStoreFor } from '../../activities';
import type { TrainJob } from '../../backends/compute';
import { s3ClientConfig } from '../../store/s3store';
import { trainingBackends } from '../../backends/training-backends';
import { parseS3Uri } from '../../core/s3uri';
import type { RunConfigInput } from '../../core/schemas';
import { runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { type MotoServer, type SageMakerProxy, startMoto, startSageMakerProxy } from '../helpers/moto-server';
import { startTestStack, type TestStack } from '../helpers/stack';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');
const BUCKET = 'srlm-sm-run';

describe('a run whose training jobs run on SageMaker (moto)', () => {
  let tmp: string;
  let moto: MotoServer;
  let proxy: SageMakerProxy;
  let s3: S3Client;
  let sm: SageMakerClient;
  let stack: TestStack;
  const containerErrors: unknown[] = [];
  const trained: { name: string; mode: string }[] = [];

  /** FAKE training container: what the real image does with a job, done here with FakeCompute. */
  async function fakeContainer(req: Record<string, unknown>): Promise<void> {
    const name = req.TrainingJobName as string;
    const job = JSON.parse((req.HyperParameters as Record<string, string>).srlm_job!) as TrainJob;
    const channels = Object.fromEntries(
      (req.InputDataConfig as { ChannelName: string; DataSource: { S3DataSource: { S3Uri: string } } }[]).map((c) => [
        c.ChannelName,
        c.DataSource.S3DataSource.S3Uri,
      ]),
    );
    const dir = fs.mkdtempSync(path.join(tmp, `container-${name}-`));
    const fetchPrefix = async (uri: string, to: string): Promise<void> => {
      const loc = parseS3Uri(uri);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: loc.prefix }));
      for (const o of listed.Contents ?? []) {
        const rel = o.Key!.slice(loc.prefix.length).replace(/^\//, '') || path.posix.basename(o.Key!);
        const body = await s3.send(new GetObjectCommand({ Bucket: loc.bucket, Key: o.Key! }));
        fs.mkdirSync(path.dirname(path.join(to, rel)), { recursive: true });
        fs.writeFileSync(path.join(to, rel), Buffer.from(await body.Body!.transformToByteArray()));
      }
    };
    await fetchPrefix(channels.model!, path.join(dir, 'model'));
    await fetchPrefix(channels.train!, path.join(dir, 'train'));
    const out = path.join(dir, 'out');
    await new FakeCompute().train(
      { ...job, model: path.join(dir, 'model'), data: path.join(dir, 'train', path.posix.basename(job.data)), output: out },
      {},
    );
    execFileSync('tar', ['-czf', path.join(dir, 'model.tar.gz'), '-C', out, '.']);
    const outLoc = parseS3Uri(`${(req.OutputDataConfig as { S3OutputPath: string }).S3OutputPath}/${name}/output/model.tar.gz`);
    await s3.send(
      new PutObjectCommand({ Bucket: outLoc.bucket, Key: outLoc.prefix, Body: fs.readFileSync(path.join(dir, 'model.tar.gz')) }),
    );
    trained.push({ name, mode: job.mode });
    proxy.hold.delete(name);
  }

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = 'testing';
    process.env.AWS_SECRET_ACCESS_KEY = 'testing';
    process.env.AWS_REGION = 'us-east-1';
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-sm-run-'));
    moto = await startMoto();
    proxy = await startSageMakerProxy(moto.url);
    proxy.onCreate = (req) => {
      // the job runs until the container has uploaded the model
      proxy.hold.set(req.TrainingJobName as string, { TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training' });
      setTimeout(() => void fakeContainer(req).catch((err: unknown) => containerErrors.push(err)), 100);
    };
    s3 = new S3Client(s3ClientConfig({ endpoint: moto.url, region: 'us-east-1' }));
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    sm = new SageMakerClient({ endpoint: proxy.url, region: 'us-east-1' });
    const fake = new FakeCompute();
    stack = await startTestStack({
      address: testTemporalAddress(),
      compute: fake,
      dir: tmp,
      trainerFor: trainingBackends({
        storeFor: defaultStoreFor(path.join(tmp, 'default-store'), path.join(tmp, 'objects')),
        wrapped: fake,
        sageMakerClient: sm,
        pollMs: 50,
      }),
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.client.workflow
      .getHandle(runWorkflowId('smrun'))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.stop();
    sm?.destroy();
    s3?.destroy();
    await proxy?.close();
    await moto?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('trains every model as a SageMaker job and publishes what the jobs produced', async () => {
    const config: RunConfigInput = {
      run: 'smrun',
      seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl') },
      iterations: 1,
      prompts: { count: 8, requestsPerRound: 8, maxRounds: 4 },
      durability: { shardSize: 4, retryInitialSeconds: 0.2, maximumAttempts: 2, heartbeatTimeoutSeconds: 20, partialFlushSeconds: 0 },
      store: { root: `s3://${BUCKET}/team`, s3: { endpoint: moto.url, region: 'us-east-1' } },
      compute: {
        training: {
          kind: 'sagemaker',
          image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/srlm-train:1',
          roleArn: 'arn:aws:iam::123456789012:role/srlm-training',
          instanceType: 'ml.g5.2xlarge',
        },
      },
    };
    const result = (await stack.client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('smrun'),
      args: [{ config }],
      workflowExecutionTimeout: '5 minutes',
    })) as RunResult;
    expect(containerErrors).toEqual([]);
    expect(result.models.map((m) => m.name)).toEqual(['M0', 'SFT baseline', 'M1', 'M2']);

    // one job per trained model, named srlm-<run>-<model>-<digest>, each created once
    const creates = proxy.ops('CreateTrainingJob').map((c) => c.body.TrainingJobName as string);
    expect(creates).toHaveLength(3);
    expect(new Set(creates).size).toBe(3);
    for (const n of creates) expect(n).toMatch(/^srlm-smrun-[a-z0-9-]+-[0-9a-f]{12}$/);
    expect(trained.map((t) => t.mode).sort()).toEqual(['dpo', 'sft', 'sft']);

    // the published models hold what the container trained; the jobs' staging areas are gone
    const keys = async (prefix: string): Promise<string[]> =>
      ((await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);
    const m2 = await keys('team/models/smrun/smrun.m2/');
    expect(m2.map((k) => path.posix.basename(k)).sort()).toEqual(['config.json', 'manifest.json', 'metrics.json', 'weights.bin']);
    expect(await keys('team/runs/smrun/train/')).toEqual([]);
  }, 300_000);
});
