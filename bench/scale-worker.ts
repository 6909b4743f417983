/**
 * The worker PROCESS of bench:scale: all three queues, generation by the run config's
 * `compute.engine` (OpenAICompute against the stub server) and a NO-OP TRAINER (named so)
 * for training and import: it writes a fake checkpoint (FakeCompute's train) and trains
 * nothing. Environment: SRLM_BENCH_ADDRESS, SRLM_BENCH_WORKDIR, SRLM_BENCH_COMPUTE_CONCURRENCY
 * (generation activities at once, default 1). Prints "ready" once polling.
 */
import * as path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { defaultStoreFor } from '../activities';
import type { ComputeBackend, ComputeEvent, GenerateJob, ImportJob, RunControl, TrainJob } from '../backends/compute';
import { openAIEngines } from '../backends/openai-compute';
import { ALL_QUEUES, createWorkers, installQuietRuntime } from '../workers';
import { FakeCompute } from '../testing/fake-compute';

/** Trains nothing: a fake checkpoint per job, so the bench measures generation and orchestration. */
class NoopTrainer implements ComputeBackend {
  readonly name = 'noop-trainer';
  private readonly fake = new FakeCompute();
  generate(_job: GenerateJob, _ctl: RunControl): Promise<ComputeEvent> {
    throw new Error('bench:scale: generation must go to the openai engine (compute.engine)');
  }
  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.fake.train(job, ctl);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.fake.importModel(job, ctl);
  }
}

async function main(): Promise<void> {
  installQuietRuntime();
  const address = process.env.SRLM_BENCH_ADDRESS!;
  const workDir = process.env.SRLM_BENCH_WORKDIR!;
  const trainer = new NoopTrainer();
  const connection = await NativeConnection.connect({ address });
  const workers = await createWorkers({
    connection,
    namespace: 'default',
    queues: ALL_QUEUES,
    computeConcurrency: Number(process.env.SRLM_BENCH_COMPUTE_CONCURRENCY ?? 1),
    deps: {
      storeFor: defaultStoreFor(path.join(workDir, 'default-store')),
      compute: trainer,
      engineFor: openAIEngines(trainer),
      workDir,
      cacheDir: path.join(workDir, 'cache'),
    },
  });
  if (process.env.SRLM_BENCH_MEMLOG) {
    // heap vs the rest of RSS, for finding what grows with the run's size
    setInterval(() => {
      const m = process.memoryUsage();
      const mb = (n: number): string => (n / 2 ** 20).toFixed(0);
      console.error(
        `memlog ${Date.now()} rss ${mb(m.rss)} heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} external ${mb(m.external)} arrayBuffers ${mb(m.arrayBuffers)}`,
      );
    }, 2000).unref();
  }
  console.log('ready');
  await Promise.all(workers.map((w) => w.run()));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
