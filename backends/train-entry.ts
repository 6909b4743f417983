/**
 * The training image's entrypoint (infra/docker/train.Dockerfile): the container side of the
 * remote training backends. It fetches what the job needs, runs compute/ under torchrun through
 * `python -m srlm_compute.launch` (which exits 2 on invalid input, unlike bare torchrun), passes
 * compute/'s JSON event lines through on stdout and exits with the launcher's exit code.
 *
 *   tsx backends/train-entry.ts [train]        (SageMaker runs the image with the argument "train")
 *
 * The mode comes from the environment:
 *
 * - **Kubernetes** (backends/k8s-train.ts), when SRLM_TRAIN_JOB is set: SRLM_TRAIN_JOB (compute/'s
 *   train job with s3:// locations), SRLM_MODEL_URI, SRLM_DATA_URI, SRLM_OUTPUT_URI,
 *   SRLM_CHECKPOINT_URI, SRLM_NNODES, SRLM_NPROC_PER_NODE, JOB_COMPLETION_INDEX (the node rank;
 *   may be absent with one node), SRLM_MASTER_ADDR, SRLM_MASTER_PORT. The model, the data and the
 *   newest complete checkpoint under SRLM_CHECKPOINT_URI (a pod restarted after a crash or an
 *   eviction resumes there) come from S3 through the project's S3 store; each checkpoint compute/
 *   publishes is uploaded (the older ones removed) as it appears; node 0 uploads the trained model
 *   to SRLM_OUTPUT_URI once the launcher exits 0. Credentials, region and endpoint: the AWS default
 *   chain (service account role, AWS_* variables, AWS_ENDPOINT_URL_S3).
 * - **SageMaker** (backends/sagemaker-train.ts), when `<root>/input/config/hyperparameters.json`
 *   exists (root: SRLM_SAGEMAKER_ROOT, default /opt/ml): hyperparameter `srlm_job` (the train job)
 *   and optionally `srlm_nproc_per_node` (else SM_NUM_GPUS, else the /dev/nvidiaN devices, else 1);
 *   `<root>/input/config/resourceconfig.json` gives the node rank (index of current_host in hosts)
 *   and the master (hosts[0]; 127.0.0.1 with one host). The channels are already under
 *   `<root>/input/data` and SageMaker itself syncs `<root>/checkpoints` and uploads `<root>/model`,
 *   so the entrypoint only resumes from the newest complete local checkpoint, keeps the newest one
 *   there, copies the model into `<root>/model` and, on failure, writes `<root>/output/failure`
 *   ("InvalidComputeInput: ..." for exit 2, which the backend reads as not retryable).
 *
 * SIGTERM and SIGINT are forwarded to the launcher, which stops torchrun and the ranks; uploads
 * already under way finish, then the entrypoint exits with the launcher's code (143 / 130).
 * A missing or malformed setting exits 2 with one line naming it, before anything is downloaded.
 * Other settings: SRLM_PYTHON (compute/'s interpreter, required), SRLM_COMPUTE_DIR (default the
 * image's compute/), SRLM_TRAIN_WORK_DIR (local files, default <tmp>/srlm-train), SRLM_CACHE_DIR
 * (the S3 object cache), SRLM_MASTER_PORT (SageMaker; default 29500).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { findNewestCheckpoint, publishCheckpoint, pruneCheckpoints } from '../store/checkpoints';
import { defaultObjectCacheDir, openStore } from '../store/open-store';
import { walk } from './remote-train';
import { type ArtifactStore, LocalStore } from '../store/store';
import { parseS3Uri } from '../core/s3uri';

/** compute/'s exit code for invalid input: a restart cannot help (the Job's podFailurePolicy fails at once). */
export const EXIT_INVALID = 2;
export const DEFAULT_MASTER_PORT = 29500;

/** A setting or the job is wrong: exit 2 with this message. */
export class EntryError extends Error {}

/** torchrun's place of this node. */
export interface Launch {
  nnodes: number;
  nprocPerNode: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
}

