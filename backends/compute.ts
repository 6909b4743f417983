/**
 * The bridge to compute/ (Python): each job is a child process that reads a JSON job file
 * and prints JSON-lines progress. Running it as a child keeps the worker's event loop free
 * to heartbeat, and lets cancellation stop the tensors within seconds.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import type { RunConfig } from '../core/schemas';

export interface GenerateRequest {
  id: string;
  messages?: { role: 'system' | 'user' | 'assistant'; content: string }[];
  prompt?: string;
  n: number;
  temperature: number;
  top_p: number;
  max_new_tokens: number;
  seed: number;
}

export interface GenerateOutput {
  id: string;
  outputs: { text: string; tokens: number; finish_reason: 'stop' | 'length' }[];
  /** set when the request was not generated (e.g. "prompt_too_long: ...") */
  skipped?: string;
}

export interface GenerateJob {
  model: string;
  /** one request file and its output file ... */
  input?: string;
  output?: string;
  /** ... or several, processed in order with one model load; `shard_done` follows each */
  shards?: { input: string; output: string }[];
  device: 'auto' | 'cpu' | 'cuda';
  batch_size: number;
  threads: number;
  /** absent: transformers in the compute process; vllm: vLLM's offline engine there (compute/srlm_compute/vllm_engine.py) */
  engine?: VllmJobEngine;
}

/** The `engine` of a GenerateJob run on vLLM (snake_case, as compute/ reads it). */
export interface VllmJobEngine {
  kind: 'vllm';
  tensor_parallel_size: number;
  gpu_memory_utilization: number;
  max_model_len: number | null;
  dtype: 'auto' | 'bfloat16' | 'float16' | 'float32';
  requests_per_call: number;
}

export interface TrainJob {
  mode: 'sft' | 'dpo';
  model: string;
  ref_model: string | null;
  data: string;
  output: string;
  lr: number;
  lr_end: number;
  epochs: number;
  batch_size: number;
  grad_accum: number;
  dropout: number;
  beta: number;
  max_length: number;
  seed: number;
  device: 'auto' | 'cpu' | 'cuda';
  threads: number;
  max_steps: number | null;
  gradient_checkpointing: boolean;
  /** save a full checkpoint every N optimizer steps into checkpoint_dir (null: never) */
  checkpoint_every?: number | null;
  checkpoint_dir?: string | null;
  /** a checkpoint directory (with its manifest) to continue from */
  resume_from?: string | null;
  /** remote backends only (never sent to compute/): the job's name and its place in the store */
  remote?: RemoteTarget;
  /** how the ranks of a multi-process run share the model (compute/srlm_compute/train.py); null: ddp */
  distributed?: TrainDistributed | null;
  /** weights and compute dtype (compute.precision); absent: fp32 weights, bf16 compute on CUDA */
  precision?: 'fp32' | 'bf16-mixed' | 'bf16';
  /** dpo: the reference's log-probs from a resident copy (absent) or precomputed before training (dpo.reference) */
  reference?: 'copy' | 'precomputed';
  /** sft: batches of similar lengths (sft.groupByLength); absent: uniformly shuffled batches */
  group_by_length?: boolean;
  /**
   * PythonCompute only (never sent to compute/): run the job as `nproc_per_node` processes under
   * torchrun (through `python -m srlm_compute.launch`); absent: one process
   */
  launcher?: TrainLauncher;
}

export interface TrainDistributed {
  strategy: 'ddp' | 'fsdp';
  /** fsdp: the layer class wrapped as one FSDP unit (null: the model's _no_split_modules) */
  fsdp_layer_class?: string | null;
}

export interface TrainLauncher {
  kind: 'torchrun';
  nproc_per_node: number;
}

/**
 * The `distributed` section of the train jobs a run's `compute.training` runs: the local torchrun
 * launcher's and every remote backend's (which always launch through torchrun); undefined for a
 * local job in one process.
 */
export function trainDistributed(t: RunConfig['compute']['training']): TrainDistributed | undefined {
  if (!t || (t.kind === 'local' && t.launcher !== 'torchrun')) return undefined;
  return { strategy: t.strategy ?? 'ddp', ...(t.fsdpLayerClass ? { fsdp_layer_class: t.fsdpLayerClass } : {}) };
}

/**
 * The train job's memory and batching options from a run's config (compute.precision,
 * dpo.reference, sft.groupByLength), each only when set: job digests and jobs of runs without
 * them stay as they were.
 */
