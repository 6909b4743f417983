/**
 * OpenAICompute: generation over HTTP against any OpenAI-compatible server (vLLM, TGI,
 * llama.cpp server). It follows the generate protocol of compute/ (see compute/README.md):
 * per shard, requests already answered in the output file are skipped (a torn last line is
 * cut first), one JSON line is appended per finished request with a single write, and
 * `shard_done` follows a shard once all its lines are written. Requests of all shards share
 * one pool of at most `concurrency` HTTP requests in flight.
 *
 * Retries: 408, 429, 5xx, timeouts and connection errors are retried with exponential
 * backoff and jitter, at most `maxRetries` times per request; any other 4xx fails the job at
 * once naming the request id and the server's message, except a context-length 400, which is
 * written as `skipped: "prompt_too_long: ..."` like the Python engine does.
 *
 * The server serves one model; `job.model` (a local directory) is ignored. Training and
 * model import are delegated to the wrapped backend (PythonCompute in production).
 */
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { ApplicationFailure } from '@temporalio/common';
import type { RunConfig } from '../core/schemas';
import { keyDestinationProblem, keyEnvProblem } from '../core/security';
import {
  type ComputeBackend,
  type ComputeEvent,
  enginesOfKind,
  type GenerateJob,
  type GenerateOutput,
  type GenerateRequest,
  type ImportJob,
  type RunControl,
  type TrainJob,
} from './compute';

export interface OpenAIComputeOptions {
  /** e.g. http://host:8000/v1 */
  baseUrl: string;
  /** the served model name */
  model: string;
  /** NAME of the environment variable holding the API key (the key never appears in config) */
  apiKeyEnv?: string;
  /** most HTTP requests in flight across the whole job */
  concurrency: number;
  timeoutSeconds: number;
  /** retries per request after the first attempt */
  maxRetries: number;
  /** backend for train and importModel */
  wrapped: ComputeBackend;
  /** first backoff delay (doubling, with jitter); default 500 ms */
  backoffInitialMs?: number;
  /** longest backoff delay; default 30 s */
  backoffMaxMs?: number;
  /** where the API key is looked up (default process.env) */
  env?: Record<string, string | undefined>;
}

interface Task {
  shard: number;
  req: GenerateRequest;
}

class RetryableHttpError extends Error {}
class HttpTimeout extends Error {}

/**
 * POSTs over node:http / node:https with keep-alive agents of at most `maxSockets`
 * connections. Not fetch(): per request, fetch builds web streams, an AbortSignal (costly to
 * create in Node 20) and undici's Request/Response objects, which made the worker's HTTP
 * client 2.3-2.6x slower than node:http against a server that answers at once (measured on
 * the 2-core machine; the generation stages are thousands of small requests).
 */
export class HttpClient {
  private readonly agents: { http: http.Agent; https: https.Agent };
  constructor(maxSockets: number) {
    this.agents = { http: new http.Agent({ keepAlive: true, maxSockets }), https: new https.Agent({ keepAlive: true, maxSockets }) };
  }

  post(
    url: string,
    body: string,
    headers: Record<string, string>,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const secure = u.protocol === 'https:';
      const payload = Buffer.from(body, 'utf8');
      let settled = false;
      const settle = (err: Error | null, value?: { status: number; text: string }): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value!);
      };
      const req = (secure ? https : http).request(
        {
          protocol: u.protocol,
          hostname: u.hostname,
          port: u.port || (secure ? 443 : 80),
          path: `${u.pathname}${u.search}`,
          method: 'POST',
          agent: secure ? this.agents.https : this.agents.http,
          headers: { ...headers, 'content-length': String(payload.byteLength) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => settle(null, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (e) => settle(e));
          res.on('close', () => {
            if (!res.complete) settle(new Error('connection closed before the response ended'));
          });
        },
      );
      const timer = setTimeout(() => {
        settle(new HttpTimeout());
        req.destroy();
      }, timeoutMs);
      const onAbort = (): void => {
        settle(new Error('cancelled'));
        req.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => settle(e));
      req.end(payload);
    });
  }
}

const CONTEXT_TOO_LONG =
  /context_length_exceeded|context length|maximum context|too many tokens|prompt is too long|prompt_too_long|maximum model length|max_model_len/i;

