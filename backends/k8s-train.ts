/**
 * SFT/DPO as a multi-node Kubernetes job (`compute.training.kind: "kubernetes"`).
 *
 * One indexed `batch/v1` Job (completionMode Indexed, `nodes` completions run in parallel) plus
 * a headless Service of the same name: pod i gets the stable DNS name `<job>-i.<job>`, so every
 * pod reaches rank 0 at `<job>-0.<job>:29500` for torchrun's static rendezvous, with its node
 * rank in JOB_COMPLETION_INDEX (set by Kubernetes). Core batch/v1 only — no JobSet or Kubeflow
 * operator to install — and the Job's podFailurePolicy makes an exit code 2 of compute/
 * (invalid input) fail the Job at once, while pods evicted by a disruption (preemption, node
 * drain) are not counted against backoffLimit. The Service is owned by the Job, so deleting the
 * Job with propagationPolicy Background removes pods and Service.
 *
 * The container contract, implemented by the training image's entrypoint (backends/train-entry.ts,
 * infra/docker/train.Dockerfile): read SRLM_TRAIN_JOB (compute/'s train job whose model, data,
 * output and checkpoint_dir are s3:// URIs, also in SRLM_MODEL_URI, SRLM_DATA_URI,
 * SRLM_OUTPUT_URI, SRLM_CHECKPOINT_URI; its `distributed` from the backend's strategy /
 * fsdpLayerClass), fetch the inputs and the newest complete checkpoint, run
 * `python -m srlm_compute.launch --nnodes $SRLM_NNODES --nproc-per-node $SRLM_NPROC_PER_NODE
 * --node-rank $JOB_COMPLETION_INDEX --master-addr $SRLM_MASTER_ADDR --master-port
 * $SRLM_MASTER_PORT -m srlm_compute train ...` (torchrun's options; unlike bare torchrun it exits
 * 2 on invalid input, which the podFailurePolicy needs), keep checkpoints in SRLM_CHECKPOINT_URI and put the model's files
 * under SRLM_OUTPUT_URI (rank 0). The activity copies them into trainModel's output directory.
 */
import * as fs from 'node:fs/promises';
import { ApiException, BatchV1Api, CoreV1Api, KubeConfig, type V1Job, type V1Service } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import type { TrainingBackend } from '../core/schemas';
import { type TrainJob, trainDistributed } from './compute';
import type { RemotePlatform, RemoteStatus, StagedInputs } from './remote-train';
import { REMOTE_NAME_MAX, remoteTrainJob, storeKeyOf } from './remote-train';
import type { ArtifactStore } from '../store/store';

export type KubernetesSettings = Extract<TrainingBackend, { kind: 'kubernetes' }>;

export const RDZV_PORT = 29500;
const CONTAINER = 'trainer';

function labels(name: string): Record<string, string> {
  return { 'app.kubernetes.io/managed-by': 'srlm', 'srlm.dev/job': name };
}

