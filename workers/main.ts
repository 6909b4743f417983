/**
 * A worker process for one or more task queues, for running on a cluster:
 *
 *   tsx workers/main.ts --queues generation          # on each GPU host
 *   tsx workers/main.ts --queues orchestration       # anywhere
 *
 * Flags (each also read from the environment, the flag winning):
 *   --queues LIST               SRLM_QUEUES               orchestration,generation,training (default: all three)
 *   --compute-concurrency N     SRLM_COMPUTE_CONCURRENCY  generation / training jobs at once per queue (default 1:
 *                                                         one model in memory; a GPU host runs one per GPU set); the
 *                                                         workers' maxConcurrentActivityTaskExecutions, so a host of a
 *                                                         generation fleet (compute.fleet) takes at most N parts at once
 * Connection settings as the temporal CLI reads them (infra/connection.ts): TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, the TOML profile (TEMPORAL_PROFILE).
 * Metrics: SRLM_METRICS_BIND=127.0.0.1:9464 (or a bare port) serves Prometheus metrics (temporal_*, srlm_*);
 *   the endpoint has no authentication, so another host needs SRLM_METRICS_EXPOSE=1 too.
 * Artifacts: SRLM_STORE_ROOT (default <state dir>/artifacts), SRLM_STATE_DIR.
 * Compute: SRLM_PYTHON (the interpreter of compute/), SRLM_VLLM_PYTHON (one with vllm, for
 * `compute.engine.kind: "vllm"`), SRLM_CACHE_DIR.
 * A generation worker also polls its own queue srlm-generation@<SRLM_HOST_ID, default
 * hostname-pid>, where runs with `compute.resident` send the activities of the model it holds.
 */
import { NativeConnection } from '@temporalio/worker';
import { consoleReporter } from '../activities/progress';
import { temporalSettings } from '../infra/connection';
import { defaultStateDir } from '../infra/paths';
import { hostQueue, type QueueName } from '../workflows/contract';
import { ALL_QUEUES, createWorkers, defaultDeps, defaultHostId, installQuietRuntime } from './index';

export interface WorkerArgs {
  queues: QueueName[];
  computeConcurrency: number;
}

/** The worker's settings from its flags, else its environment; a bad value throws naming the flag. */
export function parseWorkerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerArgs {
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${name}: a value is required`);
    return v;
  };
  for (const a of argv) {
    if (a.startsWith('--') && a !== '--queues' && a !== '--compute-concurrency') {
      throw new Error(`unknown flag ${a} (known: --queues, --compute-concurrency, --help)`);
    }
  }
  const queuesFrom = flag('--queues') !== undefined ? '--queues' : 'SRLM_QUEUES';
  const queuesRaw = flag('--queues') ?? env.SRLM_QUEUES ?? ALL_QUEUES.join(',');
  const queues = queuesRaw
    .split(',')
    .map((q) => q.trim())
    .filter(Boolean) as QueueName[];
  if (!queues.length) throw new Error(`${queuesFrom}: no queue given (known: ${ALL_QUEUES.join(', ')})`);
  for (const q of queues)
    if (!ALL_QUEUES.includes(q)) throw new Error(`${queuesFrom}: unknown queue "${q}" (known: ${ALL_QUEUES.join(', ')})`);
  const ccFrom = flag('--compute-concurrency') !== undefined ? '--compute-concurrency' : 'SRLM_COMPUTE_CONCURRENCY';
  const ccRaw = flag('--compute-concurrency') ?? env.SRLM_COMPUTE_CONCURRENCY ?? '1';
  const computeConcurrency = Number(ccRaw);
  if (!/^\d+$/.test(ccRaw.trim()) || !Number.isInteger(computeConcurrency) || computeConcurrency < 1 || computeConcurrency > 64) {
    throw new Error(`${ccFrom}: must be an integer from 1 to 64, got "${ccRaw}"`);
  }
  return { queues: [...new Set(queues)], computeConcurrency };
}

export const WORKER_USAGE = `Usage: tsx workers/main.ts [--queues LIST] [--compute-concurrency N]   (compiled: node dist/workers/main.js)

A worker process for srlm's task queues; connects to Temporal as the temporal CLI does.

Flags (each also read from the environment; the flag wins):
  --queues LIST              SRLM_QUEUES               orchestration,generation,training (default: all three)
  --compute-concurrency N    SRLM_COMPUTE_CONCURRENCY  generation/training jobs at once per queue, 1-64 (default 1)
  -h, --help                 this text

Environment:
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE   the Temporal server
  SRLM_STORE_ROOT, SRLM_STATE_DIR, SRLM_CACHE_DIR, SRLM_PYTHON, SRLM_VLLM_PYTHON           artifacts and compute
  SRLM_METRICS_BIND=127.0.0.1:9464 (or a port)   Prometheus metrics; another host needs SRLM_METRICS_EXPOSE=1
  SRLM_ALLOWED_KEY_ENVS=PATTERN,...              more variables configs may name as apiKeyEnv (docs/security.md)

SIGINT or SIGTERM stops polling, cancels running activities after a 10 s grace time and stops
their compute processes before the worker exits; a second signal stops them at once.`;

async function run(): Promise<void> {
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log(WORKER_USAGE);
    return;
  }
  const args = parseWorkerArgs(process.argv.slice(2));
  installQuietRuntime(); // SRLM_METRICS_BIND=127.0.0.1:9464 serves Prometheus metrics
  const settings = temporalSettings();
  const connection = await NativeConnection.connect(settings.connectionOptions);
  const deps = defaultDeps({ stateDir: defaultStateDir(), reporter: consoleReporter() });
  const workers = await createWorkers({
    connection,
    namespace: settings.namespace,
    queues: args.queues,
    computeConcurrency: args.computeConcurrency,
    deps,
  });
  const own = args.queues.includes('generation') ? ` and ${hostQueue(defaultHostId())}` : '';
  // The SDK's runtime shuts the workers down on SIGINT/SIGTERM (in-flight activities are
  // cancelled after the grace time; their compute process groups get SIGTERM). A second
  // signal does not wait: tracked compute groups are SIGKILLed when the process exits.
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1)
      console.log(`srlm worker: ${sig}: stopping (running activities are cancelled after 10 s; a second signal stops at once)`);
    else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  console.log(
    `srlm worker serving ${args.queues.join(', ')}${own} (compute concurrency ${args.computeConcurrency}) at ${settings.address}, namespace ${settings.namespace}`,
  );
  await Promise.all(workers.map((w) => w.run()));
  await deps.residents?.stopAll();
  await connection.close();
}

if (require.main === module) {
  run().catch((err) => {
    console.error(err instanceof Error && /^(--|SRLM_|unknown flag)/.test(err.message) ? `srlm worker: ${err.message}` : err);
    process.exit(1);
  });
}