export class OpenAICompute implements ComputeBackend {
  readonly name = 'openai';
  readonly servesOwnModel = true;
  private readonly http: HttpClient;
  constructor(private readonly opts: OpenAIComputeOptions) {
    if (!(opts.concurrency >= 1)) throw new RangeError('OpenAICompute: concurrency must be at least 1');
    this.http = new HttpClient(opts.concurrency);
  }

  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.opts.wrapped.train(job, ctl);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.opts.wrapped.importModel(job, ctl);
  }

  private apiKey(): string | undefined {
    const name = this.opts.apiKeyEnv;
    if (!name) return undefined;
    const env = this.opts.env ?? process.env;
    // checked here, where the key is read, whatever path the config took (schedules included)
    const refused = keyEnvProblem(name, env) ?? keyDestinationProblem(this.opts.baseUrl);
    if (refused)
      throw ApplicationFailure.nonRetryable(`openai engine at ${this.opts.baseUrl}: apiKeyEnv ${refused}`, 'InvalidComputeInput');
    const key = env[name];
    if (!key)
      throw ApplicationFailure.nonRetryable(
        `openai engine: environment variable ${name} (apiKeyEnv) is not set on this worker`,
        'InvalidComputeInput',
      );
    return key;
  }

  async generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    const started = Date.now();
    const key = this.apiKey();
    const redact = (s: string): string => (key ? s.split(key).join('***') : s);
    const shards = job.shards ?? [{ input: job.input!, output: job.output! }];
    if (ctl.signal?.aborted) throw new Error('openai generate cancelled before it started');

    // read requests, repair torn last lines, find what is already answered
    const tasks: Task[] = [];
    const remaining: number[] = [];
    const sizes: number[] = [];
    let done = 0;
    for (const [k, s] of shards.entries()) {
      const reqs = (await fs.readFile(s.input, 'utf8'))
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as GenerateRequest);
      const have = await answeredIds(s.output);
      sizes.push(reqs.length);
      let left = 0;
      for (const r of reqs) {
        if (have.has(r.id)) done++;
        else {
          tasks.push({ shard: k, req: r });
          left++;
        }
      }
      remaining.push(left);
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    ctl.onEvent?.({ event: 'start', total, shards: shards.length, engine: 'openai', model: this.opts.model });

    const handles = await Promise.all(shards.map((s) => fs.open(s.output, 'a')));
    const appenders = handles.map((h) => new LineAppender(h));
    let lastProgressAt = 0;
    const inner = new AbortController();
    // each request in flight listens on it (its timeout and its backoff sleep)
    setMaxListeners(2 * this.opts.concurrency + 10, inner.signal);
    const onAbort = (): void => inner.abort();
    ctl.signal?.addEventListener('abort', onAbort, { once: true });
    let tokens = 0;
    let skipped = 0;
    let retries = 0;
    let failure: unknown = null;
    let next = 0;

    const shardDone = (k: number): void => {
      ctl.onEvent?.({ event: 'shard_done', shard: k, requests: sizes[k], output: shards[k]!.output });
    };
    try {
      // shards already complete
      for (const [k, left] of remaining.entries()) if (left === 0) shardDone(k);
      const worker = async (): Promise<void> => {
        while (!inner.signal.aborted && next < tasks.length) {
          const t = tasks[next++]!;
          let out: GenerateOutput;
          try {
            out = await this.request(t.req, key, inner.signal, () => retries++);
          } catch (err) {
            if (!inner.signal.aborted) {
              failure ??= err;
              inner.abort();
            }
            return;
          }
          if (inner.signal.aborted) return;
          await appenders[t.shard]!.append(JSON.stringify(out) + '\n');
          done++;
          if (out.skipped !== undefined) skipped++;
          for (const o of out.outputs) tokens += o.tokens;
          const now = Date.now();
          const last = --remaining[t.shard]! === 0;
          if (last || now - lastProgressAt >= PROGRESS_EVERY_MS) {
            lastProgressAt = now;
            ctl.onEvent?.({ event: 'progress', shard: t.shard, done, total, tokens });
          }
          if (last) shardDone(t.shard);
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.opts.concurrency, Math.max(tasks.length, 1)) }, worker));
    } finally {
      await Promise.all(appenders.map((a) => a.settle()));
      ctl.signal?.removeEventListener('abort', onAbort);
      await Promise.all(handles.map((h) => h.close()));
    }
    if (ctl.signal?.aborted) throw new Error('openai generate cancelled');
    if (failure) {
      if (failure instanceof ApplicationFailure) {
        const msg = redact(failure.message);
        throw failure.nonRetryable ? ApplicationFailure.nonRetryable(msg, failure.type) : ApplicationFailure.retryable(msg, failure.type);
      }
      throw ApplicationFailure.retryable(redact(`openai generate failed: ${(failure as Error).message}`), 'ComputeFailed');
    }
    const elapsed = (Date.now() - started) / 1000;
    const ev: ComputeEvent = {
      event: 'done',
      done,
      total,
      tokens,
      skipped,
      skipped_too_long: skipped,
      retries,
      elapsed_s: elapsed,
      tokens_per_s: elapsed > 0 ? tokens / elapsed : 0,
    };
    ctl.onEvent?.(ev);
    return ev;
  }

  /** One request with its retries; resolves to its output line. */
  private async request(r: GenerateRequest, key: string | undefined, signal: AbortSignal, onRetry: () => void): Promise<GenerateOutput> {
    const chat = r.messages !== undefined;
    const url = `${this.opts.baseUrl.replace(/\/+$/, '')}/${chat ? 'chat/completions' : 'completions'}`;
    const body = JSON.stringify({
      model: this.opts.model,
      ...(chat ? { messages: r.messages } : { prompt: r.prompt ?? '' }),
      n: r.n,
      temperature: r.temperature,
      top_p: r.top_p,
      max_tokens: r.max_new_tokens,
      seed: r.seed,
    });
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) };
    const redact = (s: string): string => (key ? s.split(key).join('***') : s);
    const initial = this.opts.backoffInitialMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    let lastError = '';
    for (let attempt = 0; attempt <= this.opts.maxRetries; attempt++) {
      if (attempt > 0) {
        onRetry();
        const delay = Math.min(max, initial * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        await sleep(delay, signal);
      }
      if (signal.aborted) throw new Error('cancelled');
      try {
        return await this.once(r, url, body, headers, signal, chat);
      } catch (err) {
        if (signal.aborted) throw err;
        if (!(err instanceof RetryableHttpError)) throw err;
        lastError = redact(err.message);
      }
    }
    throw ApplicationFailure.retryable(
      `openai engine: request ${r.id} failed after ${this.opts.maxRetries + 1} attempts: ${lastError}`,
      'ComputeFailed',
    );
  }

  private async once(
    r: GenerateRequest,
    url: string,
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
    chat: boolean,
  ): Promise<GenerateOutput> {
    let res: { status: number; text: string };
    try {
      res = await this.http.post(url, body, headers, this.opts.timeoutSeconds * 1000, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof HttpTimeout) throw new RetryableHttpError(`timed out after ${this.opts.timeoutSeconds} s`);
      const e = err as NodeJS.ErrnoException;
      throw new RetryableHttpError(`connection error: ${e.code ?? e.message}`);
    }
    const text = res.text;
    if (res.status === 408 || res.status === 429 || res.status >= 500)
      throw new RetryableHttpError(`HTTP ${res.status}: ${serverMessage(text)}`);
    if (res.status >= 400) {
      const msg = serverMessage(text);
      if (res.status === 400 && CONTEXT_TOO_LONG.test(text)) return { id: r.id, outputs: [], skipped: `prompt_too_long: ${msg}` };
      throw ApplicationFailure.nonRetryable(
        `openai engine: request ${r.id} rejected with HTTP ${res.status}: ${msg}`,
        'InvalidComputeInput',
      );
    }
    let parsed: {
      choices?: { index?: number; text?: string; message?: { content?: string | null }; finish_reason?: string | null }[];
      usage?: { completion_tokens?: number };
    };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new RetryableHttpError(`HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    const choices = [...(parsed.choices ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    if (choices.length !== r.n) throw new RetryableHttpError(`expected ${r.n} choices, got ${choices.length}`);
    const texts = choices.map((c) => (chat ? (c.message?.content ?? '') : (c.text ?? '')));
    const usage = parsed.usage?.completion_tokens;
    const estimates = texts.map(estimateTokens);
    const estTotal = estimates.reduce((a, b) => a + b, 0);
    const counts =
      typeof usage === 'number'
        ? splitTokens(
            usage,
            estimates,
            estTotal,
            choices.map((c) => c.finish_reason === 'length'),
            r.max_new_tokens,
          )
        : estimates;
    return {
      id: r.id,
      outputs: choices.map((c, i) => ({
        text: texts[i]!,
        tokens: counts[i]!,
        finish_reason: c.finish_reason === 'length' ? ('length' as const) : ('stop' as const),
      })),
    };
  }
}

/** Least milliseconds between two `progress` events (the last request of a shard always sends one). */
const PROGRESS_EVERY_MS = 100;

/**
 * Appends whole lines to a shard's output file, coalescing the lines that finish while a
 * write is in flight into the next single write (one write per request cost a thread-pool
 * round trip each; at thousands of requests per second they add up). `append` resolves once
 * the line is in the file, so a shard is reported done only after all its lines are written;
 * every write holds only complete lines, so a crash leaves at most a torn last line, which
 * the next attempt cuts off (answeredIds).
 */
class LineAppender {
  private queued: string[] = [];
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;
  constructor(private readonly handle: fs.FileHandle) {}

  private failed: unknown = null;

  append(line: string): Promise<void> {
    if (this.failed) return Promise.reject(this.failed as Error);
    return new Promise((resolve, reject) => {
      this.queued.push(line);
      this.waiters.push({ resolve, reject });
      this.writing ??= this.drain();
    });
  }

  /** Waits for every queued line (errors were delivered to their `append` callers). */
  async settle(): Promise<void> {
    while (this.writing) await this.writing.catch(() => undefined);
  }

  private async drain(): Promise<void> {
    try {
      while (this.queued.length > 0) {
        const text = this.queued.join('');
        const waiters = this.waiters;
        this.queued = [];
        this.waiters = [];
        try {
          await this.handle.write(text);
        } catch (err) {
          // nothing more goes after a write that may have been torn
          this.failed = err;
          for (const w of [...waiters, ...this.waiters]) w.reject(err);
          this.queued = [];
          this.waiters = [];
          return;
        }
        for (const w of waiters) w.resolve();
      }
    } finally {
      this.writing = null;
    }
  }
}

/** Ids answered in an output file; a torn last line (no newline) is cut off first. */
export async function answeredIds(file: string): Promise<Set<string>> {
  let text = await fs.readFile(file, 'utf8').catch(() => '');
  if (text && !text.endsWith('\n')) {
    text = text.slice(0, text.lastIndexOf('\n') + 1);
    await fs.truncate(file, Buffer.byteLength(text));
  }
  const ids = new Set<string>();
  for (const line of text.split('\n')) if (line.trim()) ids.add((JSON.parse(line) as { id: string }).id);
  return ids;
}

function estimateTokens(text: string): number {
  return text === '' ? 0 : Math.max(1, Math.round(text.length / 4));
}

/**
 * usage.completion_tokens (one total for all choices) per choice: a choice that stopped at the
 * length limit used exactly `max` tokens; what is left is shared over the others in proportion to
 * their text's length, none over `max` (a real vLLM server showed 18 of 16 for a choice split by
 * length alone).
 */
function splitTokens(total: number, estimates: number[], estTotal: number, atLimit: boolean[] = [], max = Infinity): number[] {
  const out = estimates.map((_, i) => (atLimit[i] ? max : 0));
  const open = estimates.map((_, i) => i).filter((i) => !atLimit[i]);
  if (!open.length) return out;
  const left = Math.max(0, total - out.reduce((a, b) => a + b, 0));
  const est = atLimit.some(Boolean) ? open.reduce((a, i) => a + estimates[i]!, 0) : estTotal;
  for (const i of open) out[i] = Math.min(max, est === 0 ? Math.floor(left / open.length) : Math.floor((left * estimates[i]!) / est));
  let rest = left - open.reduce((a, i) => a + out[i]!, 0);
  for (let grew = true; rest > 0 && grew;) {
    grew = false;
    for (const i of open) {
      if (rest > 0 && out[i]! < max) {
        out[i]!++;
        rest--;
        grew = true;
      }
    }
  }
  return out;
}

function serverMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: string } | string; message?: string; detail?: string };
    const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message ?? j.detail);
    if (m) return String(m).slice(0, 500);
  } catch {
    // not JSON
  }
  return text.slice(0, 500);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * `ActivityDeps.engineFor` for configs with `compute.engine.kind: "openai"`: one OpenAICompute
 * per distinct engine settings (wrapping `wrapped` for training), reused across activities.
 */
export function openAIEngines(
  wrapped: ComputeBackend,
  env?: Record<string, string | undefined>,
): (config: RunConfig) => ComputeBackend | undefined {
  return enginesOfKind(
    'openai',
    (e) =>
      new OpenAICompute({
        baseUrl: e.baseUrl,
        model: e.model,
        ...(e.apiKeyEnv ? { apiKeyEnv: e.apiKeyEnv } : {}),
        concurrency: e.concurrency,
        timeoutSeconds: e.timeoutSeconds,
        maxRetries: e.maxRetries,
        wrapped,
        ...(env ? { env } : {}),
      }),
  );
}