export interface KubernetesTask {
  mode: 'kubernetes';
  job: Record<string, unknown>;
  modelUri: string;
  dataUri: string;
  outputUri: string;
  checkpointUri: string;
  launch: Launch;
}

export interface SageMakerTask {
  mode: 'sagemaker';
  root: string;
  job: Record<string, unknown>;
  launch: Launch;
}

/** argv after the Python executable: the launcher with torchrun's options for this node. */
export function launcherArgs(l: Launch, jobFile: string): string[] {
  return [
    '-m',
    'srlm_compute.launch',
    '--nnodes',
    String(l.nnodes),
    '--nproc-per-node',
    String(l.nprocPerNode),
    '--node-rank',
    String(l.nodeRank),
    '--master-addr',
    l.masterAddr,
    '--master-port',
    String(l.masterPort),
    '-m',
    'srlm_compute',
    'train',
    '--job',
    jobFile,
  ];
}

function int(raw: string, what: string, min: number, max: number): number {
  const v = raw.trim();
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new EntryError(`${what} must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** The train job: a JSON object (its keys are compute/'s to check). */
function parseJob(text: string, what: string): Record<string, unknown> {
  let job: unknown;
  try {
    job = JSON.parse(text);
  } catch (err) {
    throw new EntryError(`${what} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof job !== 'object' || job === null || Array.isArray(job))
    throw new EntryError(`${what} must be a JSON object (compute/'s train job)`);
  return job as Record<string, unknown>;
}

/** The Kubernetes contract's settings; throws EntryError naming the first bad variable. */
export function kubernetesTask(env: NodeJS.ProcessEnv): KubernetesTask {
  const need = (name: string): string => {
    const v = env[name];
    if (v === undefined || v.trim() === '')
      throw new EntryError(`${name} is not set (the training Job's pods get it; see backends/k8s-train.ts)`);
    return v;
  };
  const uri = (name: string): string => {
    const v = need(name).trim();
    try {
      if (!parseS3Uri(v).prefix) throw new Error('names a bucket but no key under it');
    } catch (err) {
      throw new EntryError(`${name} ${(err as Error).message}`);
    }
    return v.replace(/\/+$/, '');
  };
  const job = parseJob(need('SRLM_TRAIN_JOB'), 'SRLM_TRAIN_JOB');
  const modelUri = uri('SRLM_MODEL_URI');
  const dataUri = uri('SRLM_DATA_URI');
  const outputUri = uri('SRLM_OUTPUT_URI');
  const checkpointUri = uri('SRLM_CHECKPOINT_URI');
  const nnodes = int(need('SRLM_NNODES'), 'SRLM_NNODES', 1, 1024);
  const nprocPerNode = int(need('SRLM_NPROC_PER_NODE'), 'SRLM_NPROC_PER_NODE', 1, 64);
  const index = env.JOB_COMPLETION_INDEX;
  if ((index === undefined || index === '') && nnodes > 1)
    throw new EntryError(
      `JOB_COMPLETION_INDEX is not set (the node rank; Kubernetes sets it in an Indexed Job) and SRLM_NNODES is ${nnodes}`,
    );
  const nodeRank = index === undefined || index === '' ? 0 : int(index, 'JOB_COMPLETION_INDEX', 0, nnodes - 1);
  const masterAddr = need('SRLM_MASTER_ADDR').trim();
  const masterPort = int(need('SRLM_MASTER_PORT'), 'SRLM_MASTER_PORT', 1, 65535);
  return {
    mode: 'kubernetes',
    job,
    modelUri,
    dataUri,
    outputUri,
    checkpointUri,
    launch: { nnodes, nprocPerNode, nodeRank, masterAddr, masterPort },
  };
}

