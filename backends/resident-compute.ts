/**
 * Resident models (`compute.resident`): a generation worker keeps the model it generated with
 * loaded in a long-lived server process and sends the next shards, parts and stages of that
 * model to it, instead of starting a compute process (and loading the weights) per activity.
 *
 * - local engine: `python -m srlm_compute serve --model <dir> --port 0` (compute/'s own
 *   OpenAI-compatible server over the same sampler as the generate command);
 * - vllm engine: vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`) on the
 *   vLLM environment's interpreter (SRLM_VLLM_PYTHON), started through
 *   `python -m srlm_compute.tether` so it dies with the worker.
 *
 * Generation itself goes through OpenAICompute (shards, resume of answered lines, retries),
 * so a resident server that dies mid-stage costs its in-flight requests only: the next
 * attempt starts a new server and skips what was written. A pool per worker process holds
 * the servers: at most `maxModels` (the least recently used idle one is stopped to make room),
 * each stopped after `idleSeconds` unused, all stopped before a local training job (the GPU
 * memory is the trainer's) and when the process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as readline from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import type { RunConfig } from '../core/schemas';
import {
  type ComputeBackend,
  type ComputeEvent,
  computeSpawnOptions,
  type GenerateJob,
  type ImportJob,
  type RunControl,
  signalGroup,
  trackGroup,
  type TrainJob,
  untrackGroup,
  type VllmJobEngine,
} from './compute';
import { OpenAICompute } from './openai-compute';

type Resident = NonNullable<RunConfig['compute']['resident']>;

/** The model name every resident server answers to. */
export const RESIDENT_MODEL_NAME = 'srlm-resident';

export interface ResidentPoolOptions {
  /** the interpreter of compute/ */
  python: string;
  /** directory holding the srlm_compute package */
  packageDir: string;
  /** an interpreter whose environment has vllm (vllm engine); default `python` */
  vllmPython?: string;
  /** servers' stderr is appended here */
  logFile?: string;
  /** extra environment for the servers */
  env?: Record<string, string>;
  /** how long a server may take to load its model and answer (default 30 minutes) */
  startTimeoutMs?: number;
  /** how long to wait after SIGTERM before SIGKILL (default 10 s) */
  killGraceMs?: number;
}

/** What a server is started for: one model directory and the settings that shape its process. */
export interface ResidentSpec {
  modelDir: string;
  device: GenerateJob['device'];
  batchSize: number;
  threads: number;
  /** absent: compute/'s serve (the local engine) */
  vllm?: VllmJobEngine;
  idleMs: number;
  maxModels: number;
}

export interface ResidentServerInfo {
  model: string;
  engine: 'local' | 'vllm';
  pid: number | undefined;
  url: string;
  /** generation jobs it served */
  jobs: number;
  inUse: number;
  loadSeconds: number;
}

class Server {
  readonly key: string;
  child: ChildProcess | null = null;
  url = '';
  jobs = 0;
  inUse = 0;
  lastUsed = Date.now();
  loadSeconds = 0;
  exited = false;
  stopped = false;
  client: OpenAICompute | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  private onClose: (() => void)[] = [];
  readonly ready: Promise<void>;
  readonly stderrTail: string[] = [];

  constructor(
    readonly spec: ResidentSpec,
    private readonly pool: ResidentPool,
    ready: (server: Server) => Promise<void>,
  ) {
    this.key = specKey(spec);
    this.ready = ready(this);
    this.ready.catch(() => undefined); // awaited by acquire; a failed start must not be an unhandled rejection
  }

  hold(): void {
    this.inUse++;
    this.lastUsed = Date.now();
    this.clearTimer();
    this.keepAlive(true);
  }

  release(): void {
    this.inUse = Math.max(0, this.inUse - 1);
    this.lastUsed = Date.now();
    if (this.inUse === 0 && !this.exited) {
      this.idleTimer = setTimeout(() => void this.pool.stop(this), this.spec.idleMs);
      this.idleTimer.unref();
      this.keepAlive(false);
    }
  }

