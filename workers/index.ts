/**
 * Workers, one per task queue. The embedded stack runs all three in one process; on a
 * cluster each host runs the queues its resources suit (`workers/main.ts --queues ...`).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { type ActivityDeps, createActivities, defaultStoreFor } from '../activities';
import { type ComputeBackend, PythonCompute } from '../backends/compute';
import { openAIEngines } from '../backends/openai-compute';
import { ResidentPool, residentEngines, StopResidentsBeforeTraining } from '../backends/resident-compute';
import { vllmEngines, vllmJobEngine } from '../backends/vllm-engine';
import type { RunConfig } from '../core/schemas';
import { isLoopbackHost } from '../core/security';
import { trainingBackends } from '../backends/training-backends';
import type { ProgressReporter } from '../activities/progress';
import { loadEnvPaths, repoRoot } from '../infra/paths';
import { hostQueue, type QueueName, TASK_QUEUES } from '../workflows/contract';

export const ALL_QUEUES: QueueName[] = ['orchestration', 'generation', 'training'];

export interface WorkerSetOptions {
  connection: NativeConnection;
  namespace: string;
  queues: QueueName[];
  deps: ActivityDeps;
  /** prebuilt workflow bundle; built from workflows/ when absent */
  workflowBundle?: WorkflowBundleWithSourceMap;
  shutdownGraceTime?: number;
  /**
   * concurrent generation / training jobs per worker (one model in memory each): the compute
   * workers' maxConcurrentActivityTaskExecutions, so a worker of a fleet takes at most this
   * many parts at once and leaves the rest to the others
   */
  computeConcurrency?: number;
  /** the workers' identity in the server's history (default: the SDK's `<pid>@<hostname>`) */
  identity?: string;
  /** most time between heartbeats sent to the server (default 2 s) */
  heartbeatThrottleMs?: number;
  /**
   * names this process's own generation queue (`srlm-generation@<hostId>`, for resident-model
   * affinity); default SRLM_HOST_ID, else `<hostname>-<pid>`
   */
  hostId?: string;
}

/** This process's id in its own generation queue's name. */
export function defaultHostId(): string {
  return process.env.SRLM_HOST_ID || `${os.hostname()}-${process.pid}`;
}

/**
 * The activities with at most `n` running at once across the workers that share them (the
 * shared generation queue's and this process's own): one waiting for its turn heartbeats
 * (keeping its last details) and stops waiting when cancelled.
 */
export function gated<A extends Record<string, unknown>>(activities: A, n: number): A {
  let running = 0;
  const waiting: (() => void)[] = [];
  const acquire = async (): Promise<void> => {
    if (running < n) {
      running++;
      return;
    }
    const ctx = Context.current();
    const beat = setInterval(() => ctx.heartbeat(ctx.info.heartbeatDetails), 1000);
    let given = false;
    let mine: () => void = () => undefined;
    const turn = new Promise<void>((resolve) => {
      mine = () => {
        given = true;
        resolve();
      };
    });
    waiting.push(mine);
    try {
      await Promise.race([turn, ctx.cancelled]);
    } catch (err) {
      // cancelled while waiting: leave the line, or pass on the turn handed over meanwhile
      if (given) release();
      else waiting.splice(waiting.indexOf(mine), 1);
      throw err;
    } finally {
      clearInterval(beat);
    }
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    out[name] =
      typeof fn === 'function'
        ? async (...args: unknown[]) => {
            await acquire();
            try {
              return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
            } finally {
              release();
            }
          }
        : fn;
  }
  return out as A;
}

let cachedBundle: Promise<WorkflowBundleWithSourceMap> | undefined;

export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const ts = path.resolve(__dirname, '../workflows/index.ts');
  cachedBundle ??= bundleWorkflowCode({
    workflowsPath: fs.existsSync(ts) ? ts : path.resolve(__dirname, '../workflows/index.js'),
    logger: quietLogger(),
  });
  return cachedBundle;
}

function quietLogger() {
  const noop = (): void => undefined;
  return { trace: noop, debug: noop, info: noop, warn: (m: string) => console.warn(m), error: (m: string) => console.error(m), log: noop };
}