export function trainMemory(
  config: Pick<RunConfig, 'compute' | 'dpo' | 'sft'>,
  method: 'sft' | 'dpo',
): Pick<TrainJob, 'precision' | 'reference' | 'group_by_length'> {
  return {
    ...(config.compute.precision ? { precision: config.compute.precision } : {}),
    ...(method === 'dpo' && config.dpo.reference ? { reference: config.dpo.reference } : {}),
    ...(method === 'sft' && config.sft.groupByLength ? { group_by_length: true } : {}),
  };
}

/** The torchrun launch a run's `compute.training` asks for (local backend only); undefined: one process. */
export function localTorchrun(t: RunConfig['compute']['training']): { launcher: TrainLauncher; distributed: TrainDistributed } | undefined {
  if (!t || t.kind !== 'local' || t.launcher !== 'torchrun') return undefined;
  return { launcher: { kind: 'torchrun', nproc_per_node: t.nprocPerNode ?? 1 }, distributed: trainDistributed(t)! };
}

/**
 * argv after the Python executable for one compute job: `-m srlm_compute <command> --job <file>`,
 * or, for a train job with a torchrun launcher, the same under `srlm_compute.launch` (torchrun's
 * options, one standalone node; see compute/srlm_compute/launch.py for why not torchrun itself).
 */
export function computeArgs(command: string, jobFile: string, launcher?: TrainLauncher): string[] {
  const direct = ['-m', 'srlm_compute', command, '--job', jobFile];
  if (!launcher) return direct;
  return ['-m', 'srlm_compute.launch', '--standalone', '--nproc-per-node', String(launcher.nproc_per_node), ...direct];
}

/** Where a remote training job's files live in the store, and its name (backends/remote-train.ts). */
export interface RemoteTarget {
  /** base of the job's name chain: srlm-<run>-<model>-<digest> */
  job_name: string;
  /** store key prefix for the job's inputs, checkpoints and outputs */
  store_prefix: string;
  /** store key prefix of the base model when it is already in the store (else its local directory is uploaded) */
  model_key: string | null;
}

export interface ImportJob {
  packaged?: string;
  gguf?: string;
  output: string;
}

/** One JSON line from a compute process. */
export interface ComputeEvent {
  event: 'start' | 'progress' | 'done' | 'error' | 'shard_done' | 'checkpoint';
  [key: string]: unknown;
}

export interface RunControl {
  onEvent?: (ev: ComputeEvent) => void;
  signal?: AbortSignal;
}

export interface ComputeBackend {
  readonly name: string;
  /** true for a backend whose server holds its own model (generation gets the model id, not a local directory) */
  readonly servesOwnModel?: boolean;
  generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent>;
  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent>;
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent>;
}

type EngineConfig = NonNullable<RunConfig['compute']['engine']>;

/**
 * `ActivityDeps.engineFor` for one `compute.engine.kind`: `make` builds a backend per distinct
 * engine settings, reused across activities; other kinds (and no engine) give undefined.
 */
export function enginesOfKind<K extends EngineConfig['kind']>(
  kind: K,
  make: (engine: Extract<EngineConfig, { kind: K }>) => ComputeBackend,
): (config: RunConfig) => ComputeBackend | undefined {
  const cache = new Map<string, ComputeBackend>();
  return (config) => {
    const e = config.compute.engine;
    if (!e || e.kind !== kind) return undefined;
    const key = JSON.stringify(e);
    let backend = cache.get(key);
    if (!backend) {
      backend = make(e as Extract<EngineConfig, { kind: K }>);
      cache.set(key, backend);
    }
    return backend;
  };
}

export interface PythonComputeOptions {
  python: string;
  /** directory holding the srlm_compute package */
  packageDir: string;
  /** where job files are written */
  workDir: string;
  /** extra environment for the child */
  env?: Record<string, string>;
  /** how long to wait after SIGTERM before SIGKILL */
  killGraceMs?: number;
  /** stderr of each job is appended here */
  logFile?: string;
}

/** Process groups of running compute children (jobs, resident servers), so none outlives this process. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/** Tracks a compute child's process group until `untrackGroup`: SIGKILLed if this process exits first. */
export function trackGroup(pid: number | undefined): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const g of liveGroups) signalGroup(g, 'SIGKILL');
    });
  }
  if (pid !== undefined) liveGroups.add(pid);
}

