/**
 * bench:recovery — how much generation work a killed generation worker costs.
 *
 * Each trial runs a self-rewarding iteration whose judging stage has `--shards` shards,
 * SIGKILLs the generation worker process at a random point of that stage, starts a fresh
 * one, and lets the run finish. Generation is FakeCompute (a fake, named so) in a real
 * worker process, so the figures are about the machinery, not a model's speed. Two kinds
 * of replacement worker are measured side by side in each trial's run:
 *
 *   same-host:  the new worker finds the killed one's local shard files
 *   other-host: the new worker has an empty scratch directory and continues from the
 *               committed shards and the partial outputs flushed to the store
 *
 * Printed: fraction of the stage's requests generated twice (median, max), seconds from
 * the kill until the new worker generated again (median, max; includes the heartbeat
 * timeout that detects the lost attempt and the worker's start).
 *
 *   npm run bench:recovery -- --trials 5 --shards 64 --shard-size 4 --delay-ms 15
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { defaultStoreFor } from '../activities';
import type { RunConfigInput } from '../core/schemas';
import { mulberry32 } from '../core/selfInstruct';
import { startDevServer } from '../infra/dev-server';
import { loadEnvPaths, repoRoot } from '../infra/paths';
import { createWorkers, installQuietRuntime } from '../workers';
import { runWorkflowId, TASK_QUEUES } from '../workflows/contract';
import { FakeCompute } from '../testing/fake-compute';

const repo = repoRoot();

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const TRIALS = arg('trials', 5);
const SHARDS = arg('shards', 64);
const SHARD_SIZE = arg('shard-size', 4);
const DELAY_MS = arg('delay-ms', 15);
const HEARTBEAT_S = arg('heartbeat-timeout', 2);
const FLUSH_S = arg('flush-seconds', 1);
const SEED = arg('seed', 1);

// judging has one request per candidate: prompts x N
const N = 4;
const PROMPTS = Math.ceil((SHARDS * SHARD_SIZE) / N);

function spawnGenerationWorker(
  address: string,
  workDir: string,
  log: string,
): { child: ChildProcess; ready: Promise<void>; exited: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'testing/fake-worker.ts')], {
    cwd: repo,
    env: {
      ...process.env,
      SRLM_TEST_ADDRESS: address,
      SRLM_TEST_QUEUES: 'generation',
      SRLM_TEST_WORKDIR: workDir,
      SRLM_FAKE_DELAY_MS: String(DELAY_MS),
      SRLM_FAKE_LOG: log,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => l.trim() === 'ready' && resolve());
    void exited.then(() => reject(new Error('generation worker exited before it was ready')));
  });
  return { child, ready, exited };
}

const lines = (file: string): string[] => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  installQuietRuntime();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-bench-recovery-'));
  const server = await startDevServer({ temporalBin: loadEnvPaths(repo).temporal, dbFile: path.join(tmp, 'temporal.db'), uiPort: false });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const native = await NativeConnection.connect({ address: server.address });
  const workers = await createWorkers({
    connection: native,
    namespace: 'default',
    queues: ['orchestration', 'training'],
    deps: {
      storeFor: defaultStoreFor(path.join(tmp, 'default-store')),
      compute: new FakeCompute(),
      workDir: path.join(tmp, 'work-orch'),
      cacheDir: path.join(tmp, 'cache'),
      heartbeatIntervalMs: 200,
    },
  });
  const running = Promise.all(workers.map((w) => w.run()));
  const random = mulberry32(SEED);
  const results: Record<'same-host' | 'other-host', { redone: number[]; recover: number[]; killedAt: number[] }> = {
    'same-host': { redone: [], recover: [], killedAt: [] },
    'other-host': { redone: [], recover: [], killedAt: [] },
  };
  const stageRequests = PROMPTS * N;
  console.log(
    `bench:recovery: ${TRIALS} trials x 2 kinds; judging stage of ${stageRequests} requests in ${Math.ceil(stageRequests / SHARD_SIZE)} shards of ${SHARD_SIZE}; ${DELAY_MS} ms per request; heartbeat timeout ${HEARTBEAT_S} s; partial flush every ${FLUSH_S} s`,
  );
  try {
    for (let trial = 0; trial < TRIALS; trial++) {
      for (const kind of ['same-host', 'other-host'] as const) {
        const dir = path.join(tmp, `t${trial}-${kind}`);
        const run = `bench-${trial}-${kind}`;
        const log = path.join(dir, 'generated.log');
        fs.mkdirSync(dir, { recursive: true });
        const config: RunConfigInput = {
          run,
          seed: { ift: path.join(repo, 'seed/ift.jsonl') },
          iterations: 1,
          prompts: { count: PROMPTS, requestsPerRound: 64, maxRounds: 50 },
          candidates: { n: N },
          judge: { samples: 3 },
          durability: {
            shardSize: SHARD_SIZE,
            heartbeatTimeoutSeconds: HEARTBEAT_S,
            retryInitialSeconds: 0.2,
            partialFlushSeconds: FLUSH_S,
          },
          store: { root: path.join(dir, 'store') },
        };
        let gen = spawnGenerationWorker(server.address, path.join(dir, 'work-a'), log);
        await gen.ready;
        const handle = await client.workflow.start('srlmRun', {
          taskQueue: TASK_QUEUES.orchestration,
          workflowId: runWorkflowId(run),
          args: [{ config }],
        });
        // wait for judging to start, then kill at a random point of it
        const judgeDir = path.join(dir, 'store', 'runs', run, 'iter-1', 'judgments', 'parts', 'all');
        const candidatesManifest = path.join(dir, 'store', 'runs', run, 'iter-1', 'candidates', 'manifest.json');
        while (!fs.existsSync(candidatesManifest)) await new Promise((r) => setTimeout(r, 20));
        const before = lines(log).length;
        const target = Math.floor((0.05 + 0.9 * random()) * stageRequests);
        while (lines(log).length - before < target) await new Promise((r) => setTimeout(r, 5));
        const killedAt = lines(log).length - before;
        gen.child.kill('SIGKILL');
        await gen.exited;
        const tKill = Date.now();
        const atKill = lines(log).length;
        gen = spawnGenerationWorker(server.address, path.join(dir, kind === 'same-host' ? 'work-a' : 'work-b'), log);
        while (lines(log).length === atKill) await new Promise((r) => setTimeout(r, 10));
        const recover = (Date.now() - tKill) / 1000;
        await handle.result();
        gen.child.kill('SIGKILL');
        await gen.exited;
        const judged = lines(log).slice(before);
        const redone = judged.length - new Set(judged).size;
        if (new Set(judged).size !== stageRequests)
          throw new Error(`trial ${trial} ${kind}: ${new Set(judged).size} distinct judging requests, expected ${stageRequests}`);
        if (!fs.existsSync(path.join(judgeDir, '..', '..', 'manifest.json')))
          throw new Error(`trial ${trial} ${kind}: judgments not published`);
        results[kind].redone.push(redone / stageRequests);
        results[kind].recover.push(recover);
        results[kind].killedAt.push(killedAt / stageRequests);
        console.log(
          `  trial ${trial + 1} ${kind.padEnd(10)} killed at ${((100 * killedAt) / stageRequests).toFixed(1).padStart(5)} % of the stage: redone ${redone} requests (${((100 * redone) / stageRequests).toFixed(2)} %), generating again after ${recover.toFixed(1)} s`,
        );
      }
    }
  } finally {
    for (const w of workers) w.shutdown();
    await running;
    await native.close();
    await connection.close();
    await server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(
    '\nkind        redone median   redone max   recover median   recover max   (a stage without shard resume would redo the stage so far: median ' +
      `${(100 * median(results['same-host'].killedAt.concat(results['other-host'].killedAt))).toFixed(1)} %)`,
  );
  for (const kind of ['same-host', 'other-host'] as const) {
    const r = results[kind];
    console.log(
      `${kind.padEnd(10)}  ${(100 * median(r.redone)).toFixed(2).padStart(11)} %  ${(100 * Math.max(...r.redone)).toFixed(2).padStart(9)} %  ${median(r.recover).toFixed(1).padStart(13)} s  ${Math.max(
        ...r.recover,
      )
        .toFixed(1)
        .padStart(10)} s`,
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