export async function createWorkers(opts: WorkerSetOptions): Promise<Worker[]> {
  const generates = opts.queues.includes('generation');
  const own = generates ? hostQueue(opts.hostId ?? defaultHostId()) : undefined;
  const activities = createActivities({ ...opts.deps, ...(own ? { hostQueue: own } : {}) });
  const n = opts.computeConcurrency ?? 1;
  // the shared generation queue and this process's own share `n` compute slots
  const generation = generates ? gated(activities, n) : activities;
  const workers: Worker[] = [];
  const queues: { queue: QueueName; taskQueue: string }[] = opts.queues.map((queue) => ({ queue, taskQueue: TASK_QUEUES[queue] }));
  if (own) queues.push({ queue: 'generation', taskQueue: own });
  for (const { queue, taskQueue } of queues) {
    const isCompute = queue !== 'orchestration';
    workers.push(
      await Worker.create({
        connection: opts.connection,
        namespace: opts.namespace,
        taskQueue,
        activities: queue === 'generation' ? generation : activities,
        ...(opts.identity ? { identity: opts.identity } : {}),
        ...(queue === 'orchestration' ? { workflowBundle: opts.workflowBundle ?? (await workflowBundle()) } : {}),
        maxConcurrentActivityTaskExecutions: isCompute ? n : 20,
        // in-flight activities are cancelled after this on shutdown; their compute children get SIGTERM
        shutdownGraceTime: opts.shutdownGraceTime ?? 10_000,
        // heartbeats reach the server (and a cancellation reaches the activity) within this
        maxHeartbeatThrottleInterval: opts.heartbeatThrottleMs ?? 2000,
        defaultHeartbeatThrottleInterval: opts.heartbeatThrottleMs ?? 2000,
      }),
    );
  }
  return workers;
}

export interface DefaultDepsOptions {
  stateDir: string;
  storeRoot?: string;
  reporter?: ProgressReporter;
  compute?: ComputeBackend;
}

export function defaultDeps(opts: DefaultDepsOptions): ActivityDeps {
  const root = repoRoot();
  const env = loadEnvPaths(root);
  const workDir = path.join(opts.stateDir, 'work');
  const pythonOpts = {
    python: env.python,
    packageDir: path.join(root, 'compute'),
    workDir: path.join(workDir, 'jobs'),
    logFile: path.join(opts.stateDir, 'compute.log'),
  };
  // a python whose environment has vllm (it pins its own torch / transformers), for `compute.engine.kind: "vllm"`
  // (SRLM_VLLM_PYTHON, else the venv of scripts/bootstrap-vllm.sh)
  const vllmPython = opts.compute ? undefined : env.vllmPython;
  // `compute.resident`: generation on long-lived servers that keep their model loaded; stopped before local training
  const residents = new ResidentPool({
    python: env.python,
    packageDir: pythonOpts.packageDir,
    ...(vllmPython ? { vllmPython } : {}),
    logFile: pythonOpts.logFile,
  });
  const compute = opts.compute ?? new StopResidentsBeforeTraining(residents, new PythonCompute(pythonOpts));
  const storeFor = defaultStoreFor(
    opts.storeRoot ?? process.env.SRLM_STORE_ROOT ?? path.join(opts.stateDir, 'artifacts'),
    path.join(env.cacheDir, 'objects'),
  );
  return {
    storeFor,
    compute,
    // `compute.engine` in a run's config: "openai" generates over HTTP, "vllm" on vLLM's offline
    // engine (on the vLLM environment's python when there is one); training stays on `compute`
    engineFor: engines(compute, vllmPython ? new PythonCompute({ ...pythonOpts, python: vllmPython }) : undefined, residents),
    // `compute.training: {kind: "sagemaker" | "kubernetes", ...}`: SFT/DPO as a remote job
    trainerFor: trainingBackends({ storeFor, wrapped: compute }),
    residents,
    workDir,
    cacheDir: env.cacheDir,
    ...(opts.reporter ? { reporter: opts.reporter } : {}),
    ...(process.env.SRLM_PROGRESS_SIGNAL_SECONDS ? { progressSignalMs: Number(process.env.SRLM_PROGRESS_SIGNAL_SECONDS) * 1000 } : {}),
  };
}

