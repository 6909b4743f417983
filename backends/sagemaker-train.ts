/**
 * SFT/DPO as an Amazon SageMaker training job (`compute.training.kind: "sagemaker"`).
 *
 * The job's container gets the usual SageMaker layout: channel `model` (the base model) at
 * /opt/ml/input/data/model, channel `train` (the JSONL) at /opt/ml/input/data/train, the
 * compute/ train job (paths rewritten to those) as hyperparameter `srlm_job`, checkpoints in
 * /opt/ml/checkpoints (synced by SageMaker to the job's store prefix, so a spot interruption
 * resumes from them), and the model written to /opt/ml/model, which SageMaker uploads as
 * model.tar.gz; the activity unpacks that into the local output directory trainModel publishes.
 * Progress comes from metric definitions matching compute/'s JSON progress lines.
 *
 * The training image's entrypoint (backends/train-entry.ts, infra/docker/train.Dockerfile) reads
 * `srlm_job` (with the backend's strategy / fsdpLayerClass as its `distributed`) and
 * `srlm_nproc_per_node` (set when the config gives nprocPerNode; else the instance's GPUs), takes
 * node rank and master from /opt/ml/input/config/resourceconfig.json, resumes from the newest
 * complete checkpoint in /opt/ml/checkpoints and runs compute/ under torchrun through
 * `python -m srlm_compute.launch`; on invalid input (exit 2) it writes
 * "InvalidComputeInput: ..." to /opt/ml/output/failure.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import {
  CreateTrainingJobCommand,
  type CreateTrainingJobCommandInput,
  DescribeTrainingJobCommand,
  type DescribeTrainingJobCommandOutput,
  SageMakerClient,
  type SageMakerClientConfig,
  StopTrainingJobCommand,
  type TrainingInstanceType,
} from '@aws-sdk/client-sagemaker';
import { ApplicationFailure } from '@temporalio/common';
import type { TrainingBackend } from '../core/schemas';
import { type TrainJob, trainDistributed } from './compute';
import { type RemotePlatform, type RemoteStatus, remoteTrainJob, type StagedInputs, storeKeyOf } from './remote-train';
import type { ArtifactStore } from '../store/store';

export type SageMakerSettings = Extract<TrainingBackend, { kind: 'sagemaker' }>;

/** SageMaker's ceiling for MaxRuntimeInSeconds and MaxWaitTimeInSeconds (28 days). */
const MAX_SECONDS = 28 * 24 * 3600;

/** Where the container finds things (SageMaker's fixed layout). */
const OPT = {
  model: '/opt/ml/input/data/model',
  train: '/opt/ml/input/data/train',
  output: '/opt/ml/model',
  checkpoints: '/opt/ml/checkpoints',
};

/** compute/'s progress lines are JSON (`"step": 12`); SageMaker extracts these from the job's log. */
export const METRIC_DEFINITIONS = [
  { Name: 'step', Regex: '"step": ([0-9]+)' },
  { Name: 'total_steps', Regex: '"total_steps": ([0-9]+)' },
  { Name: 'loss', Regex: '"loss": ([-+0-9.eE]+)' },
];

/** The CreateTrainingJob request for one job. */
export function createTrainingJobRequest(
  s: SageMakerSettings,
  name: string,
  job: TrainJob,
  inputs: StagedInputs,
): CreateTrainingJobCommandInput {
  const srlmJob = JSON.stringify(
    remoteTrainJob(
      job,
      { model: OPT.model, data: `${OPT.train}/${path.basename(job.data)}`, output: OPT.output, checkpoints: OPT.checkpoints },
      trainDistributed(s),
    ),
  );
  if (srlmJob.length > 2500) {
    throw ApplicationFailure.nonRetryable(
      `sagemaker job ${name}: the train job is ${srlmJob.length} characters, over SageMaker's 2,500 per hyperparameter`,
      'InvalidComputeInput',
    );
  }
  const channel = (ChannelName: string, S3Uri: string) => ({
    ChannelName,
    DataSource: { S3DataSource: { S3DataType: 'S3Prefix' as const, S3Uri, S3DataDistributionType: 'FullyReplicated' as const } },
    InputMode: 'File' as const,
  });
  return {
    TrainingJobName: name,
    RoleArn: s.roleArn,
    AlgorithmSpecification: { TrainingImage: s.image, TrainingInputMode: 'File', MetricDefinitions: METRIC_DEFINITIONS },
    HyperParameters: { srlm_job: srlmJob, ...(s.nprocPerNode !== undefined ? { srlm_nproc_per_node: String(s.nprocPerNode) } : {}) },
    InputDataConfig: [channel('model', `${inputs.modelUri}/`), channel('train', inputs.dataUri)],
    OutputDataConfig: { S3OutputPath: inputs.outputUri },
    ResourceConfig: {
      InstanceType: s.instanceType as TrainingInstanceType,
      InstanceCount: s.instanceCount,
      VolumeSizeInGB: s.volumeSizeGB,
    },
    StoppingCondition: {
      MaxRuntimeInSeconds: s.maxRuntimeSeconds,
      ...(s.spot ? { MaxWaitTimeInSeconds: s.maxWaitSeconds ?? Math.min(s.maxRuntimeSeconds * 2, MAX_SECONDS) } : {}),
    },
    EnableManagedSpotTraining: s.spot,
    CheckpointConfig: { S3Uri: inputs.checkpointUri, LocalPath: OPT.checkpoints },
    Tags: [{ Key: 'srlm:job', Value: name }],
  };
}

