/**
 * Test plumbing shared by the workflow and fault tests: in-process workers on every queue
 * with a given compute backend, a client, and polling until a condition holds.
 */
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { type ActivityDeps, defaultStoreFor } from '../../activities';
import type { ComputeBackend } from '../../backends/compute';
import { ALL_QUEUES, createWorkers, installQuietRuntime } from '../../workers';

export interface TestStack {
  client: Client;
  workers: Worker[];
  /** shuts the workers down and closes the connections */
  stop(): Promise<void>;
}

export async function startTestStack(opts: {
  address: string;
  compute: ComputeBackend;
  dir: string;
  cacheDir?: string;
  heartbeatMs?: number;
  progressSignalMs?: number;
  /** ActivityDeps.trainerFor (compute.training backends) */
  trainerFor?: ActivityDeps['trainerFor'];
}): Promise<TestStack> {
  installQuietRuntime();
  const connection = await Connection.connect({ address: opts.address });
  const native = await NativeConnection.connect({ address: opts.address });
  const hb = opts.heartbeatMs ?? 200;
  const workers = await createWorkers({
    connection: native,
    namespace: 'default',
    queues: ALL_QUEUES,
    deps: {
      storeFor: defaultStoreFor(path.join(opts.dir, 'default-store'), path.join(opts.dir, 'objects')),
      compute: opts.compute,
      ...(opts.trainerFor ? { trainerFor: opts.trainerFor } : {}),
      workDir: path.join(opts.dir, 'work'),
      cacheDir: opts.cacheDir ?? path.join(opts.dir, 'cache'),
      heartbeatIntervalMs: hb,
      progressSignalMs: opts.progressSignalMs ?? 500,
    },
    heartbeatThrottleMs: hb,
  });
  const running = Promise.all(workers.map((w) => w.run()));
  return {
    client: new Client({ connection }),
    workers,
    async stop() {
      for (const w of workers) w.shutdown();
      await running;
      await connection.close();
      await native.close();
    },
  };
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 240_000, pollMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