  /**
   * An idle server does not keep the worker's process alive (it is stopped with the worker, or
   * killed by the exit hook); one in use does, like any child.
   */
  keepAlive(on: boolean): void {
    const c = this.child;
    if (!c) return;
    for (const h of [c, c.stdout, c.stderr] as unknown as ({ ref?: () => void; unref?: () => void } | null)[]) {
      if (on) h?.ref?.();
      else h?.unref?.();
    }
  }

  clearTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** resolves once the process has exited (at once when it never started or is gone) */
  whenClosed(): Promise<void> {
    if (this.exited || !this.child) return Promise.resolve();
    return new Promise((resolve) => this.onClose.push(resolve));
  }

  closed(): void {
    for (const f of this.onClose.splice(0)) f();
  }
}

function specKey(s: ResidentSpec): string {
  // vLLM's server takes none of device, batch size and threads (it schedules its own batches): jobs that differ only there share it
  return JSON.stringify(s.vllm ? [s.modelDir, s.vllm] : [s.modelDir, 'local', s.device, s.batchSize, s.threads]);
}

/** The resident servers of one worker process. */
export class ResidentPool {
  private readonly servers = new Map<string, Server>();
  constructor(private readonly opts: ResidentPoolOptions) {}

  /** The servers now up or loading. */
  list(): ResidentServerInfo[] {
    return [...this.servers.values()].map((s) => ({
      model: s.spec.modelDir,
      engine: s.spec.vllm ? 'vllm' : 'local',
      pid: s.child?.pid,
      url: s.url,
      jobs: s.jobs,
      inUse: s.inUse,
      loadSeconds: s.loadSeconds,
    }));
  }

  /**
   * A server for `spec`, started (and its model loaded) when none is up; held until `release`.
   * Room is made first by stopping idle servers, least recently used first, down to maxModels - 1.
   */
  async acquire(spec: ResidentSpec, ctl: RunControl): Promise<Server> {
    const key = specKey(spec);
    let server = this.servers.get(key);
    if (server?.exited) server = undefined;
    if (!server) {
      const idle = [...this.servers.values()].filter((s) => s.inUse === 0).sort((a, b) => a.lastUsed - b.lastUsed);
      while (this.servers.size >= spec.maxModels && idle.length) await this.stop(idle.shift()!);
      server = this.start(spec);
      this.servers.set(key, server);
      ctl.onEvent?.({
        event: 'progress',
        resident: 'loading',
        model: spec.modelDir,
        engine: spec.vllm ? 'vllm' : 'local',
        done: 0,
        total: 0,
        tokens: 0,
      });
    }
    server.hold();
    try {
      await waitOrAbort(server.ready, ctl.signal);
    } catch (err) {
      server.release();
      throw err;
    }
    return server;
  }

  /** Stops one server: SIGTERM to its process group, SIGKILL after the grace period. */
  async stop(server: Server): Promise<void> {
    server.stopped = true;
    server.clearTimer();
    if (this.servers.get(server.key) === server) this.servers.delete(server.key);
    if (!server.child) await server.ready.catch(() => undefined); // spawning: stop what it started
    if (server.exited || !server.child) return;
    const closed = server.whenClosed();
    signalGroup(server.child.pid, 'SIGTERM');
    const kill = setTimeout(() => signalGroup(server.child?.pid, 'SIGKILL'), this.opts.killGraceMs ?? 10_000);
    await closed;
    clearTimeout(kill);
  }

