/**
 * Training backends without servers: job names, the `compute.training` config and its errors,
 * platform status mapping, and which backend a config picks.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { describe, expect, it } from 'vitest';
import { trainDistributed, trainMemory } from '../../backends/compute';
import { type KubernetesSettings, kubernetesStatus, trainingJobManifest } from '../../backends/k8s-train';
import { chainName, remoteJobBase, RemoteTrainer } from '../../backends/remote-train';
import { createTrainingJobRequest, type SageMakerSettings, sageMakerStatus } from '../../backends/sagemaker-train';
import { LocalStore } from '../../store/store';
import { trainingBackends } from '../../backends/training-backends';
import { formatConfigError } from '../../core/jsonl';
import { RunConfig } from '../../core/schemas';
import { FakeCompute } from '../../testing/fake-compute';
import { trainJobFixture } from '../helpers/train-job';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const SAGEMAKER_NAME = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function config(training: unknown): RunConfig {
  return RunConfig.parse({ run: 'r1', seed: { ift: '/x.jsonl' }, compute: { training } });
}

function configErrors(training: unknown): string {
  const r = RunConfig.safeParse({ run: 'r1', seed: { ift: '/x.jsonl' }, compute: { training } });
  expect(r.success).toBe(false);
  return formatConfigError(r.error!, 'run.json');
}

describe('job names', () => {
  it('derive from run, model and digest; are stable; valid for SageMaker and as DNS-1123 labels with room for the chain suffix', () => {
    const a = remoteJobBase('demo', 'm1', '0123456789abcdef');
    expect(a).toBe('srlm-demo-m1-0123456789ab');
    expect(remoteJobBase('demo', 'm1', '0123456789abcdef')).toBe(a);
    expect(remoteJobBase('demo', 'm1', 'fedcba9876543210')).not.toBe(a);
    expect(remoteJobBase('demo', 'm2', '0123456789abcdef')).not.toBe(a);
    const long = remoteJobBase('Weekly_Retrain.2026-11-27T03-00-00Z-with-a-very-long-suffix', 'M2.dpo', '0123456789abcdef');
    for (const max of [63, 56]) {
      const n = remoteJobBase('Weekly_Retrain.2026-11-27T03-00-00Z-with-a-very-long-suffix', 'M2.dpo', '0123456789abcdef', max);
      expect(n.length).toBeLessThanOrEqual(max - 3);
      expect(n.endsWith('-0123456789ab')).toBe(true);
      for (const k of [1, 2, 50]) {
        expect(chainName(n, k)).toMatch(SAGEMAKER_NAME);
        expect(chainName(n, k)).toMatch(DNS_LABEL);
        expect(chainName(n, k).length).toBeLessThanOrEqual(max);
      }
    }
    expect(long.startsWith('srlm-weekly-retrain-2026-11-27t03')).toBe(true);
    expect(chainName(a, 1)).toBe(a);
    expect(chainName(a, 2)).toBe(`${a}-2`);
    expect(() => remoteJobBase('r', 'm', '--')).toThrow(/digest/);
  });
});

describe('compute.training config', () => {
  it('absent or local: the worker trains; the remote kinds take their defaults', () => {
    expect(config(undefined).compute.training).toBeUndefined();
    expect(config({ kind: 'local' }).compute.training).toEqual({ kind: 'local' });
    const sm = config({
      kind: 'sagemaker',
      image: '1.dkr.ecr.x.amazonaws.com/t:1',
      roleArn: 'arn:aws:iam::123456789012:role/t',
      instanceType: 'ml.p4d.24xlarge',
    }).compute.training;
    expect(sm).toMatchObject({ instanceCount: 1, volumeSizeGB: 100, maxRuntimeSeconds: 86400, spot: false, pollSeconds: 30 });
    const k = config({ kind: 'kubernetes', image: 'img:1' }).compute.training;
    expect(k).toMatchObject({ namespace: 'default', nodes: 1, gpusPerNode: 1, backoffLimit: 2, pollSeconds: 15 });
  });

  it('errors name the field', () => {
    expect(configErrors({ kind: 'sagemaker', image: 'x', roleArn: 'role', instanceType: 'p4d' })).toMatch(
      /"compute\.training\.image": must be an image URI[\s\S]*"compute\.training\.roleArn": must be an IAM role ARN[\s\S]*"compute\.training\.instanceType": must be a SageMaker instance type/,
    );
    expect(
      configErrors({
        kind: 'sagemaker',
        image: 'a/b',
        roleArn: 'arn:aws:iam::123456789012:role/t',
        instanceType: 'ml.g5.xlarge',
        maxWaitSeconds: 10,
      }),
    ).toContain('"compute.training.maxWaitSeconds": is only meaningful with spot: true');
    expect(
      configErrors({
        kind: 'sagemaker',
        image: 'a/b',
        roleArn: 'arn:aws:iam::123456789012:role/t',
        instanceType: 'ml.g5.xlarge',
        spot: true,
        maxRuntimeSeconds: 100,
        maxWaitSeconds: 10,
      }),
    ).toContain('"compute.training.maxWaitSeconds": must be >= maxRuntimeSeconds');
    expect(configErrors({ kind: 'kubernetes', image: 'i', namespace: 'ML_Team' })).toMatch(
      /"compute\.training\.namespace": must be a DNS-1123 label/,
    );
    expect(configErrors({ kind: 'kubernetes', image: 'i', nodes: 0 })).toMatch(/"compute\.training\.nodes"/);
    expect(configErrors({ kind: 'kubernetes', image: 'i', tolerations: [{ operator: 'Maybe' }] })).toMatch(
      /"compute\.training\.tolerations\[0\]\.operator"/,
    );
    expect(configErrors({ kind: 'kubernetes', image: 'i', replicas: 2 })).toContain('unknown key "replicas" at "compute.training"');
    expect(configErrors({ kind: 'slurm' })).toMatch(/"compute\.training\.kind"/);
  });
});

describe('torchrun settings of the remote kinds (distributed, processes per node)', () => {
  const inputs = {
    modelUri: 's3://b/p/input/model',
    dataUri: 's3://b/p/input/data/sft.jsonl',
    outputUri: 's3://b/p/output',
    checkpointUri: 's3://b/p/checkpoints',
  };
  const job = trainJobFixture({ mode: 'sft', model: '/m', data: '/w/sft.jsonl', output: '/w/out' });
  const sagemaker = { kind: 'sagemaker', image: 'a/b', roleArn: 'arn:aws:iam::123456789012:role/t', instanceType: 'ml.p4d.24xlarge' };

  it('Kubernetes: strategy, fsdpLayerClass and nprocPerNode reach the pods; nprocPerNode defaults to the GPUs', () => {
    const k = config({
      kind: 'kubernetes',
      image: 'img:1',
      gpusPerNode: 8,
      nprocPerNode: 4,
      strategy: 'fsdp',
      fsdpLayerClass: 'LlamaDecoderLayer',
    }).compute.training as KubernetesSettings;
    const env = (s: KubernetesSettings): Record<string, string> =>
      Object.fromEntries(
        (trainingJobManifest(s, 'srlm-x-1', job, inputs).spec!.template.spec!.containers[0]!.env ?? []).map((e) => [e.name, e.value!]),
      );
    expect(env(k).SRLM_NPROC_PER_NODE).toBe('4');
    expect(JSON.parse(env(k).SRLM_TRAIN_JOB!).distributed).toEqual({ strategy: 'fsdp', fsdp_layer_class: 'LlamaDecoderLayer' });
    const plain = config({ kind: 'kubernetes', image: 'img:1', gpusPerNode: 8 }).compute.training as KubernetesSettings;
    expect(env(plain).SRLM_NPROC_PER_NODE).toBe('8');
    expect(JSON.parse(env(plain).SRLM_TRAIN_JOB!).distributed).toEqual({ strategy: 'ddp' });
    // CPU pods: gloo ranks
    expect(
      env(config({ kind: 'kubernetes', image: 'img:1', gpusPerNode: 0, nprocPerNode: 2 }).compute.training as KubernetesSettings)
        .SRLM_NPROC_PER_NODE,
    ).toBe('2');
    expect(
      env(config({ kind: 'kubernetes', image: 'img:1', gpusPerNode: 0 }).compute.training as KubernetesSettings).SRLM_NPROC_PER_NODE,
    ).toBe('1');
  });

  it('SageMaker: distributed in srlm_job, srlm_nproc_per_node only when configured', () => {
    const s = config({ ...sagemaker, nprocPerNode: 8, strategy: 'fsdp' }).compute.training as SageMakerSettings;
    const hp = createTrainingJobRequest(s, 'srlm-x-1', job, inputs).HyperParameters!;
    expect(hp.srlm_nproc_per_node).toBe('8');
    expect(JSON.parse(hp.srlm_job!).distributed).toEqual({ strategy: 'fsdp' });
    const plain = createTrainingJobRequest(
      config(sagemaker).compute.training as SageMakerSettings,
      'srlm-x-1',
      job,
      inputs,
    ).HyperParameters!;
    expect(Object.keys(plain)).toEqual(['srlm_job']);
    expect(JSON.parse(plain.srlm_job!).distributed).toEqual({ strategy: 'ddp' });
  });

  it('errors name the field', () => {
    expect(configErrors({ kind: 'kubernetes', image: 'i', gpusPerNode: 4, nprocPerNode: 8 })).toContain(
      '"compute.training.nprocPerNode": must be at most gpusPerNode (4): one process per GPU',
    );
    expect(configErrors({ kind: 'kubernetes', image: 'i', gpusPerNode: 0, strategy: 'fsdp' })).toContain(
      '"compute.training.strategy": "fsdp" needs CUDA GPUs: set gpusPerNode (it is 0)',
    );
    expect(configErrors({ kind: 'kubernetes', image: 'i', fsdpLayerClass: 'LlamaDecoderLayer' })).toContain(
      '"compute.training.fsdpLayerClass": is only meaningful with strategy: "fsdp"',
    );
    expect(configErrors({ ...sagemaker, strategy: 'zero3' })).toMatch(/"compute\.training\.strategy"/);
    expect(configErrors({ ...sagemaker, nprocPerNode: 0 })).toMatch(/"compute\.training\.nprocPerNode"/);
    expect(configErrors({ ...sagemaker, strategy: 'fsdp', fsdpLayerClass: 'not a class' })).toContain(
      '"compute.training.fsdpLayerClass": must be a Python class name',
    );
    expect(configErrors({ kind: 'local', strategy: 'fsdp' })).toContain(
      '"compute.training.strategy": is only meaningful with launcher: "torchrun"',
    );
  });

  it('an fsdp layout gets its own job digest whatever the backend (trainDistributed)', () => {
    expect(trainDistributed(config({ ...sagemaker, strategy: 'fsdp' }).compute.training)).toEqual({ strategy: 'fsdp' });
    expect(trainDistributed(config({ kind: 'kubernetes', image: 'i' }).compute.training)).toEqual({ strategy: 'ddp' });
    expect(trainDistributed(config({ kind: 'local' }).compute.training)).toBeUndefined();
    expect(trainDistributed(undefined)).toBeUndefined();
  });

  it('sends precision and the DPO reference to the train job only when the config sets them (trainMemory)', () => {
    const base = RunConfig.parse({ run: 'r', seed: { ift: 'x' } });
    expect(trainMemory(base, 'sft')).toEqual({});
    expect(trainMemory(base, 'dpo')).toEqual({});
    const set = RunConfig.parse({ run: 'r', seed: { ift: 'x' }, compute: { precision: 'bf16-mixed' }, dpo: { reference: 'precomputed' } });
    expect(trainMemory(set, 'sft')).toEqual({ precision: 'bf16-mixed' });
    expect(trainMemory(set, 'dpo')).toEqual({ precision: 'bf16-mixed', reference: 'precomputed' });
  });
});

describe('status mapping', () => {
  it('SageMaker', () => {
    expect(sageMakerStatus({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Starting' })).toEqual({
      state: 'pending',
      detail: 'InProgress/Starting',
    });
    expect(
      sageMakerStatus({
        TrainingJobStatus: 'InProgress',
        SecondaryStatus: 'Training',
        FinalMetricDataList: [
          { MetricName: 'step', Value: 7 },
          { MetricName: 'loss', Value: 0.5 },
        ],
      }),
    ).toEqual({ state: 'running', detail: 'InProgress/Training', step: 7, loss: 0.5 });
    // a spot interruption: still in progress, waiting for capacity again
    expect(sageMakerStatus({ TrainingJobStatus: 'InProgress', SecondaryStatus: 'Interrupted' }).state).toBe('pending');
    expect(sageMakerStatus({ TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed' }).state).toBe('succeeded');
    expect(sageMakerStatus({ TrainingJobStatus: 'Stopping', SecondaryStatus: 'Stopping' }).state).toBe('stopping');
    expect(sageMakerStatus({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxRuntimeExceeded' })).toMatchObject({
      state: 'stopped',
      detail: 'Stopped/MaxRuntimeExceeded',
    });
    expect(
      sageMakerStatus({
        TrainingJobStatus: 'Failed',
        SecondaryStatus: 'Failed',
        FailureReason: 'CapacityError: Unable to provision requested ML compute capacity.',
      }),
    ).toMatchObject({
      state: 'failed',
      invalidInput: false,
      reason: 'CapacityError: Unable to provision requested ML compute capacity.',
    });
    expect(
      sageMakerStatus({ TrainingJobStatus: 'Failed', FailureReason: 'AlgorithmError: InvalidComputeInput: bad row' }).invalidInput,
    ).toBe(true);
  });

  it('Kubernetes batch/v1 Job', () => {
    expect(kubernetesStatus({ status: {} }, 2)).toEqual({
      state: 'pending',
      detail: 'Pending (active 0/2, ready 0, succeeded 0, failed 0)',
    });
    expect(kubernetesStatus({ status: { active: 2, ready: 1 } }, 2).state).toBe('pending');
    expect(kubernetesStatus({ status: { active: 2, ready: 2 } }, 2)).toMatchObject({
      state: 'running',
      detail: 'Running (active 2/2, ready 2, succeeded 0, failed 0)',
    });
    expect(kubernetesStatus({ status: { succeeded: 2, conditions: [{ type: 'SuccessCriteriaMet', status: 'True' }] } }, 2).state).toBe(
      'pending',
    );
    expect(kubernetesStatus({ status: { succeeded: 2, conditions: [{ type: 'Complete', status: 'True' }] } }, 2).state).toBe('succeeded');
    expect(kubernetesStatus({ status: { conditions: [{ type: 'Complete', status: 'False' }], active: 1, ready: 1 } }, 1).state).toBe(
      'running',
    );
    expect(kubernetesStatus({ status: { conditions: [{ type: 'FailureTarget', status: 'True' }] } }, 2).state).toBe('stopping');
    expect(kubernetesStatus({ status: { conditions: [{ type: 'Suspended', status: 'True' }] } }, 2).state).toBe('pending');
    expect(
      kubernetesStatus(
        {
          status: {
            conditions: [
              { type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' },
            ],
          },
        },
        2,
      ),
    ).toMatchObject({
      state: 'failed',
      invalidInput: false,
      reason: 'DeadlineExceeded: Job was active longer than specified deadline',
    });
    expect(
      kubernetesStatus(
        { status: { conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy', message: 'exit code 2' }] } },
        2,
      ).invalidInput,
    ).toBe(true);
  });
});

describe('trainerFor', () => {
  it('picks the backend the config names, none for local or absent', () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'http://127.0.0.1:1' }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const client = new SageMakerClient({ region: 'us-east-1' });
    const pick = trainingBackends({
      storeFor: () => new LocalStore(path.join(os.tmpdir(), 'srlm-unused')),
      wrapped: new FakeCompute(),
      sageMakerClient: client,
      kubeConfig: kc,
    });
    expect(pick(config(undefined))).toBeUndefined();
    expect(pick(config({ kind: 'local' }))).toBeUndefined();
    const sm = pick(config({ kind: 'sagemaker', image: 'a/b', roleArn: 'arn:aws:iam::123456789012:role/t', instanceType: 'ml.g5.xlarge' }));
    expect(sm).toBeInstanceOf(RemoteTrainer);
    expect(sm!.name).toBe('sagemaker-training');
    expect(pick(config({ kind: 'kubernetes', image: 'i:1' }))!.name).toBe('kubernetes-training');
    client.destroy();
  });
});
