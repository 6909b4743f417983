/**
 * `ActivityDeps.trainerFor`: the training backend a run's config asks for
 * (`compute.training`). Absent or `local`: undefined, i.e. the worker's own compute.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { SageMakerClient } from '@aws-sdk/client-sagemaker';
import type { RunConfig } from '../core/schemas';
import type { ComputeBackend } from './compute';
import { defaultKubeConfig, KubernetesPlatform } from './k8s-train';
import { RemoteTrainer } from './remote-train';
import { SageMakerPlatform, sageMakerClient } from './sagemaker-train';
import type { ArtifactStore } from './store';

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
    if (t.kind === 'sagemaker') {
      return new RemoteTrainer(new SageMakerPlatform(t, store, opts.sageMakerClient ?? sageMakerClient(t.region), opts.pollMs), store, opts.wrapped);
    }
    return new RemoteTrainer(new KubernetesPlatform(t, store, opts.kubeConfig ?? defaultKubeConfig(t.context), opts.pollMs), store, opts.wrapped);
  };
}
