/**
 * Workflows, light stages and training in the test process (FakeCompute: a fake, named so),
 * with a client, against the test dev server; generation workers are up to the test.
 */
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { defaultStoreFor } from '../../activities';
import { createWorkers, installQuietRuntime } from '../../workers';
import { FakeCompute } from '../../testing/fake-compute';
import { testTemporalAddress } from './temporal';

export interface FakeOrchestration {
  client: Client;
  stop(): Promise<void>;
}

/** Orchestration and training workers in this process; their scratch space and default store under `dir`. */
export async function fakeOrchestration(dir: string): Promise<FakeOrchestration> {
  installQuietRuntime();
  const connection = await Connection.connect({ address: testTemporalAddress() });
  const native = await NativeConnection.connect({ address: testTemporalAddress() });
  const workers: Worker[] = await createWorkers({
    connection: native,
    namespace: 'default',
    queues: ['orchestration', 'training'],
    deps: {
      storeFor: defaultStoreFor(path.join(dir, 'default-store')),
      compute: new FakeCompute(),
      workDir: path.join(dir, 'work-orch'),
      cacheDir: path.join(dir, 'cache'),
      heartbeatIntervalMs: 200,
    },
    heartbeatThrottleMs: 200,
  });
  const running = Promise.all(workers.map((w) => w.run()));
  return {
    client: new Client({ connection }),
    async stop() {
      for (const w of workers) w.shutdown();
      await running;
      await connection.close();
      await native.close();
    },
  };
}
