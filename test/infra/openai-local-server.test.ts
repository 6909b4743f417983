/**
 * OpenAICompute against a real OpenAI-compatible server: `python -m srlm_compute serve` on the
 * packaged SmolLM2-135M-Instruct (imported into the cache once, like a run does), on CPU. The
 * engine's requests are answered by the local engine's real generation: every request once
 * with real text and token counts, the concurrency bound seen by the server, a 503 and a
 * connection reset (from the fault proxy) retried, and a prompt over the model's context
 * (8192) written as `skipped: prompt_too_long`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputeEvent, GenerateJob, GenerateOutput, GenerateRequest } from '../../backends/compute';
import { OpenAICompute, type OpenAIComputeOptions } from '../../backends/openai-compute';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { FakeCompute } from '../../testing/fake-compute';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy';
import { packagedModel } from '../../testing/packaged-model';

const MODEL = 'smollm2-135m-instruct';
const MAX_TOKENS = 8;

let tmp: string;
let server: ChildProcess;
let serverLog = '';
let port: number;
let proxy: FaultProxy;

/** The packaged model as a run gets it: converted once into `<cacheDir>/models/<name>`. */
async function startServer(python: string, model: string): Promise<number> {
  server = spawn(
    python,
    ['-m', 'srlm_compute', 'serve', '--model', model, '--port', '0', '--device', 'cpu', '--batch-size', '8', '--threads', '2'],
    {
      cwd: repoRoot(),
      env: { ...process.env, PYTHONPATH: path.join(repoRoot(), 'compute') },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  server.stderr!.on('data', (d: Buffer) => (serverLog = (serverLog + d.toString()).slice(-8000)));
  const lines = readline.createInterface({ input: server.stdout! });
  return new Promise((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening: ${serverLog}`)));
    lines.on('line', (line) => {
      const ev = JSON.parse(line) as { event: string; port?: number };
      if (ev.event === 'listening') resolve(ev.port!);
    });
  });
}

async function api<T>(p: string, method = 'GET'): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}/v1${p}`, { method });
  return (await res.json()) as T;
}

interface Stats {
  requests: number;
  in_flight: number;
  max_in_flight: number;
  batches: number;
  max_batch_rows: number;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-openai-local-'));
  const env = loadEnvPaths();
  port = await startServer(env.python, packagedModel(env.python, env.cacheDir, tmp, MODEL));
  proxy = await startFaultProxy({ host: '127.0.0.1', port });
}, 240_000);

afterAll(async () => {
  await proxy?.stop();
  if (server && server.exitCode === null) {
    const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
    server.kill('SIGTERM');
    expect(await exited).toBe(0); // clean shutdown on SIGTERM
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

function engine(over: Partial<OpenAIComputeOptions> = {}): OpenAICompute {
  return new OpenAICompute({
    baseUrl: `http://127.0.0.1:${port}/v1`,
    model: MODEL,
    concurrency: 3,
    timeoutSeconds: 60,
    maxRetries: 3,
    backoffInitialMs: 20,
    backoffMaxMs: 100,
    wrapped: new FakeCompute(),
    ...over,
  });
}

let jobNo = 0;
function makeJob(reqs: GenerateRequest[], shards = 2): GenerateJob {
  const dir = path.join(tmp, `job-${jobNo++}`);
  fs.mkdirSync(dir);
  const per = Math.ceil(reqs.length / shards);
  const files = Array.from({ length: shards }, (_, k) => {
    const input = path.join(dir, `shard-${k}.requests.jsonl`);
    fs.writeFileSync(
      input,
      reqs
        .slice(k * per, (k + 1) * per)
        .map((r) => JSON.stringify(r) + '\n')
        .join(''),
    );
    return { input, output: path.join(dir, `shard-${k}.outputs.jsonl`) };
  });
  return { model: '/unused', shards: files, device: 'cpu', batch_size: 1, threads: 0 };
}

function request(id: string, i: number): GenerateRequest {
  return i % 2 === 0
    ? {
        id,
        messages: [{ role: 'user', content: `Name a colour. (${i})` }],
        n: 2,
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: MAX_TOKENS,
        seed: i,
      }
    : { id, prompt: `The number ${i} is`, n: 1, temperature: 0.7, top_p: 0.9, max_new_tokens: MAX_TOKENS, seed: i };
}

function outputs(job: GenerateJob): GenerateOutput[] {
  return job.shards!.flatMap((s) =>
    fs
      .readFileSync(s.output, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as GenerateOutput),
  );
}

function expectComplete(job: GenerateJob, ids: string[]): void {
  const outs = outputs(job);
  expect(outs.map((o) => o.id).sort()).toEqual([...ids].sort()); // each answered once
  for (const o of outs) {
    expect(o.skipped).toBeUndefined();
    expect(o.outputs).toHaveLength(Number(o.id.split('-')[1]) % 2 === 0 ? 2 : 1);
    for (const c of o.outputs) expect(['stop', 'length']).toContain(c.finish_reason);
    // the server's usage.completion_tokens is the request's total (stop tokens included); with
    // n > 1 the engine apportions it over the choices by their text lengths
    const tokens = o.outputs.reduce((a, c) => a + c.tokens, 0);
    expect(tokens).toBeGreaterThanOrEqual(o.outputs.length);
    expect(tokens).toBeLessThanOrEqual(o.outputs.length * MAX_TOKENS);
    if (o.outputs.length === 1 && o.outputs[0]!.finish_reason === 'length') expect(tokens).toBe(MAX_TOKENS);
  }
  // real text: the model writes something for (nearly) every sample
  const texts = outs.flatMap((o) => o.outputs.map((c) => c.text));
  expect(texts.filter((t) => t.trim().length > 0).length).toBeGreaterThanOrEqual(texts.length - 1);
}

describe('OpenAICompute against `python -m srlm_compute serve` (real model)', () => {
  it('lists the served model', async () => {
    const models = await api<{ data: { id: string }[] }>('/models');
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('answers every request once with real text and token counts, within the concurrency bound', async () => {
    await api('/srlm/stats/reset', 'POST');
    const ids = Array.from({ length: 9 }, (_, i) => `r-${i}`);
    const job = makeJob(ids.map((id, i) => request(id, i)));
    const events: ComputeEvent[] = [];
    const done = await engine({ concurrency: 3 }).generate(job, { onEvent: (e) => events.push(e) });
    expectComplete(job, ids);
    const outs = outputs(job);
    expect(done).toMatchObject({ event: 'done', done: 9, total: 9, skipped: 0, retries: 0 });
    expect(done.tokens).toBe(outs.reduce((a, o) => a + o.outputs.reduce((b, c) => b + c.tokens, 0), 0));
    expect(events.filter((e) => e.event === 'shard_done')).toHaveLength(2);
    const stats = await api<Stats>('/srlm/stats');
    expect(stats.requests).toBe(9); // no request sent twice
    expect(stats.in_flight).toBe(0);
    expect(stats.max_in_flight).toBeLessThanOrEqual(3);
    expect(stats.max_in_flight).toBeGreaterThanOrEqual(2); // and the engine did use the pool
  }, 60_000);

  it('retries a 503 and a connection reset through the fault proxy; the outputs still complete', async () => {
    await api('/srlm/stats/reset', 'POST');
    proxy.clear();
    // the first two connections: one gets a 503 without reaching the server, one is reset
    // inside its request headers (the server never sees a whole request)
    proxy.inject({ kind: 'status', status: 503 });
    proxy.inject({ kind: 'reset', afterBytes: 60 });
    const ids = Array.from({ length: 4 }, (_, i) => `f-${i}`);
    const job = makeJob(
      ids.map((id, i) => request(id, i)),
      1,
    );
    const done = await engine({ baseUrl: `${proxy.endpoint}/v1`, concurrency: 2 }).generate(job, {});
    expect(proxy.faultsInjected.status).toBe(1);
    expect(proxy.faultsInjected.reset).toBe(1);
    expect(proxy.pending()).toBe(0);
    expect(done.retries).toBe(2);
    expectComplete(job, ids);
    const stats = await api<Stats>('/srlm/stats');
    expect(stats.requests).toBe(4); // the failed attempts never reached generation
  }, 60_000);

  it('writes a prompt over the model context as skipped: prompt_too_long', async () => {
    const long: GenerateRequest = {
      id: 'r-long',
      prompt: 'word '.repeat(9000),
      n: 1,
      temperature: 0.7,
      top_p: 0.9,
      max_new_tokens: MAX_TOKENS,
      seed: 1,
    };
    const job = makeJob([long, request('r-1', 1)], 1);
    const done = await engine().generate(job, {});
    const byId = new Map(outputs(job).map((o) => [o.id, o]));
    expect(byId.get('r-long')).toMatchObject({ outputs: [] });
    expect(byId.get('r-long')!.skipped).toMatch(/^prompt_too_long: .*maximum context length is 8192 tokens/);
    expect(byId.get('r-1')!.outputs).toHaveLength(1);
    expect(done).toMatchObject({ skipped: 1, skipped_too_long: 1, done: 2 });
  }, 60_000);
});
