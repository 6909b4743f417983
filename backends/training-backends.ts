/**
 * `ActivityDeps.trainerFor`: the training backend a run's config asks for
 * (`compute.training`). Absent or `local`: undefined, i.e. the worker's own compute.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { SageMakerClient } from '@aws-sdk/client-sagemaker';
import type { RunConfig } from '../core/schemas';
import type { ComputeBackend } from './compute';
import { REMOTE_NAME_MAX, type RemotePlatform, type RemoteStatus, RemoteTrainer, type StagedInputs } from './remote-train';
import type { TrainJob } from './compute';
import type { ArtifactStore } from '../store/store';

export interface TrainingBackendsOptions {
  /** the run's store (the remote kinds need an s3:// one) */
  storeFor: (config: RunConfig) => ArtifactStore;
  /** generation and import still run here */
  wrapped: ComputeBackend;
  /** tests: a client for the SageMaker API (else one per region from the AWS default chain) */
  sageMakerClient?: SageMakerClient;
  /** tests: the cluster (else KUBECONFIG / ~/.kube/config / in-cluster) */
  kubeConfig?: KubeConfig;
  /** tests: poll interval in ms instead of the config's pollSeconds */
  pollMs?: number;
}

export function trainingBackends(opts: TrainingBackendsOptions): (config: RunConfig) => ComputeBackend | undefined {
  return (config) => {
    const t = config.compute.training;
    if (!t || t.kind === 'local') return undefined;
    const store = opts.storeFor(config);
    const pollMs = opts.pollMs ?? t.pollSeconds * 1000;
    if (t.kind === 'sagemaker') {
      return new RemoteTrainer(
        new LazyPlatform('sagemaker', 63, pollMs, async () => {
          const { SageMakerPlatform, sageMakerClient } = await import('./sagemaker-train');
          return new SageMakerPlatform(t, store, opts.sageMakerClient ?? sageMakerClient(t.region), opts.pollMs);
        }),
        store,
        opts.wrapped,
      );
    }
    return new RemoteTrainer(
      new LazyPlatform('kubernetes', REMOTE_NAME_MAX, pollMs, async () => {
        const { defaultKubeConfig, KubernetesPlatform } = await import('./k8s-train');
        return new KubernetesPlatform(t, store, opts.kubeConfig ?? defaultKubeConfig(t.context), opts.pollMs);
      }),
      store,
      opts.wrapped,
    );
  };
}

/**
 * A platform whose module is imported on first use: the Kubernetes client and the SageMaker
 * SDK add about 100 MB to a worker's RSS (and most of a second to its start) when imported up
 * front, and most workers never train remotely.
 */
class LazyPlatform implements RemotePlatform {
  private loaded?: Promise<RemotePlatform>;
  constructor(
    readonly kind: string,
    readonly maxName: number,
    readonly pollMs: number,
    private readonly load: () => Promise<RemotePlatform>,
  ) {}

  private get platform(): Promise<RemotePlatform> {
    return (this.loaded ??= this.load());
  }
  async describe(name: string): Promise<RemoteStatus | null> {
    return (await this.platform).describe(name);
  }
  async submit(name: string, job: TrainJob, inputs: StagedInputs): Promise<void> {
    return (await this.platform).submit(name, job, inputs);
  }
  async stop(name: string): Promise<void> {
    return (await this.platform).stop(name);
  }
  async reattach(name: string): Promise<void> {
    const p = await this.platform;
    if (p.reattach) await p.reattach(name);
  }
  async collect(name: string, inputs: StagedInputs, outputDir: string): Promise<void> {
    return (await this.platform).collect(name, inputs, outputDir);
  }
}