/** The indexed Job for one training job. */
export function trainingJobManifest(s: KubernetesSettings, name: string, job: TrainJob, inputs: StagedInputs): V1Job {
  const env: Record<string, string> = {
    ...(s.env ?? {}),
    SRLM_TRAIN_JOB: JSON.stringify(
      remoteTrainJob(
        job,
        { model: inputs.modelUri, data: inputs.dataUri, output: inputs.outputUri, checkpoints: inputs.checkpointUri },
        trainDistributed(s),
      ),
    ),
    SRLM_MODEL_URI: inputs.modelUri,
    SRLM_DATA_URI: inputs.dataUri,
    SRLM_OUTPUT_URI: inputs.outputUri,
    SRLM_CHECKPOINT_URI: inputs.checkpointUri,
    SRLM_NNODES: String(s.nodes),
    SRLM_NPROC_PER_NODE: String(s.nprocPerNode ?? Math.max(1, s.gpusPerNode)),
    SRLM_MASTER_ADDR: `${name}-0.${name}`,
    SRLM_MASTER_PORT: String(RDZV_PORT),
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: s.namespace, labels: labels(name) },
    spec: {
      completionMode: 'Indexed',
      completions: s.nodes,
      parallelism: s.nodes,
      backoffLimit: s.backoffLimit,
      podFailurePolicy: {
        rules: [
          // compute/ exits 2 when its input is invalid: no restart can help
          { action: 'FailJob', onExitCodes: { containerName: CONTAINER, operator: 'In', values: [2] } },
          // preempted or drained nodes do not use up the backoff limit
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
      template: {
        metadata: { labels: labels(name) },
        spec: {
          restartPolicy: 'Never',
          subdomain: name,
          ...(s.serviceAccount ? { serviceAccountName: s.serviceAccount } : {}),
          ...(s.nodeSelector ? { nodeSelector: s.nodeSelector } : {}),
          ...(s.tolerations ? { tolerations: s.tolerations } : {}),
          containers: [
            {
              name: CONTAINER,
              image: s.image,
              env: Object.entries(env).map(([k, value]) => ({ name: k, value })),
              ports: [{ name: 'rdzv', containerPort: RDZV_PORT }],
              ...(s.gpusPerNode > 0 ? { resources: { limits: { 'nvidia.com/gpu': String(s.gpusPerNode) } } } : {}),
            },
          ],
        },
      },
    },
  };
}

/** The headless Service giving the Job's pods stable DNS names; owned by the Job when its uid is known. */
export function rendezvousServiceManifest(s: KubernetesSettings, name: string, ownerUid?: string): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: s.namespace,
      labels: labels(name),
      ...(ownerUid ? { ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: ownerUid }] } : {}),
    },
    spec: {
      clusterIP: 'None',
      selector: { 'srlm.dev/job': name },
      // peers must resolve before they are ready: the rendezvous is how they become ready
      publishNotReadyAddresses: true,
      ports: [{ name: 'rdzv', port: RDZV_PORT, targetPort: RDZV_PORT }],
    },
  };
}

/** A batch/v1 Job's status in srlm's terms. */
export function kubernetesStatus(job: Pick<V1Job, 'status'>, nodes: number): RemoteStatus {
  const st = job.status ?? {};
  const cond = (type: string) => st.conditions?.find((c) => c.type === type && c.status === 'True');
  const counts = `active ${st.active ?? 0}/${nodes}, ready ${st.ready ?? 0}, succeeded ${st.succeeded ?? 0}, failed ${st.failed ?? 0}`;
  const failed = cond('Failed');
  if (failed) {
    const reason = `${failed.reason ?? 'Failed'}: ${failed.message ?? ''}`.trim();
    // the podFailurePolicy's FailJob rule fired: compute/ exited 2 (invalid input)
    return { state: 'failed', detail: `Failed (${counts})`, reason, invalidInput: failed.reason === 'PodFailurePolicy' };
  }
  if (cond('Complete')) return { state: 'succeeded', detail: `Complete (${counts})` };
  if (cond('FailureTarget')) return { state: 'stopping', detail: `FailureTarget (${counts})` };
  if (cond('Suspended')) return { state: 'pending', detail: `Suspended (${counts})` };
  if ((st.active ?? 0) > 0) return { state: (st.ready ?? 0) >= nodes ? 'running' : 'pending', detail: `Running (${counts})` };
  return { state: 'pending', detail: `Pending (${counts})` };
}

function code(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : (err as { code?: number })?.code;
}

/** kubeconfig the AWS way: KUBECONFIG / ~/.kube/config, or the pod's service account in a cluster. */
export function defaultKubeConfig(context?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  if (context) {
    if (!kc.getContextObject(context))
      throw ApplicationFailure.nonRetryable(`compute.training.context: kubeconfig has no context "${context}"`, 'InvalidConfig');
    kc.setCurrentContext(context);
  }
  return kc;
}

