/**
 * A worker PROCESS with FakeCompute (a fake, named so), for fault tests that SIGKILL it.
 * Everything comes from the environment:
 *
 *   SRLM_TEST_ADDRESS   Temporal frontend host:port
 *   SRLM_TEST_QUEUES    comma-separated queue names (orchestration,generation,training)
 *   SRLM_TEST_WORKDIR   the worker's scratch directory
 *   SRLM_FAKE_DELAY_MS  milliseconds per generated request (default 0)
 *   SRLM_FAKE_LOG       file that gets one line per generated request id
 *   SRLM_FAKE_EMPTY_RATE  fraction of answers that come back empty (default 0)
 *   SRLM_TEST_IDENTITY  the workers' identity (default: the SDK's <pid>@<hostname>)
 *
 * Prints "ready" once its workers poll.
 */
import * as path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { defaultStoreFor } from '../activities';
import { ALL_QUEUES, createWorkers, installQuietRuntime } from '../workers';
import type { QueueName } from '../workflows/contract';
import { FakeCompute } from './fake-compute';

async function main(): Promise<void> {
  installQuietRuntime();
  const env = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`fake-worker: ${name} is not set`);
    return v;
  };
  const queues = env('SRLM_TEST_QUEUES').split(',') as QueueName[];
  for (const q of queues) if (!ALL_QUEUES.includes(q)) throw new Error(`fake-worker: unknown queue ${q}`);
  const workDir = env('SRLM_TEST_WORKDIR');
  const fake = new FakeCompute({
    delayPerRequestMs: Number(process.env.SRLM_FAKE_DELAY_MS ?? 0),
    emptyAnswerRate: Number(process.env.SRLM_FAKE_EMPTY_RATE ?? 0),
    ...(process.env.SRLM_FAKE_LOG ? { logFile: process.env.SRLM_FAKE_LOG } : {}),
  });
  const connection = await NativeConnection.connect({ address: env('SRLM_TEST_ADDRESS') });
  const workers = await createWorkers({
    connection,
    namespace: 'default',
    queues,
    deps: {
      storeFor: defaultStoreFor(path.join(workDir, 'default-store'), path.join(workDir, 'objects')),
      compute: fake,
      workDir,
      cacheDir: path.join(workDir, 'cache'),
      heartbeatIntervalMs: 200,
    },
    shutdownGraceTime: 1000,
    ...(process.env.SRLM_TEST_IDENTITY ? { identity: process.env.SRLM_TEST_IDENTITY } : {}),
  });
  console.log('ready');
  await Promise.all(workers.map((w) => w.run()));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
