/**
 * bench:scale — one self-rewarding iteration at scale through the whole machinery: a real
 * Temporal dev server, a real worker process (all queues, local store), generation by
 * OpenAICompute against the STUB OpenAI-compatible server (test/helpers/stub-openai-server.ts,
 * its own process; it answers at once, so the figures are about the machinery, not a model)
 * and a NO-OP TRAINER (bench/scale-worker.ts: fake checkpoints, no training).
 *
 * Printed: wall time per stage (from the histories' activity scheduled -> completed times)
 * and in total, HTTP calls/s end to end, the worker process's peak RSS (VmHWM), the largest
 * workflow history (events, bytes), and a plain async loop over the same stub with the same
 * concurrency (no Temporal, no store) for comparison.
 *
 *   npm run bench:scale -- --prompts 1000 [--concurrency 64] [--shard-size 64] [--plain-calls N] [--worker-heap-mb 256]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { RunConfigInput } from '../core/schemas';
import { startDevServer } from '../infra/dev-server';
import { loadEnvPaths, repoRoot } from '../infra/paths';
import { HttpClient } from '../backends/openai-compute';
import { plainIteration } from './plain-iteration';
import { installQuietRuntime } from '../workers';
import { iterationWorkflowId, runWorkflowId, TASK_QUEUES } from '../workflows/contract';

const repo = repoRoot();

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const PROMPTS = arg('prompts', 10_000);
const CONCURRENCY = arg('concurrency', 64);
const SHARD_SIZE = arg('shard-size', 64);
const N = 4;
const SAMPLES = 3;
/** calls of the plain request loops (fetch and node:http; default 0: not run) */
const PLAIN_CALLS = arg('plain-calls', 0);
/** V8 old-space limit of the worker process in MB (--max-old-space-size; 0: Node's default) */
const WORKER_HEAP_MB = arg('worker-heap-mb', 0);
/** worker processes (each polls every queue) */
const WORKERS = arg('workers', 1);
/** compute.fleet.parts: candidates and judgments as this many activities at once (1: no fleet) */
const PARTS = arg('parts', 1);

/** Spawns `node --import tsx <script> ...` and resolves with the first stdout line matching `re`. */
function spawnTs(
  script: string,
  args: string[],
  env: Record<string, string>,
  re: RegExp,
  nodeFlags: string[] = [],
): { child: ChildProcess; match: Promise<RegExpExecArray> } {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', path.join(repo, script), ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const match = new Promise<RegExpExecArray>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const m = re.exec(l);
      if (m) resolve(m);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return { child, match };
}

function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function stats(url: string): Promise<{ served: number; generations: number; maxInFlight: number }> {
  return (await (await fetch(`${url}/stats`)).json()) as { served: number; generations: number; maxInFlight: number };
}

function judgeLikeBody(i: number): string {
  return JSON.stringify({
    model: 'stub',
    messages: [{ role: 'user', content: `plain loop question ${i}` }],
    n: SAMPLES,
    temperature: 0.7,
    top_p: 0.9,
    max_tokens: 256,
    seed: i,
  });
}

/**
 * `count` chat requests (n=3, like judging) with `concurrency` in flight: no Temporal, no store.
 * `fetch`: what a user would write first; `node:http`: the engine's own HTTP client
 * (HttpClient: keep-alive agent), so the difference to the run is the machinery alone.
 */
async function plainLoop(base: string, count: number, concurrency: number, client: 'fetch' | 'node:http'): Promise<number> {
  let next = 0;
  const http = new HttpClient(concurrency);
  const never = new AbortController().signal;
  setMaxListeners(concurrency + 10, never);
  const url = `${base}/v1/chat/completions`;
  const headers = { 'content-type': 'application/json' };
  const t0 = Date.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const text =
        client === 'fetch'
          ? await (await fetch(url, { method: 'POST', headers, body: judgeLikeBody(i) })).text()
          : (await http.post(url, judgeLikeBody(i), headers, 60_000, never)).text;
      const j = JSON.parse(text) as { choices: unknown[] };
      if (j.choices.length !== SAMPLES) throw new Error('plain loop: wrong number of choices');
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return (Date.now() - t0) / 1000;
}

interface StageTime {
  workflow: string;
  activity: string;
  seconds: number;
  /** scheduled and completed, ms since the epoch */
  from: number;
  to: number;
}

