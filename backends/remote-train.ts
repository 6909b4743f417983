/**
 * What the remote training backends (SageMaker, Kubernetes) share: deterministic job names,
 * staging a job's inputs in the run's s3:// store, and one submit / re-attach / poll / stop
 * loop over a small per-platform interface.
 *
 * A job's name derives from the run, the model name and trainModel's job digest (base model,
 * data, settings), so a worker that restarts mid-training finds the job it submitted and
 * waits for it instead of starting a second one. Names form a chain `<base>`, `<base>-2`, ...:
 * a job that failed or was stopped stays on the platform (SageMaker never frees a name), and
 * the next attempt submits the next name of the chain.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { ArtifactStore } from '../store/store';
import type { ComputeBackend, ComputeEvent, GenerateJob, ImportJob, RemoteTarget, RunControl, TrainDistributed, TrainJob } from './compute';

/** A remote job's state, the same for every platform. */
export interface RemoteStatus {
  state: 'pending' | 'running' | 'stopping' | 'succeeded' | 'failed' | 'stopped';
  /** the platform's own words, e.g. "InProgress/Training" or "active 2/2" */
  detail: string;
  /** why it failed */
  reason?: string;
  /** the failure is the job's input (bad data, bad model): retrying cannot help */
  invalidInput?: boolean;
  step?: number;
  totalSteps?: number;
  loss?: number;
}

export const TERMINAL: ReadonlySet<RemoteStatus['state']> = new Set(['succeeded', 'failed', 'stopped']);

/**
 * The longest name trainModel derives, chain suffix included: a DNS-1123 label (63) less room
 * for Kubernetes pod hostnames `<job>-<index>`; SageMaker takes up to 63.
 */
export const REMOTE_NAME_MAX = 56;

/** Longest name chain: a job failing this often fails the activity for good. */
export const MAX_CHAIN = 50;

/** Staged inputs of a job, as s3:// URIs. */
export interface StagedInputs {
  modelUri: string;
  dataUri: string;
  outputUri: string;
  checkpointUri: string;
}

/** One training platform. */
export interface RemotePlatform {
  readonly kind: string;
  /** the longest job name the platform accepts */
  readonly maxName: number;
  readonly pollMs: number;
  /** null when no job has that name */
  describe(name: string): Promise<RemoteStatus | null>;
  submit(name: string, job: TrainJob, inputs: StagedInputs): Promise<void>;
  /** asks the platform to stop the job and free its machines */
  stop(name: string): Promise<void>;
  /** re-attaching to a running job: recreate what a worker that died mid-submit may have left out */
  reattach?(name: string): Promise<void>;
  /** writes the finished job's model into `outputDir` */
  collect(name: string, inputs: StagedInputs, outputDir: string): Promise<void>;
}

/**
 * The base of a job's name chain: `srlm-<run>-<model>-<digest>`, lowercase letters, digits and
 * `-` only (valid for SageMaker and as a DNS-1123 label), the run/model part shortened so that
 * the digest (12 hex) and a chain suffix (`-NN`) always fit in `maxLen`.
 */
export function remoteJobBase(run: string, model: string, digest: string, maxLen = 63): string {
  const slug = (s: string): string =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
  const d = slug(digest).slice(0, 12);
  if (d.length < 8) throw new Error(`job digest "${digest}" must have at least 8 letters or digits`);
  const room = maxLen - 3 - d.length - 'srlm-'.length - 1; // "-NN" suffix, digest, prefix, separator
  if (room < 3) throw new Error(`job names of at most ${maxLen} characters leave no room for the run and model`);
  const middle = `${slug(run)}-${slug(model)}`
    .replace(/^-+|-+$/g, '')
    .slice(0, room)
    .replace(/-+$/, '');
  return `srlm-${middle ? `${middle}-` : ''}${d}`;
}

/** The k-th name of a chain (k = 1 is the base itself). */
export function chainName(base: string, k: number): string {
  return k === 1 ? base : `${base}-${k}`;
}

function failure(message: string, type: string, retryable: boolean): ApplicationFailure {
  return retryable ? ApplicationFailure.retryable(message, type) : ApplicationFailure.nonRetryable(message, type);
}

/** The remote kinds move inputs and outputs through S3: refuse any other store, naming the fields. */
export function requireS3Store(store: ArtifactStore, kind: string): void {
  if (!store.rootUri.startsWith('s3://')) {
    throw ApplicationFailure.nonRetryable(
      `compute.training.kind "${kind}" needs an s3:// store: set store.root to s3://bucket/prefix (this run's store is ${store.rootUri})`,
      'InvalidConfig',
    );
  }
}

/** The store key of an s3:// URI inside the store, or null when it lies outside. */
export function storeKeyOf(store: ArtifactStore, uri: string): string | null {
  const root = `${store.rootUri}/`;
  return uri.startsWith(root) ? uri.slice(root.length) : null;
}

/** Files under `dir`: relative, `/`-separated, sorted. */
export async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out.sort();
}

/** Puts the job's data (and the base model, unless already in the store) under its prefix. */
export async function stageInputs(store: ArtifactStore, job: TrainJob, target: RemoteTarget): Promise<StagedInputs> {
  const p = target.store_prefix;
  await store.putFile(`${p}/input/data/${path.basename(job.data)}`, job.data);
  let modelKey = target.model_key;
  if (!modelKey) {
    modelKey = `${p}/input/model`;
    for (const f of await walk(job.model)) await store.putFile(`${modelKey}/${f}`, path.join(job.model, f));
  }
  return locations(store, target, modelKey, path.basename(job.data));
}