async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new EntryError(`${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseJob(text, file);
}

/** GPUs the NVIDIA container runtime exposes (/dev/nvidia0, /dev/nvidia1, ...). */
function visibleGpus(): number {
  try {
    return readdirSync('/dev').filter((n) => /^nvidia\d+$/.test(n)).length;
  } catch {
    return 0;
  }
}

/** The SageMaker contract's settings under `root`; throws EntryError naming the file and key. */
export async function sageMakerTask(root: string, env: NodeJS.ProcessEnv): Promise<SageMakerTask> {
  const hpFile = path.join(root, 'input', 'config', 'hyperparameters.json');
  const rcFile = path.join(root, 'input', 'config', 'resourceconfig.json');
  const hp = await readJsonObject(hpFile);
  if (typeof hp.srlm_job !== 'string') {
    throw new EntryError(
      `${hpFile}: hyperparameter "srlm_job" ${hp.srlm_job === undefined ? 'is missing' : 'must be a string (the train job as JSON)'} (the sagemaker backend sets it)`,
    );
  }
  const job = parseJob(hp.srlm_job, `${hpFile}: hyperparameter "srlm_job"`);
  let nprocPerNode: number;
  if (hp.srlm_nproc_per_node !== undefined)
    nprocPerNode = int(String(hp.srlm_nproc_per_node), `${hpFile}: hyperparameter "srlm_nproc_per_node"`, 1, 64);
  else if (env.SM_NUM_GPUS !== undefined && env.SM_NUM_GPUS !== '') nprocPerNode = Math.max(1, int(env.SM_NUM_GPUS, 'SM_NUM_GPUS', 0, 64));
  else nprocPerNode = Math.max(1, visibleGpus());
  const rc = await readJsonObject(rcFile);
  const hosts = rc.hosts;
  if (!Array.isArray(hosts) || hosts.length === 0 || !hosts.every((h) => typeof h === 'string' && h !== ''))
    throw new EntryError(`${rcFile}: "hosts" must be a non-empty array of host names`);
  if (typeof rc.current_host !== 'string' || !hosts.includes(rc.current_host))
    throw new EntryError(`${rcFile}: "current_host" must be one of "hosts" (${hosts.join(', ')}), got ${JSON.stringify(rc.current_host)}`);
  const masterPort = env.SRLM_MASTER_PORT ? int(env.SRLM_MASTER_PORT, 'SRLM_MASTER_PORT', 1, 65535) : DEFAULT_MASTER_PORT;
  const launch = {
    nnodes: hosts.length,
    nprocPerNode,
    nodeRank: hosts.indexOf(rc.current_host),
    masterAddr: hosts.length === 1 ? '127.0.0.1' : (hosts[0] as string),
    masterPort,
  };
  return { mode: 'sagemaker', root, job, launch };
}

export function sageMakerRoot(env: NodeJS.ProcessEnv): string {
  return env.SRLM_SAGEMAKER_ROOT || '/opt/ml';
}

/** Which contract this container runs under, or an EntryError saying what is missing. */
export function detectMode(env: NodeJS.ProcessEnv): 'kubernetes' | 'sagemaker' {
  if (env.SRLM_TRAIN_JOB !== undefined) return 'kubernetes';
  const root = sageMakerRoot(env);
  const hpFile = path.join(root, 'input', 'config', 'hyperparameters.json');
  if (existsSync(hpFile)) return 'sagemaker';
  const sageMaker = Object.keys(env).filter(
    (k) => env[k] && (k.startsWith('SM_') || k === 'TRAINING_JOB_NAME' || k === 'SRLM_SAGEMAKER_ROOT'),
  );
  if (sageMaker.length) {
    throw new EntryError(
      `this looks like SageMaker (${sageMaker.sort().join(', ')} set) but ${hpFile} does not exist (it holds the hyperparameter "srlm_job"; SRLM_SAGEMAKER_ROOT sets another root than /opt/ml)`,
    );
  }
  const kubernetes = Object.keys(env).filter((k) => env[k] && /^SRLM_(MODEL|DATA|OUTPUT|CHECKPOINT)_URI$|^SRLM_NNODES$/.test(k));
  if (kubernetes.length)
    throw new EntryError(
      `SRLM_TRAIN_JOB is not set (${kubernetes.sort().join(', ')} are: the training Job's pods get all of them; see backends/k8s-train.ts)`,
    );
  throw new EntryError(
    `no training job: set SRLM_TRAIN_JOB and the other SRLM_* variables (Kubernetes, see backends/k8s-train.ts), or run under SageMaker, which writes ${hpFile} (SRLM_SAGEMAKER_ROOT sets another root than /opt/ml)`,
  );
}