/** user + system CPU seconds of a process so far (/proc/<pid>/stat, clock ticks of 10 ms) */
function cpuSeconds(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Activity durations (scheduled -> completed) and the history's size. */
function readHistory(
  workflow: string,
  h: temporal.api.history.v1.IHistory,
): { stages: StageTime[]; events: number; bytes: number; startLatencies: { name: string; ms: number }[] } {
  const events = h.events ?? [];
  const scheduled = new Map<string, { name: string; at: number }>();
  const stages: StageTime[] = [];
  const startLatencies: { name: string; ms: number }[] = [];
  const ms = (e: temporal.api.history.v1.IHistoryEvent): number =>
    Number(e.eventTime?.seconds ?? 0) * 1000 + Math.round(Number(e.eventTime?.nanos ?? 0) / 1e6);
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), { name: s.activityType?.name ?? '?', at: ms(e) });
    const st = e.activityTaskStartedEventAttributes;
    if (st) {
      const from = scheduled.get(String(st.scheduledEventId));
      if (from) startLatencies.push({ name: from.name, ms: ms(e) - from.at });
    }
    const c = e.activityTaskCompletedEventAttributes;
    if (c) {
      const from = scheduled.get(String(c.scheduledEventId));
      if (from) stages.push({ workflow, activity: from.name, seconds: (ms(e) - from.at) / 1000, from: from.at, to: ms(e) });
    }
  }
  return { stages, startLatencies, events: events.length, bytes: temporal.api.history.v1.History.encode(h).finish().byteLength };
}