  /** Stops every server (before a local training job, and at shutdown). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.servers.values()].map((s) => this.stop(s)));
  }

  private start(spec: ResidentSpec): Server {
    const started = Date.now();
    return new Server(spec, this, async (server) => {
      const py = spec.vllm ? (this.opts.vllmPython ?? this.opts.python) : this.opts.python;
      // vLLM's server has no "pick a free port and say which": one is picked here
      const vllmPort = spec.vllm ? await freePort() : 0;
      if (server.stopped) throw new Error('resident server stopped before it started');
      const c = spawn(
        py,
        spec.vllm ? vllmServerArgs(spec, vllmPort, py) : localServerArgs(spec),
        computeSpawnOptions(this.opts.packageDir, this.opts.env),
      );
      server.child = c;
      trackGroup(c.pid);
      const log = this.opts.logFile ? fs.createWriteStream(this.opts.logFile, { flags: 'a' }) : null;
      c.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        server.stderrTail.push(text);
        while (server.stderrTail.length > 40) server.stderrTail.shift();
        log?.write(text);
      });
      const exit = new Promise<number | string>((resolve) => {
        c.once('error', (err) => {
          server.stderrTail.push(`${err.message}\n`);
        });
        c.once('close', (code, sig) => {
          server.exited = true;
          server.clearTimer();
          untrackGroup(c.pid);
          if (this.servers.get(server.key) === server) this.servers.delete(server.key);
          log?.end();
          server.closed();
          resolve(code ?? sig ?? 'unknown');
        });
      });
      let errorEvent = '';
      const lines = readline.createInterface({ input: c.stdout! });
      const listening = new Promise<number>((resolve) => {
        lines.on('line', (line) => {
          try {
            const ev = JSON.parse(line) as Record<string, unknown>;
            if (ev.event === 'listening' && typeof ev.port === 'number') resolve(ev.port);
            if (ev.event === 'error' && typeof ev.message === 'string') errorEvent = ev.message;
          } catch {
            server.stderrTail.push(`(stdout) ${line}\n`);
          }
        });
      });
      const up = spec.vllm ? waitForModels(`http://127.0.0.1:${vllmPort}/v1/models`, () => server.exited).then(() => vllmPort) : listening;
      let timer: NodeJS.Timeout | undefined;
      const timeoutMs = this.opts.startTimeoutMs ?? 30 * 60_000;
      const outcome = await Promise.race([
        up.then((port) => ({ port })),
        exit.then((code) => ({ exit: code })),
        new Promise<{ timeout: true }>((resolve) => {
          timer = setTimeout(() => resolve({ timeout: true }), timeoutMs);
          timer.unref();
        }),
      ]).finally(() => clearTimeout(timer));
      const what = `resident ${spec.vllm ? 'vLLM' : 'local'} server for ${spec.modelDir}`;
      if ('timeout' in outcome) {
        await this.stop(server);
        throw ApplicationFailure.retryable(
          `${what} did not answer within ${Math.round(timeoutMs / 1000)} s of starting: ${tail(server)}`,
          'ComputeFailed',
        );
      }
      if ('exit' in outcome) {
        const message = errorEvent || tail(server);
        if (outcome.exit === 2) throw ApplicationFailure.nonRetryable(`${what}: ${message}`, 'InvalidComputeInput');
        throw ApplicationFailure.retryable(`${what} exited (${outcome.exit}) before it was ready: ${message}`, 'ComputeFailed');
      }
      server.url = `http://127.0.0.1:${outcome.port}/v1`;
      server.loadSeconds = (Date.now() - started) / 1000;
      server.keepAlive(server.inUse > 0);
    });
  }
}

function tail(server: Server): string {
  return server.stderrTail.join('').trim().split('\n').slice(-8).join('\n');
}

/** argv (after the interpreter) of compute/'s server for a spec. */
export function localServerArgs(spec: ResidentSpec): string[] {
  return [
    '-m',
    'srlm_compute',
    'serve',
    '--model',
    spec.modelDir,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--device',
    spec.device,
    '--batch-size',
    String(spec.batchSize),
    '--threads',
    String(spec.threads),
    '--served-model-name',
    RESIDENT_MODEL_NAME,
  ];
}

/** argv (after the interpreter) of vLLM's OpenAI server for a spec, tethered to this process. */
export function vllmServerArgs(spec: ResidentSpec, port: number, python: string): string[] {
  const v = spec.vllm!;
  return [
    '-m',
    'srlm_compute.tether',
    '--',
    python,
    '-m',
    'vllm.entrypoints.openai.api_server',
    '--model',
    spec.modelDir,
    '--served-model-name',
    RESIDENT_MODEL_NAME,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--tensor-parallel-size',
    String(v.tensor_parallel_size),
    '--gpu-memory-utilization',
    String(v.gpu_memory_utilization),
    '--dtype',
    v.dtype,
    ...(v.max_model_len ? ['--max-model-len', String(v.max_model_len)] : []),
  ];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls GET url until it answers 200 (vLLM's server is up once /v1/models answers). */
async function waitForModels(url: string, gone: () => boolean): Promise<void> {
  for (;;) {
    if (gone()) return new Promise(() => undefined); // the exit branch of the race answers
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.setTimeout(5000, () => req.destroy());
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function waitOrAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new Error('resident server wait cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('resident server wait cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Generation on a resident server of `pool` (one per model directory and settings); training
 * and import on `wrapped` (the worker's local backend, a StopResidentsBeforeTraining).
 */
export class ResidentCompute implements ComputeBackend {
  readonly name: string;
  constructor(
    private readonly pool: ResidentPool,
    private readonly resident: Resident,
    private readonly wrapped: ComputeBackend,
    private readonly vllm?: VllmJobEngine,
  ) {
    this.name = vllm ? 'vllm-resident' : 'local-resident';
  }

  async generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    const spec: ResidentSpec = {
      modelDir: job.model,
      device: job.device,
      batchSize: job.batch_size,
      threads: job.threads,
      ...(this.vllm ? { vllm: this.vllm } : {}),
      idleMs: this.resident.idleSeconds * 1000,
      maxModels: this.resident.maxModels,
    };
    const server = await this.pool.acquire(spec, ctl);
    try {
      server.jobs++;
      server.client ??= new OpenAICompute({
        baseUrl: server.url,
        model: RESIDENT_MODEL_NAME,
        // compute/'s server batches what is queued (up to its batch size, whole requests); vLLM batches continuously
        concurrency: this.vllm ? Math.min(1024, this.vllm.requests_per_call) : Math.max(1, job.batch_size),
        timeoutSeconds: this.resident.requestTimeoutSeconds,
        maxRetries: 3,
        wrapped: this.wrapped,
      });
      const done = await server.client.generate({ ...job, engine: undefined }, ctl);
      return { ...done, resident: { url: server.url, jobs: server.jobs, load_seconds: server.loadSeconds, reused: server.jobs > 1 } };
    } finally {
      server.release();
    }
  }

  /** training never comes through the engine (the training activity uses the local or remote trainer) */
  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.train(job, ctl);
  }

  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.importModel(job, ctl);
  }
}

/** A backend whose training first stops the pool's resident servers (the local trainer's memory). */
export class StopResidentsBeforeTraining implements ComputeBackend {
  readonly name: string;
  constructor(
    private readonly pool: ResidentPool,
    private readonly wrapped: ComputeBackend,
  ) {
    this.name = wrapped.name;
  }
  generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.generate(job, ctl);
  }
  async train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    await this.pool.stopAll();
    return this.wrapped.train(job, ctl);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.importModel(job, ctl);
  }
}

/**
 * `ActivityDeps.engineFor` part for configs with `compute.resident`: a ResidentCompute per
 * distinct engine and resident settings, all on one pool; undefined for other configs.
 */
export function residentEngines(
  pool: ResidentPool,
  wrapped: ComputeBackend,
  vllmJob: (config: RunConfig) => VllmJobEngine | undefined,
): (config: RunConfig) => ComputeBackend | undefined {
  const cache = new Map<string, ComputeBackend>();
  return (config) => {
    const r = config.compute.resident;
    const e = config.compute.engine;
    if (!r || e?.kind === 'openai') return undefined;
    const key = JSON.stringify([r, e ?? null]);
    let backend = cache.get(key);
    if (!backend) {
      backend = new ResidentCompute(pool, r, wrapped, vllmJob(config));
      cache.set(key, backend);
    }
    return backend;
  };
}