/** The generation engines a run config can ask for, over the local backend `compute`. */
function engines(
  compute: ComputeBackend,
  vllmGenerator: ComputeBackend | undefined,
  residents: ResidentPool,
): (config: RunConfig) => ComputeBackend | undefined {
  const openai = openAIEngines(compute);
  const vllm = vllmEngines(compute, vllmGenerator);
  const resident = residentEngines(residents, compute, (config) =>
    config.compute.engine?.kind === 'vllm' ? vllmJobEngine(config.compute.engine) : undefined,
  );
  return (config) => resident(config) ?? openai(config) ?? vllm(config);
}

/**
 * Where the Prometheus endpoint listens, from SRLM_METRICS_BIND (`host:port`, or a bare port
 * meaning 127.0.0.1:port); undefined when unset. The endpoint has no authentication, so a
 * host other than loopback needs SRLM_METRICS_EXPOSE=1 as well (Kubernetes pods scraped by
 * Prometheus set both); without it the worker refuses to start instead of serving its
 * metrics to the network.
 */
export function metricsBindAddress(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.SRLM_METRICS_BIND?.trim();
  if (!raw) return undefined;
  const bind = /^\d+$/.test(raw) ? `127.0.0.1:${raw}` : raw;
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(bind);
  if (!m || Number(m[2]) > 65535) throw new Error(`SRLM_METRICS_BIND: expected host:port or a port, e.g. 127.0.0.1:9464, got "${raw}"`);
  if (!isLoopbackHost(m[1]!) && env.SRLM_METRICS_EXPOSE !== '1') {
    throw new Error(
      `SRLM_METRICS_BIND=${raw} would serve the metrics endpoint (no authentication) beyond this host; set SRLM_METRICS_EXPOSE=1 to mean it, or bind 127.0.0.1:${m[2]}`,
    );
  }
  return bind;
}

/**
 * The SDK runtime, installed once per process: the Rust core's own log lines stay out of the
 * user's terminal unless SRLM_TEMPORAL_LOG is set, and with SRLM_METRICS_BIND=host:port the
 * process serves Prometheus metrics at http://host:port/metrics: the SDK's worker metrics
 * (temporal_*) and srlm's pipeline metrics (srlm_*, see activities/metrics.ts). SRLM_LOG=json
 * turns the log into JSON lines carrying run, iteration and stage.
 */
export function installQuietRuntime(): void {
  // The pinned AWS SDK runs on Node 20; its notice that SDK releases after January 2027 need
  // Node 22 belongs in docs/installation.md, not in every run's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const quiet = {
    log: () => undefined,
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: (m: string) => {
      if (!m.startsWith('No workflows registered')) console.warn(`temporal: ${m}`);
    },
    error: (m: string) => console.error(`temporal: ${m}`),
  };
  const bind = metricsBindAddress(process.env);
  const json = process.env.SRLM_LOG === 'json';
  if (process.env.SRLM_TEMPORAL_LOG && !bind && !json) return;
  // SRLM_LOG=json: one JSON object per line on stdout, with the SDK's context (workflow,
  // activity, task queue) and srlm's (run, iteration, stage) as fields
  const jsonLogger = new DefaultLogger('INFO', (entry) => {
    const { message, level, timestampNanos, meta } = entry;
    console.log(JSON.stringify({ ts: new Date(Number(timestampNanos / 1_000_000n)).toISOString(), level, msg: message, ...(meta ?? {}) }));
  });
  try {
    Runtime.install({
      ...(json ? { logger: jsonLogger } : process.env.SRLM_TEMPORAL_LOG ? {} : { logger: quiet as never }),
      ...(bind ? { telemetryOptions: { metrics: { prometheus: { bindAddress: bind } } } } : {}),
    });
  } catch {
    // already installed
  }
}