// ------------------------------------------------------------------------------------- running

export interface Runtime {
  python: string;
  computeDir: string;
  workDir: string;
  cacheDir: string;
  /** where the entrypoint's own lines go (stderr) */
  log: (line: string) => void;
}

function log(line: string): void {
  process.stderr.write(`srlm train-entry: ${line}\n`);
}

export function runtimeFrom(env: NodeJS.ProcessEnv): Runtime {
  const python = env.SRLM_PYTHON;
  if (!python) throw new EntryError("SRLM_PYTHON is not set (the interpreter with compute/'s requirements; the training image sets it)");
  const computeDir = env.SRLM_COMPUTE_DIR || path.resolve(__dirname, '..', 'compute');
  if (!existsSync(path.join(computeDir, 'srlm_compute', 'launch.py')))
    throw new EntryError(
      `${env.SRLM_COMPUTE_DIR ? 'SRLM_COMPUTE_DIR' : 'the compute directory'} ${computeDir} holds no srlm_compute package`,
    );
  return {
    python,
    computeDir,
    workDir: env.SRLM_TRAIN_WORK_DIR || path.join(os.tmpdir(), 'srlm-train'),
    cacheDir: defaultObjectCacheDir(),
    log,
  };
}

interface LaunchResult {
  code: number;
  /** the message of the launcher's last error event */
  error?: string;
}

/**
 * Runs the launcher, echoing its stdout; `onEvent` sees each JSON event. SIGTERM / SIGINT to this
 * process are forwarded to it while it runs.
 */
function runLauncher(rt: Runtime, launch: Launch, jobFile: string, onEvent: (ev: Record<string, unknown>) => void): Promise<LaunchResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(rt.python, launcherArgs(launch, jobFile), {
      cwd: rt.computeDir,
      env: {
        ...process.env,
        PYTHONPATH: rt.computeDir,
        PYTHONUNBUFFERED: '1',
        HF_HUB_OFFLINE: '1',
        TRANSFORMERS_OFFLINE: '1',
        TOKENIZERS_PARALLELISM: 'false',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let error: string | undefined;
    const forward = (sig: NodeJS.Signals): void => {
      rt.log(`${sig}: stopping the launcher`);
      child.kill(sig);
    };
    const onTerm = (): void => forward('SIGTERM');
    const onInt = (): void => forward('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      process.stdout.write(`${line}\n`);
      let ev: unknown;
      try {
        ev = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof ev !== 'object' || ev === null) return;
      const e = ev as Record<string, unknown>;
      if (e.event === 'error' && typeof e.message === 'string') error = e.message;
      onEvent(e);
    });
    child.once('error', (err) => reject(new Error(`could not start ${rt.python}: ${err.message}`)));
    child.once('close', (code, sig) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      // killed by a signal (not the launcher's own exit): the shell's 128 + signal number
      resolve({ code: code ?? 128 + (sig ? os.constants.signals[sig] : 1), ...(error !== undefined ? { error } : {}) });
    });
  });
}

/** Serialised background work (checkpoint uploads): the first failure is kept and reported at the end. */
class Chain {
  private tail: Promise<void> = Promise.resolve();
  error: unknown = null;
  add(fn: () => Promise<void>): void {
    this.tail = this.tail.then(fn).catch((err: unknown) => {
      this.error ??= err;
    });
  }
  done(): Promise<void> {
    return this.tail;
  }
}

async function freshDir(dir: string): Promise<string> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/** The store holding an s3:// URI (its bucket) and the key. */
function s3At(rt: Runtime, uri: string): { store: ArtifactStore; key: string } {
  const loc = parseS3Uri(uri);
  return { store: openStore(`s3://${loc.bucket}`, {}, rt.cacheDir), key: loc.prefix };
}

/** A prefix in S3 as a local directory (through the object cache); EntryError when nothing is there. */
async function fetchPrefix(rt: Runtime, uri: string, what: string): Promise<string> {
  const at = s3At(rt, uri);
  if ((await at.store.list(at.key)).length === 0) throw new EntryError(`${what} ${uri}: no objects under it`);
  rt.log(`fetching ${uri}`);
  return at.store.localDir(at.key);
}