function locations(store: ArtifactStore, target: RemoteTarget, modelKey: string, dataFile: string): StagedInputs {
  const p = target.store_prefix;
  return {
    modelUri: store.uri(modelKey),
    dataUri: store.uri(`${p}/input/data/${dataFile}`),
    outputUri: store.uri(`${p}/output`),
    checkpointUri: store.uri(`${p}/checkpoints`),
  };
}

/**
 * The compute/ train job a remote container runs: the worker's job with the container's
 * locations (paths there, or s3:// URIs), minus the worker-only fields, with the backend's
 * `distributed` settings (the container always launches through torchrun). The container's
 * entrypoint (backends/train-entry.ts) resumes from the newest complete checkpoint itself.
 */
export function remoteTrainJob(
  job: TrainJob,
  at: { model: string; data: string; output: string; checkpoints: string },
  distributed?: TrainDistributed,
): Record<string, unknown> {
  const { remote: _remote, launcher: _launcher, distributed: _distributed, ...rest } = job;
  return {
    ...rest,
    distributed: distributed ?? null,
    model: at.model,
    data: at.data,
    output: at.output,
    device: job.device === 'cpu' ? 'cpu' : 'auto',
    threads: 0,
    checkpoint_dir: job.checkpoint_every ? at.checkpoints : null,
    resume_from: null,
  };
}

/** Waits `ms`, or less when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A ComputeBackend whose `train` runs on a remote platform; generation and import go to
 * `wrapped` (the worker's local compute).
 */
export class RemoteTrainer implements ComputeBackend {
  readonly name: string;
  constructor(
    private readonly platform: RemotePlatform,
    private readonly store: ArtifactStore,
    private readonly wrapped: ComputeBackend,
  ) {
    this.name = `${platform.kind}-training`;
  }

  generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.generate(job, ctl);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.importModel(job, ctl);
  }

  async train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    const { kind } = this.platform;
    const target = job.remote;
    if (!target)
      throw ApplicationFailure.nonRetryable(
        `${kind} training needs the job's remote target (job name, store prefix)`,
        'InvalidComputeInput',
      );
    requireS3Store(this.store, kind);
    if (target.job_name.length + 3 > this.platform.maxName) {
      throw ApplicationFailure.nonRetryable(
        `${kind} job name "${target.job_name}" is longer than ${this.platform.maxName - 3} characters`,
        'InvalidComputeInput',
      );
    }
    if (ctl.signal?.aborted) throw new Error(`${kind} training ${target.job_name} cancelled before it started`);

    // the newest job of the chain decides: running -> attach, succeeded -> collect, else submit the next
    let k = 1;
    let last: RemoteStatus | null = null;
    for (; k <= MAX_CHAIN; k++) {
      const st = await this.platform.describe(chainName(target.job_name, k));
      if (!st) break;
      last = st;
    }
    let name: string;
    let status: RemoteStatus;
    let attached = false;
    if (last && last.state !== 'failed' && last.state !== 'stopped') {
      name = chainName(target.job_name, k - 1);
      status = last;
      attached = true;
      if (!TERMINAL.has(status.state)) await this.platform.reattach?.(name);
    } else {
      if (k > MAX_CHAIN)
        throw ApplicationFailure.nonRetryable(
          `${kind}: ${MAX_CHAIN} jobs named ${target.job_name}[-N] failed or were stopped; giving up`,
          'RemoteTrainingFailed',
        );
      name = chainName(target.job_name, k);
      const inputs = await stageInputs(this.store, job, target);
      // cancelled while uploading: submit nothing
      if (ctl.signal?.aborted) throw new Error(`${kind} training ${name} cancelled before it was submitted`);
      await this.platform.submit(name, job, inputs);
      status = (await this.platform.describe(name)) ?? { state: 'pending', detail: 'submitted' };
    }
    ctl.onEvent?.({
      event: 'start',
      backend: kind,
      job_name: name,
      attached,
      previous_failure: last && !attached ? (last.reason ?? last.detail) : null,
    });

    for (;;) {
      ctl.onEvent?.({
        event: 'progress',
        backend: kind,
        job_name: name,
        status: status.detail,
        state: status.state,
        ...(status.step !== undefined ? { step: status.step } : {}),
        ...(status.totalSteps !== undefined ? { total_steps: status.totalSteps } : {}),
        ...(status.loss !== undefined ? { loss: status.loss } : {}),
      });
      if (TERMINAL.has(status.state) || ctl.signal?.aborted) break;
      await pause(this.platform.pollMs, ctl.signal);
      if (ctl.signal?.aborted) break;
      status = (await this.platform.describe(name)) ?? {
        state: 'failed',
        detail: 'vanished',
        reason: `${kind} job ${name} no longer exists`,
      };
    }

    if (ctl.signal?.aborted) {
      if (!TERMINAL.has(status.state)) await this.platform.stop(name);
      throw new Error(`${kind} training job ${name} cancelled (stop requested while ${status.detail})`);
    }
    if (status.state !== 'succeeded') {
      const why = status.reason ?? status.detail;
      if (status.invalidInput) throw failure(`${kind} training job ${name} failed on its input: ${why}`, 'InvalidComputeInput', false);
      throw failure(`${kind} training job ${name} ${status.state}: ${why}`, 'RemoteTrainingFailed', true);
    }
    const inputs = locations(this.store, target, target.model_key ?? `${target.store_prefix}/input/model`, path.basename(job.data));
    await fs.mkdir(job.output, { recursive: true });
    await this.platform.collect(name, inputs, job.output);
    return { event: 'done', backend: kind, job_name: name, attached, status: status.detail };
  }
}