export function untrackGroup(pid: number | undefined): void {
  if (pid !== undefined) liveGroups.delete(pid);
}

/**
 * How compute/ processes are spawned: in compute/ with it on PYTHONPATH, offline (nothing
 * fetched from a model hub), unbuffered JSON-line stdout, and in a process group of their own,
 * so one signal to the group stops the process and anything it started.
 */
export function computeSpawnOptions(packageDir: string, env?: Record<string, string>) {
  return {
    cwd: packageDir,
    env: {
      ...process.env,
      PYTHONPATH: packageDir,
      PYTHONUNBUFFERED: '1',
      HF_HUB_OFFLINE: '1',
      TRANSFORMERS_OFFLINE: '1',
      TOKENIZERS_PARALLELISM: 'false',
      ...env,
    },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
  };
}

/** Runs `python -m srlm_compute <command> --job <file>` as a child process. */
export class PythonCompute implements ComputeBackend {
  readonly name = 'python';
  constructor(private readonly opts: PythonComputeOptions) {}

  generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.run('generate', job, ctl);
  }
  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    const { launcher, ...rest } = job;
    return this.run('train', rest, ctl, launcher);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.run('import-model', job, ctl);
  }

  private async run(command: string, job: object, ctl: RunControl, launcher?: TrainLauncher): Promise<ComputeEvent> {
    await fs.mkdir(this.opts.workDir, { recursive: true });
    const jobFile = path.join(this.opts.workDir, `${command}-${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.json`);
    await fs.writeFile(jobFile, JSON.stringify(job, null, 2));
    if (ctl.signal?.aborted) throw new Error(`compute ${command} cancelled before it started`);

    // A torchrun launch (launcher -> torchrun agent -> ranks) shares this process group, so the
    // group signals below reach every rank; each one also dies with its parent (PDEATHSIG).
    const child = spawn(
      this.opts.python,
      computeArgs(command, jobFile, launcher),
      computeSpawnOptions(this.opts.packageDir, this.opts.env),
    );

    trackGroup(child.pid);
    const stderrTail: string[] = [];
    const logHandle = this.opts.logFile ? await fs.open(this.opts.logFile, 'a') : null;
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      stderrTail.push(text);
      while (stderrTail.length > 40) stderrTail.shift();
      void logHandle?.write(text);
    });

    let last: ComputeEvent | null = null;
    let error: ComputeEvent | null = null;
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      let ev: ComputeEvent;
      try {
        ev = JSON.parse(line) as ComputeEvent;
      } catch {
        stderrTail.push(`(stdout) ${line}\n`);
        return;
      }
      if (ev.event === 'error') error = ev;
      if (ev.event === 'done') last = ev;
      ctl.onEvent?.(ev);
    });

    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      signalGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), this.opts.killGraceMs ?? 5000);
    };
    ctl.signal?.addEventListener('abort', onAbort, { once: true });

    const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve([c, s]));
    }).finally(() => {
      untrackGroup(child.pid);
      ctl.signal?.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      lines.close();
      void logHandle?.close();
    });

    if (ctl.signal?.aborted) throw new Error(`compute ${command} cancelled (exit ${code ?? sig})`);
    if (code === 0 && last) return last;
    const errEv = error as ComputeEvent | null;
    const message =
      errEv && typeof errEv.message === 'string' ? errEv.message : stderrTail.join('').trim().split('\n').slice(-8).join('\n');
    if (code === 2) {
      // The job itself is wrong (bad model path, malformed data): retrying cannot help.
      throw ApplicationFailure.nonRetryable(`compute ${command}: ${message}`, 'InvalidComputeInput');
    }
    throw ApplicationFailure.retryable(`compute ${command} failed (exit ${code ?? sig}): ${message}`, 'ComputeFailed');
  }
}

/** Sends a signal to a process group (a no-op when it is gone). */
export function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // already gone
  }
}

/** Reads a compute output JSONL file written by `generate`. */
export async function readGenerateOutputs(file: string): Promise<Map<string, GenerateOutput>> {
  const text = await fs.readFile(file, 'utf8');
  const out = new Map<string, GenerateOutput>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: GenerateOutput;
    try {
      rec = JSON.parse(line) as GenerateOutput;
    } catch (err) {
      throw new Error(`${file}:${i + 1}: malformed generation output (${(err as Error).message})`, { cause: err });
    }
    out.set(rec.id, rec);
  });
  return out;
}
