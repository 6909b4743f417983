/**
 * A worker process for one or more task queues, for running on a cluster:
 *
 *   tsx workers/main.ts --queues generation          # on each GPU host
 *   tsx workers/main.ts --queues orchestration       # anywhere
 *
 * Connection settings as the temporal CLI reads them (infra/connection.ts): TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, the TOML profile (TEMPORAL_PROFILE).
 * Metrics: SRLM_METRICS_BIND=0.0.0.0:9464 serves Prometheus metrics (temporal_*, srlm_*).
 * Artifacts: SRLM_STORE_ROOT (default <state dir>/artifacts), SRLM_STATE_DIR.
 */
import { NativeConnection } from '@temporalio/worker';
import { consoleReporter } from '../activities/progress';
import { temporalSettings } from '../infra/connection';
import { defaultStateDir } from '../infra/paths';
import type { QueueName } from '../workflows/shared';
import { ALL_QUEUES, createWorkers, defaultDeps, installQuietRuntime } from './index';

async function run(): Promise<void> {
  installQuietRuntime(); // SRLM_METRICS_BIND=0.0.0.0:9464 serves Prometheus metrics
  const arg = process.argv.indexOf('--queues');
  const queues = (arg >= 0 ? (process.argv[arg + 1] ?? '') : ALL_QUEUES.join(',')).split(',').filter(Boolean) as QueueName[];
  for (const q of queues) if (!ALL_QUEUES.includes(q)) throw new Error(`--queues: unknown queue "${q}" (known: ${ALL_QUEUES.join(', ')})`);
  const settings = temporalSettings();
  const connection = await NativeConnection.connect(settings.connectionOptions);
  const workers = await createWorkers({
    connection,
    namespace: settings.namespace,
    queues,
    deps: defaultDeps({ stateDir: defaultStateDir(), reporter: consoleReporter() }),
  });
  console.log(`srlm worker serving ${queues.join(', ')}`);
  await Promise.all(workers.map((w) => w.run()));
  await connection.close();
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