export class KubernetesPlatform implements RemotePlatform {
  readonly kind = 'kubernetes';
  /** DNS-1123 label, less room for the pods' "-<index>" hostnames */
  readonly maxName = REMOTE_NAME_MAX;
  readonly pollMs: number;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  constructor(
    private readonly settings: KubernetesSettings,
    private readonly store: ArtifactStore,
    kubeConfig: KubeConfig,
    pollMs?: number,
  ) {
    this.pollMs = pollMs ?? settings.pollSeconds * 1000;
    this.batch = kubeConfig.makeApiClient(BatchV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  private get namespace(): string {
    return this.settings.namespace;
  }

  async describe(name: string): Promise<RemoteStatus | null> {
    try {
      return kubernetesStatus(await this.batch.readNamespacedJob({ name, namespace: this.namespace }), this.settings.nodes);
    } catch (err) {
      if (code(err) === 404) return null;
      throw this.fail('read', name, err);
    }
  }

  private fail(what: string, name: string, err: unknown): Error {
    const c = code(err);
    const msg = `kubernetes: could not ${what} job ${this.namespace}/${name}${c ? ` (HTTP ${c})` : ''}: ${(err as Error).message}`;
    // 400/422: the manifest is invalid; 403: the worker may not create jobs there
    if (c === 400 || c === 422 || c === 403) return ApplicationFailure.nonRetryable(`${msg} (check compute.training)`, 'InvalidConfig');
    return ApplicationFailure.retryable(msg, 'KubernetesApiError');
  }

  async submit(name: string, job: TrainJob, inputs: StagedInputs): Promise<void> {
    let created: V1Job;
    try {
      created = await this.batch.createNamespacedJob({
        namespace: this.namespace,
        body: trainingJobManifest(this.settings, name, job, inputs),
      });
    } catch (err) {
      // created by an attempt that died before it could read it back: attach to it
      if (code(err) !== 409) throw this.fail('create', name, err);
      created = await this.batch.readNamespacedJob({ name, namespace: this.namespace });
    }
    await this.ensureService(name, created.metadata?.uid);
  }

  /** A worker that died between creating the Job and its Service leaves pods that cannot find rank 0. */
  async reattach(name: string): Promise<void> {
    const job = await this.batch.readNamespacedJob({ name, namespace: this.namespace }).catch((err: unknown) => {
      throw this.fail('read', name, err);
    });
    await this.ensureService(name, job.metadata?.uid);
  }

  private async ensureService(name: string, ownerUid: string | undefined): Promise<void> {
    try {
      await this.core.createNamespacedService({
        namespace: this.namespace,
        body: rendezvousServiceManifest(this.settings, name, ownerUid),
      });
    } catch (err) {
      if (code(err) !== 409) throw this.fail('create the rendezvous service of', name, err);
    }
  }

  async stop(name: string): Promise<void> {
    try {
      await this.batch.deleteNamespacedJob({ name, namespace: this.namespace, propagationPolicy: 'Background' });
    } catch (err) {
      if (code(err) !== 404) throw this.fail('delete', name, err);
    }
    // owned by the Job, so the garbage collector removes it too; deleting it here does not wait for that
    try {
      await this.core.deleteNamespacedService({ name, namespace: this.namespace });
    } catch (err) {
      if (code(err) !== 404) throw this.fail('delete the rendezvous service of', name, err);
    }
  }

  async collect(name: string, inputs: StagedInputs, outputDir: string): Promise<void> {
    const prefix = storeKeyOf(this.store, inputs.outputUri);
    const files = prefix ? await this.store.list(prefix) : [];
    if (!prefix || files.length === 0) {
      throw ApplicationFailure.nonRetryable(
        `kubernetes job ${name} completed but wrote no model under ${inputs.outputUri} (the image must upload it there)`,
        'RemoteOutputMissing',
      );
    }
    const local = await this.store.localDir(prefix);
    await fs.cp(local, outputDir, { recursive: true, dereference: true });
  }
}