export async function runKubernetes(task: KubernetesTask, rt: Runtime): Promise<number> {
  const work = await freshDir(rt.workDir);
  const { job, launch } = task;
  const model = await fetchPrefix(rt, task.modelUri, 'SRLM_MODEL_URI');
  const data = s3At(rt, task.dataUri);
  if (!(await data.store.exists(data.key))) throw new EntryError(`SRLM_DATA_URI ${task.dataUri}: no such object`);
  rt.log(`fetching ${task.dataUri}`);
  const dataFile = path.join(work, 'data', path.posix.basename(data.key));
  await fs.mkdir(path.dirname(dataFile), { recursive: true });
  await fs.writeFile(dataFile, await data.store.getBytes(data.key));
  const refModel =
    typeof job.ref_model === 'string' && job.ref_model.startsWith('s3://')
      ? await fetchPrefix(rt, job.ref_model, 'ref_model')
      : job.ref_model;

  // a restarted pod continues from the newest complete checkpoint; torn ones are skipped
  const ckpt = s3At(rt, task.checkpointUri);
  const checkpointing = Boolean(job.checkpoint_every);
  let resume: string | null = null;
  if (checkpointing) {
    const scan = await findNewestCheckpoint(ckpt.store, ckpt.key);
    for (const t of scan.torn) rt.log(`skipping torn checkpoint s3://${parseS3Uri(task.checkpointUri).bucket}/${t.prefix}: ${t.reason}`);
    if (scan.newest) {
      rt.log(`resuming from the checkpoint at step ${scan.newest.step} (${task.checkpointUri})`);
      resume = scan.newest.dir;
    }
  }
  const output = path.join(work, 'model');
  const localCheckpoints = path.join(work, 'checkpoints');
  const jobFile = path.join(work, 'train-job.json');
  const local = {
    ...job,
    model,
    data: dataFile,
    output,
    ref_model: refModel ?? null,
    checkpoint_dir: checkpointing ? localCheckpoints : null,
    resume_from: resume,
  };
  await fs.writeFile(jobFile, JSON.stringify(local, null, 2));

  const uploads = new Chain();
  const result = await runLauncher(rt, launch, jobFile, (ev) => {
    if (ev.event !== 'checkpoint' || typeof ev.dir !== 'string') return;
    const dir = ev.dir;
    uploads.add(async () => {
      const step = await publishCheckpoint(ckpt.store, ckpt.key, dir);
      // the newest complete checkpoint only; the one before goes once this one is whole
      await pruneCheckpoints(ckpt.store, ckpt.key, [step]);
      await fs.rm(dir, { recursive: true, force: true });
      rt.log(`checkpoint at step ${step} uploaded to ${task.checkpointUri}`);
    });
  });
  await uploads.done();
  if (uploads.error) {
    rt.log(`could not upload a checkpoint: ${(uploads.error as Error).message}`);
    if (result.code === 0) return 1;
  }
  if (result.code !== 0) return result.code;
  if (launch.nodeRank === 0) {
    const out = s3At(rt, task.outputUri);
    // a pod that died while uploading left an older copy: replace it whole
    await out.store.deletePrefix(out.key);
    for (const f of await walk(output)) await out.store.putFile(`${out.key}/${f}`, path.join(output, f));
    rt.log(`model uploaded to ${task.outputUri}`);
  }
  return 0;
}

/** The newest complete checkpoint in SageMaker's local checkpoint directory (synced back after a spot interruption). */
async function newestLocalCheckpoint(rt: Runtime, root: string): Promise<string | null> {
  const scan = await findNewestCheckpoint(new LocalStore(root), 'checkpoints');
  for (const t of scan.torn) rt.log(`skipping torn checkpoint ${path.join(root, t.prefix)}: ${t.reason}`);
  return scan.newest?.dir ?? null;
}