/** SageMaker's job status in srlm's terms. */
export function sageMakerStatus(
  d: Partial<Pick<DescribeTrainingJobCommandOutput, 'TrainingJobStatus' | 'SecondaryStatus' | 'FailureReason' | 'FinalMetricDataList'>>,
): RemoteStatus {
  const detail = `${d.TrainingJobStatus ?? 'Unknown'}/${d.SecondaryStatus ?? '-'}`;
  const metric = (n: string): number | undefined => {
    const v = d.FinalMetricDataList?.find((m) => m.MetricName === n)?.Value;
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  };
  const step = metric('step');
  const totalSteps = metric('total_steps');
  const loss = metric('loss');
  const figures = {
    ...(step !== undefined ? { step } : {}),
    ...(totalSteps !== undefined ? { totalSteps } : {}),
    ...(loss !== undefined ? { loss } : {}),
  };
  switch (d.TrainingJobStatus) {
    case 'Completed':
      return { state: 'succeeded', detail, ...figures };
    case 'Failed': {
      const reason = d.FailureReason ?? 'no failure reason given';
      // compute/ exits 2 on invalid input and the image writes "InvalidComputeInput: ..." to
      // /opt/ml/output/failure, which SageMaker reports as the failure reason
      return { state: 'failed', detail, reason, invalidInput: /InvalidComputeInput/.test(reason) };
    }
    case 'Stopping':
      return { state: 'stopping', detail, ...figures };
    case 'Stopped':
      return { state: 'stopped', detail, reason: d.FailureReason ?? 'stopped' };
    case 'InProgress':
      return { state: d.SecondaryStatus === 'Training' || d.SecondaryStatus === 'Uploading' ? 'running' : 'pending', detail, ...figures };
    default:
      return { state: 'pending', detail };
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; message?: string };
  // AWS: ValidationException "Requested resource not found"; moto: ValidationError "Could not find training job"
  return /^Validation/.test(e?.name ?? '') && /not found|could not find/i.test(e?.message ?? '');
}

function untar(archive: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', ['-xzf', archive, '-C', dir, '--no-same-owner'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar -xzf ${archive} exited ${code}: ${err.trim()}`))));
  });
}

export class SageMakerPlatform implements RemotePlatform {
  readonly kind = 'sagemaker';
  /** SageMaker: 1-63 characters, [a-zA-Z0-9](-*[a-zA-Z0-9])* */
  readonly maxName = 63;
  readonly pollMs: number;
  constructor(
    private readonly settings: SageMakerSettings,
    private readonly store: ArtifactStore,
    private readonly client: SageMakerClient,
    pollMs?: number,
  ) {
    this.pollMs = pollMs ?? settings.pollSeconds * 1000;
  }

  private async raw(name: string): Promise<DescribeTrainingJobCommandOutput | null> {
    try {
      return await this.client.send(new DescribeTrainingJobCommand({ TrainingJobName: name }));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async describe(name: string): Promise<RemoteStatus | null> {
    const d = await this.raw(name);
    return d ? sageMakerStatus(d) : null;
  }

  async submit(name: string, job: TrainJob, inputs: StagedInputs): Promise<void> {
    try {
      await this.client.send(new CreateTrainingJobCommand(createTrainingJobRequest(this.settings, name, job, inputs)));
    } catch (err) {
      const e = err as { name?: string; message?: string };
      // another attempt created it between our Describe and Create: attach to it
      if (e?.name === 'ResourceInUse') return;
      if (e?.name === 'ValidationException')
        throw ApplicationFailure.nonRetryable(
          `sagemaker CreateTrainingJob ${name} refused (check compute.training): ${e.message}`,
          'InvalidConfig',
        );
      throw err;
    }
  }

  async stop(name: string): Promise<void> {
    await this.client.send(new StopTrainingJobCommand({ TrainingJobName: name }));
  }

  async collect(name: string, _inputs: StagedInputs, outputDir: string): Promise<void> {
    const d = await this.raw(name);
    const uri = d?.ModelArtifacts?.S3ModelArtifacts;
    if (!uri) throw ApplicationFailure.nonRetryable(`sagemaker job ${name} completed without model artifacts`, 'RemoteOutputMissing');
    const key = storeKeyOf(this.store, uri);
    if (!key)
      throw ApplicationFailure.nonRetryable(
        `sagemaker job ${name}: its model ${uri} is outside the run's store ${this.store.rootUri}`,
        'RemoteOutputMissing',
      );
    const dir = path.posix.dirname(key);
    const files = await this.store.list(dir);
    if (!files.includes(key))
      throw ApplicationFailure.nonRetryable(`sagemaker job ${name} completed but ${uri} does not exist`, 'RemoteOutputMissing');
    const local = await this.store.localDir(dir);
    await untar(path.join(local, path.posix.basename(key)), outputDir);
  }
}

/** One SageMaker client per region, shared by the activities of a worker. */
const clients = new Map<string, SageMakerClient>();
export function sageMakerClient(region: string | undefined, extra: SageMakerClientConfig = {}): SageMakerClient {
  const id = JSON.stringify([region ?? '', extra.endpoint ?? '']);
  let c = clients.get(id);
  if (!c) {
    c = new SageMakerClient({ ...(region ? { region } : {}), maxAttempts: 5, ...extra });
    clients.set(id, c);
  }
  return c;
}