async function main(): Promise<void> {
  installQuietRuntime();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-bench-scale-'));
  const stubProc = spawnTs('test/helpers/stub-openai-server.ts', ['--port', '0'], {}, /^listening (\d+)$/);
  const stubBase = `http://127.0.0.1:${(await stubProc.match)[1]}`;
  const server = await startDevServer({ temporalBin: loadEnvPaths(repo).temporal, dbFile: path.join(tmp, 'temporal.db'), uiPort: false });
  // every worker takes as many generation parts at once as there are parts (so a part never
  // waits for a slot: its schedule-to-start is the server's and the loaded worker's latency)
  const workers = Array.from({ length: WORKERS }, (_, w) =>
    spawnTs(
      'bench/scale-worker.ts',
      [],
      {
        SRLM_BENCH_ADDRESS: server.address,
        SRLM_BENCH_WORKDIR: path.join(tmp, `work-${w}`),
        SRLM_BENCH_COMPUTE_CONCURRENCY: String(PARTS),
      },
      /^ready$/,
      [
        ...(WORKER_HEAP_MB > 0 ? [`--max-old-space-size=${WORKER_HEAP_MB}`] : []),
        ...(process.env.SRLM_BENCH_WORKER_FLAGS ?? '').split(' ').filter(Boolean),
      ],
    ),
  );
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  try {
    await Promise.all(workers.map((w) => w.match));
    const pids = workers.map((w) => w.child.pid!);
    const run = 'scale';
    const config: RunConfigInput = {
      run,
      seed: { ift: path.join(repo, 'seed/ift.jsonl') },
      iterations: 1,
      // about 3 instructions per self-instruct answer from the stub
      prompts: { count: PROMPTS, requestsPerRound: Math.min(4096, Math.max(64, Math.ceil(PROMPTS / 3))), maxRounds: 100 },
      candidates: { n: N },
      judge: { samples: SAMPLES },
      compute: {
        engine: { kind: 'openai', baseUrl: `${stubBase}/v1`, model: 'stub', concurrency: CONCURRENCY, timeoutSeconds: 60, maxRetries: 5 },
        ...(PARTS > 1 ? { fleet: { parts: PARTS } } : {}),
      },
      durability: { shardSize: SHARD_SIZE },
      store: { root: path.join(tmp, 'store') },
    };
    console.log(
      `bench:scale: 1 iteration, ${PROMPTS} prompts x ${N} candidates x ${SAMPLES} judgments; stub OpenAI server (separate process), concurrency ${CONCURRENCY}, shards of ${SHARD_SIZE}${WORKER_HEAP_MB > 0 ? `; worker heap limit ${WORKER_HEAP_MB} MB` : ''}; no-op trainer; local store; Temporal dev server; ${WORKERS} worker process${WORKERS > 1 ? 'es' : ''}${PARTS > 1 ? `; fleet of ${PARTS} parts` : ''}`,
    );
    // the workers' largest RSS every 200 ms, attributed to stages afterwards by their activity times
    const samples: { at: number; mb: number }[] = [];
    const sampler = setInterval(() => samples.push({ at: Date.now(), mb: Math.max(...pids.map(rssMb)) }), 200);
    const before = await stats(stubBase);
    const cpuPids: Record<string, number> = {
      ...Object.fromEntries(pids.map((pid, w) => [WORKERS > 1 ? `worker ${w + 1}` : 'worker', pid])),
      stub: stubProc.child.pid!,
      'temporal server': server.pid,
      'bench (client, sampler)': process.pid,
    };
    const cpuBefore = Object.fromEntries(Object.entries(cpuPids).map(([k, pid]) => [k, cpuSeconds(pid)]));
    const t0 = Date.now();
    await client.workflow.execute('srlmRun', { taskQueue: TASK_QUEUES.orchestration, workflowId: runWorkflowId(run), args: [{ config }] });
    const total = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    const after = await stats(stubBase);
    const cpuUsed = Object.entries(cpuPids).map(([k, pid]) => `${k} ${(cpuSeconds(pid) - cpuBefore[k]!).toFixed(1)} s`);
    const rss = pids.map(peakRssMb);
    const calls = after.served - before.served;
    const generations = after.generations - before.generations;

    const histories = await Promise.all(
      [runWorkflowId(run), iterationWorkflowId(run, 1)].map(async (id) =>
        readHistory(id, await client.workflow.getHandle(id).fetchHistory()),
      ),
    );
    console.log('\nstage (activity)                    seconds  max RSS MB');
    for (const s of histories.flatMap((h) => h.stages)) {
      const peak = samples.filter((x) => x.at >= s.from && x.at <= s.to).reduce((m, x) => Math.max(m, x.mb), 0);
      console.log(
        `  ${s.activity.padEnd(32)} ${s.seconds.toFixed(1).padStart(8)} ${peak > 0 ? peak.toFixed(0).padStart(11) : '          -'}`,
      );
    }
    console.log(`  ${'total (run, end to end)'.padEnd(32)} ${total.toFixed(1).padStart(8)}`);
    console.log(`\nHTTP calls: ${calls} in ${total.toFixed(1)} s = ${(calls / total).toFixed(0)} calls/s end to end`);
    console.log(
      `generations (completions; a request with n = 4 or 3 samples counts 4 or 3): ${generations} = ${(generations / total).toFixed(0)} generations/s end to end`,
    );
    console.log(`CPU time during the run (2 cores = ${(2 * total).toFixed(0)} CPU-s): ${cpuUsed.join(', ')}`);
    console.log(`worker process peak RSS (VmHWM): ${rss.map((mb) => `${mb.toFixed(0)} MB`).join(', ')}`);
    histories.forEach((h, i) =>
      console.log(
        `history ${[runWorkflowId(run), iterationWorkflowId(run, 1)][i]}: ${h.events} events, ${(h.bytes / 1024).toFixed(1)} KiB`,
      ),
    );
    const latency = (label: string, keep: (name: string) => boolean): void => {
      const lat = histories
        .flatMap((h) => h.startLatencies)
        .filter((x) => keep(x.name))
        .map((x) => x.ms)
        .sort((a, b) => a - b);
      if (lat.length === 0) return;
      const pct = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
      console.log(
        `activity scheduling latency (scheduled -> started), ${label} (${lat.length}): p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lat[lat.length - 1]} ms`,
      );
    };
    latency('all activities', () => true);
    // fleet parts are scheduled together, each while the others keep the workers busy
    latency('fleet parts, scheduled while the generation workers are busy', (name) => name.endsWith('Part'));
    const largest = histories.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    console.log(`largest history: ${largest.events} events, ${(largest.bytes / 1024).toFixed(1)} KiB`);

    // the same iteration as a plain in-memory loop (bench/plain-iteration.ts)
    const plain = await plainIteration({
      baseUrl: `${stubBase}/v1`,
      seedIft: path.join(repo, 'seed/ift.jsonl'),
      prompts: PROMPTS,
      requestsPerRound: config.prompts!.requestsPerRound!,
      maxRounds: config.prompts!.maxRounds!,
      n: N,
      samples: SAMPLES,
      concurrency: CONCURRENCY,
    });
    console.log(
      `\nplain in-memory iteration (same stub, HTTP client, concurrency and core/ logic; no Temporal, no store, no resume): ${plain.seconds.toFixed(1)} s`,
    );
    console.log(
      `  ${plain.stages.map((x) => `${x.name} ${x.seconds.toFixed(1)} s`).join(', ')}; ${plain.prompts} prompts, ${plain.requests} HTTP calls, ${plain.generations} generations = ${(plain.generations / plain.seconds).toFixed(0)} generations/s, ${plain.pairs} pairs`,
    );
    console.log(`ratio of wall times, durable run / plain iteration: ${(total / plain.seconds).toFixed(2)}x`);

    if (PLAIN_CALLS > 0) {
      const rate = calls / total;
      for (const client of ['fetch', 'node:http'] as const) {
        const secs = await plainLoop(stubBase, PLAIN_CALLS, CONCURRENCY, client);
        console.log(
          `\nplain request loop with ${client} (judge-like requests, n=${SAMPLES}, concurrency ${CONCURRENCY}): ${PLAIN_CALLS} calls in ${secs.toFixed(1)} s = ${(PLAIN_CALLS / secs).toFixed(0)} calls/s`,
        );
        console.log(`ratio of calls/s, request loop (${client}) / end to end: ${(PLAIN_CALLS / secs / rate).toFixed(2)}x`);
      }
    }
  } finally {
    for (const w of workers) w.child.kill('SIGTERM');
    stubProc.child.kill('SIGTERM');
    await connection.close();
    await server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