export async function runSageMaker(task: SageMakerTask, rt: Runtime): Promise<number> {
  const { root, job, launch } = task;
  const work = await freshDir(rt.workDir);
  const model = path.join(root, 'input', 'data', 'model');
  if (!existsSync(path.join(model, 'config.json'))) throw new EntryError(`channel "model": ${model} holds no config.json (the base model)`);
  if (typeof job.data !== 'string' || !job.data) throw new EntryError(`hyperparameter "srlm_job": key "data" must name the training file`);
  const data = path.join(root, 'input', 'data', 'train', path.posix.basename(job.data));
  if (!existsSync(data)) throw new EntryError(`channel "train": ${data} does not exist`);
  const checkpointing = Boolean(job.checkpoint_every);
  const checkpoints = path.join(root, 'checkpoints');
  const resume = checkpointing ? await newestLocalCheckpoint(rt, root) : null;
  if (resume) rt.log(`resuming from ${resume}`);
  // compute/ replaces its output directory by renaming; <root>/model is SageMaker's (a mount): copy into it at the end
  const output = path.join(work, 'model');
  const jobFile = path.join(work, 'train-job.json');
  await fs.writeFile(
    jobFile,
    JSON.stringify({ ...job, model, data, output, checkpoint_dir: checkpointing ? checkpoints : null, resume_from: resume }, null, 2),
  );

  const prunes = new Chain();
  const local = new LocalStore(root);
  const result = await runLauncher(rt, launch, jobFile, (ev) => {
    if (ev.event !== 'checkpoint' || typeof ev.step !== 'number') return;
    const step = ev.step;
    // the disk holds the newest checkpoint only (SageMaker has uploaded the older ones)
    prunes.add(() => pruneCheckpoints(local, 'checkpoints', [step]));
  });
  await prunes.done();
  if (prunes.error) rt.log(`could not remove an older checkpoint: ${(prunes.error as Error).message}`);
  if (result.code !== 0) {
    await writeFailure(root, result.code, result.error ?? `the launcher exited ${result.code}`);
    return result.code;
  }
  if (launch.nodeRank === 0) {
    const dest = path.join(root, 'model');
    await fs.mkdir(dest, { recursive: true });
    await fs.cp(output, dest, { recursive: true });
    rt.log(`model written to ${dest}`);
  }
  return 0;
}

/** SageMaker's failure reason: `<root>/output/failure`. */
async function writeFailure(root: string, code: number, message: string): Promise<void> {
  const dir = path.join(root, 'output');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'failure'), code === EXIT_INVALID ? `InvalidComputeInput: ${message}\n` : `${message}\n`);
}

/** The image's arguments: none (Kubernetes) or "train" (how SageMaker starts a training image). */
export function checkEntryArgs(argv: string[]): void {
  if (argv.length > 1 || (argv.length === 1 && argv[0] !== 'train'))
    throw new EntryError(`unexpected arguments ${JSON.stringify(argv)} (usage: train-entry.ts [train])`);
}

/** Runs the entrypoint; resolves to the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let smRoot: string | null = null;
  try {
    checkEntryArgs(argv);
    const mode = detectMode(env);
    if (mode === 'sagemaker') smRoot = sageMakerRoot(env);
    const task = mode === 'kubernetes' ? kubernetesTask(env) : await sageMakerTask(smRoot!, env);
    const rt = runtimeFrom(env);
    const l = task.launch;
    rt.log(`${mode}: node ${l.nodeRank} of ${l.nnodes}, ${l.nprocPerNode} process(es) per node, master ${l.masterAddr}:${l.masterPort}`);
    return task.mode === 'kubernetes' ? await runKubernetes(task, rt) : await runSageMaker(task, rt);
  } catch (err) {
    const invalid = err instanceof EntryError;
    const message = err instanceof Error ? err.message : String(err);
    log(invalid ? `invalid input: ${message}` : `failed: ${message}`);
    const code = invalid ? EXIT_INVALID : 1;
    if (smRoot) await writeFailure(smRoot, code, message).catch(() => undefined);
    return code;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    // an idle S3 connection must not keep the container alive
    process.stdout.write('', () => process.exit(code));
  });
}
