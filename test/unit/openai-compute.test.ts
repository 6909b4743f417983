/**
 * OpenAICompute against the stub OpenAI-compatible server (a stub, named so: it stands in
 * for vLLM): protocol (resume, torn lines, shard_done), the concurrency bound, retries,
 * context-length skips, cancellation and the API key.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ComputeEvent, GenerateJob, GenerateOutput, GenerateRequest } from '../../backends/compute';
import { OpenAICompute, type OpenAIComputeOptions, openAIEngines } from '../../backends/openai-compute';
import { RunConfig } from '../../core/schemas';
import { FakeCompute } from '../../testing/fake-compute';
import { startStubOpenAI, type StubServer } from '../helpers/stub-openai-server';

let stub: StubServer;
let tmp: string;

beforeAll(async () => {
  stub = await startStubOpenAI();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-openai-'));
});
afterAll(async () => {
  await stub.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  stub.failNext(0);
  stub.options.delayMs = 0;
  stub.maxInFlight = 0;
  stub.served = 0;
  stub.authHeaders.clear();
});

function engine(over: Partial<OpenAIComputeOptions> = {}): OpenAICompute {
  return new OpenAICompute({
    baseUrl: stub.url,
    model: 'stub-model',
    concurrency: 8,
    timeoutSeconds: 5,
    maxRetries: 3,
    backoffInitialMs: 5,
    backoffMaxMs: 20,
    wrapped: new FakeCompute(),
    ...over,
  });
}

function request(id: string, i: number, over: Partial<GenerateRequest> = {}): GenerateRequest {
  return i % 2 === 0
    ? {
        id,
        messages: [{ role: 'user', content: `question ${i}` }],
        n: 4,
        temperature: 0.7,
        top_p: 0.9,
        max_new_tokens: 64,
        seed: i,
        ...over,
      }
    : { id, prompt: `prompt ${i}`, n: 1, temperature: 0.6, top_p: 0.9, max_new_tokens: 64, seed: i, ...over };
}

let jobNo = 0;
/** `shards` shards of `per` requests each, written as request files. */
function makeJob(shards: number, per: number, mk = request): { job: GenerateJob; ids: string[] } {
  const dir = path.join(tmp, `job-${jobNo++}`);
  fs.mkdirSync(dir);
  const ids: string[] = [];
  const files = Array.from({ length: shards }, (_, k) => {
    const reqs = Array.from({ length: per }, (_, j) => mk(`r-${k}-${j}`, k * per + j));
    ids.push(...reqs.map((r) => r.id));
    const input = path.join(dir, `shard-${k}.requests.jsonl`);
    fs.writeFileSync(input, reqs.map((r) => JSON.stringify(r) + '\n').join(''));
    return { input, output: path.join(dir, `shard-${k}.outputs.jsonl`) };
  });
  return { job: { model: '/unused', shards: files, device: 'cpu', batch_size: 1, threads: 0 }, ids };
}

function lines(file: string): GenerateOutput[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as GenerateOutput);
}

function allOutputs(job: GenerateJob): GenerateOutput[] {
  return job.shards!.flatMap((s) => lines(s.output));
}

describe('OpenAICompute (stub server)', () => {
  it('answers every request once, with n outputs each, and reports shard_done per shard', async () => {
    const { job, ids } = makeJob(3, 20);
    const events: ComputeEvent[] = [];
    const done = await engine().generate(job, { onEvent: (e) => events.push(e) });
    const outs = allOutputs(job);
    expect(outs.map((o) => o.id).sort()).toEqual([...ids].sort());
    for (const o of outs) {
      expect(o.outputs).toHaveLength(Number(o.id.split('-')[2]) % 2 === 0 ? 4 : 1);
      for (const c of o.outputs) {
        expect(c.text.length).toBeGreaterThan(0);
        expect(c.finish_reason).toBe('stop');
        expect(c.tokens).toBeGreaterThan(0);
      }
    }
    // each shard's file is complete when its shard_done arrives
    const shardDone = events.filter((e) => e.event === 'shard_done').map((e) => e.shard as number);
    expect(shardDone.sort()).toEqual([0, 1, 2]);
    expect(done).toMatchObject({ event: 'done', done: 60, total: 60 });
    expect(done.tokens).toBe(outs.reduce((a, o) => a + o.outputs.reduce((b, c) => b + c.tokens, 0), 0));
    expect(events.filter((e) => e.event === 'progress').at(-1)).toMatchObject({ done: 60, total: 60 });
  });

  it('passes n through: chat requests get 4 choices, completions 1', async () => {
    const { job } = makeJob(1, 4);
    await engine().generate(job, {});
    const byId = new Map(allOutputs(job).map((o) => [o.id, o]));
    expect(byId.get('r-0-0')!.outputs).toHaveLength(4);
    expect(byId.get('r-0-1')!.outputs).toHaveLength(1);
    expect(new Set(byId.get('r-0-0')!.outputs.map((o) => o.text)).size).toBe(4);
  });

  it('signals shard_done only once every line of that shard is written', async () => {
    const { job } = makeJob(4, 10);
    const seen: number[] = [];
    await engine({ concurrency: 16 }).generate(job, {
      onEvent: (e) => {
        if (e.event === 'shard_done') seen.push(lines(job.shards![e.shard as number]!.output).length);
      },
    });
    expect(seen).toEqual([10, 10, 10, 10]);
  });

  it('skips ids already in the output file and repairs a torn last line', async () => {
    const { job, ids } = makeJob(2, 10);
    const first = job.shards![0]!;
    const kept = [{ id: 'r-0-0', outputs: [{ text: 'earlier', tokens: 1, finish_reason: 'stop' }] }];
    fs.writeFileSync(first.output, JSON.stringify(kept[0]) + '\n' + '{"id":"r-0-1","outputs":[{"te');
    // the second shard is already complete: no request of it is sent
    fs.writeFileSync(
      job.shards![1]!.output,
      ids
        .slice(10)
        .map((id) => JSON.stringify({ id, outputs: [] }) + '\n')
        .join(''),
    );
    const events: ComputeEvent[] = [];
    await engine().generate(job, { onEvent: (e) => events.push(e) });
    const outs = lines(first.output);
    expect(outs.map((o) => o.id).sort()).toEqual(ids.slice(0, 10).sort());
    expect(outs[0]!.outputs[0]!.text).toBe('earlier');
    expect(stub.served).toBe(9);
    expect(
      events
        .filter((e) => e.event === 'shard_done')
        .map((e) => e.shard)
        .sort(),
    ).toEqual([0, 1]);
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    stub.options.delayMs = 20;
    const { job } = makeJob(4, 25);
    await engine({ concurrency: 5 }).generate(job, {});
    expect(stub.served).toBe(100);
    expect(stub.maxInFlight).toBeLessThanOrEqual(5);
    expect(stub.maxInFlight).toBeGreaterThanOrEqual(4);
  });

  it('retries 500 and 429 answers, then succeeds', async () => {
    for (const status of [500, 429]) {
      stub.failNext(5, status);
      const { job, ids } = makeJob(1, 6);
      const done = await engine({ concurrency: 2, maxRetries: 5 }).generate(job, {});
      expect(
        allOutputs(job)
          .map((o) => o.id)
          .sort(),
      ).toEqual([...ids].sort());
      expect(done.retries).toBe(5);
    }
  });

  it('gives up after maxRetries with a retryable error naming the request', async () => {
    stub.failNext(100, 503);
    const { job } = makeJob(1, 1);
    const err = await engine({ maxRetries: 2 })
      .generate(job, {})
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'ComputeFailed', nonRetryable: false });
    expect(String((err as Error).message)).toMatch(/request r-0-0 failed after 3 attempts: HTTP 503: stub: injected 503/);
    expect(stub.served).toBe(3);
  });

  it('retries a request that times out', async () => {
    stub.options.delayMs = 1500;
    const { job } = makeJob(1, 1);
    const err = await engine({ timeoutSeconds: 0.2, maxRetries: 1 })
      .generate(job, {})
      .catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/request r-0-0 failed after 2 attempts: timed out/);
  });

  it('retries connection errors', async () => {
    const { job } = makeJob(1, 1);
    const gone = await startStubOpenAI();
    await gone.close();
    const err = await engine({ baseUrl: gone.url, maxRetries: 1 })
      .generate(job, {})
      .catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/request r-0-0 failed after 2 attempts: connection error: ECONNREFUSED/);
  });

  it('fails at once on a 4xx other than 408/429, naming the request and the server message', async () => {
    const { job } = makeJob(1, 3);
    const err = await engine({ baseUrl: stub.url.replace('/v1', '/nope') })
      .generate(job, {})
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'InvalidComputeInput', nonRetryable: true });
    expect(String((err as Error).message)).toMatch(/request r-0-\d rejected with HTTP 404: stub: no route/);
  });

  it('writes a context-length 400 as skipped prompt_too_long', async () => {
    const { job } = makeJob(1, 4, (id, i) => request(id, i, i === 2 ? { messages: [{ role: 'user', content: 'STUB_TOO_LONG' }] } : {}));
    const done = await engine().generate(job, {});
    const skipped = allOutputs(job).filter((o) => o.skipped);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ id: 'r-0-2', outputs: [] });
    expect(skipped[0]!.skipped).toMatch(/^prompt_too_long: This model's maximum context length/);
    expect(done.skipped_too_long).toBe(1);
  });

  it('stops within a second of an abort and throws', async () => {
    stub.options.delayMs = 5000;
    const { job } = makeJob(1, 20);
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 200);
    await expect(engine({ concurrency: 4 }).generate(job, { signal: ac.signal })).rejects.toThrow(/cancelled/);
    expect(Date.now() - t0).toBeLessThan(1200);
    expect(fs.existsSync(job.shards![0]!.output) ? lines(job.shards![0]!.output) : []).toHaveLength(0);
  });

  it('sends the API key from the named variable as a Bearer token and never shows it in errors', async () => {
    const key = 'sk-test-SECRET-123456';
    const env = { SRLM_TEST_API_KEY: key };
    const { job } = makeJob(1, 2);
    await engine({ apiKeyEnv: 'SRLM_TEST_API_KEY', env }).generate(job, {});
    expect([...stub.authHeaders]).toEqual([`Bearer ${key}`]);

    // a server that echoes the key back in its error message
    const { job: bad } = makeJob(1, 1);
    const err = await engine({ apiKeyEnv: 'SRLM_TEST_API_KEY', env, baseUrl: `${stub.url}/${key}` })
      .generate(bad, {})
      .catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/HTTP 404/);
    expect(String((err as Error).message)).not.toContain(key);
    expect(String((err as Error).message)).toContain('***');

    const unset = await engine({ apiKeyEnv: 'SRLM_TEST_UNSET_API_KEY', env: {} })
      .generate(bad, {})
      .catch((e: unknown) => e);
    expect(unset).toMatchObject({ nonRetryable: true });
    expect(String((unset as Error).message)).toMatch(/SRLM_TEST_UNSET_API_KEY/);
  });

  it('refuses, before any request, a key variable outside the allowlist or a destination the key must not reach', async () => {
    const env = { AWS_SECRET_ACCESS_KEY: 'aws-secret', TEMPORAL_API_KEY: 'tmprl-secret', SRLM_JUDGE_API_KEY: 'sk-ok', CORP_TOKEN: 'corp' };
    const refused: [Partial<OpenAIComputeOptions>, RegExp][] = [
      [{ apiKeyEnv: 'AWS_SECRET_ACCESS_KEY' }, /"AWS_SECRET_ACCESS_KEY" is not an allowed API key variable/],
      [{ apiKeyEnv: 'TEMPORAL_API_KEY' }, /"TEMPORAL_API_KEY" is not an allowed/],
      [{ apiKeyEnv: 'CORP_TOKEN' }, /SRLM_ALLOWED_KEY_ENVS/],
      [{ apiKeyEnv: 'SRLM_JUDGE_API_KEY', baseUrl: 'http://judge.example.com:8000/v1' }, /only over https/],
      [{ apiKeyEnv: 'SRLM_JUDGE_API_KEY', baseUrl: stub.url.replace('http://', 'http://user:pass@') }, /user:password@/],
    ];
    for (const [opts, message] of refused) {
      const { job } = makeJob(1, 1);
      const err = await engine({ env, ...opts })
        .generate(job, {})
        .catch((e: unknown) => e);
      expect(err, JSON.stringify(opts)).toMatchObject({ nonRetryable: true });
      expect(String((err as Error).message)).toMatch(message);
      expect(String((err as Error).message)).not.toMatch(/secret|sk-ok|corp"/);
    }
    expect(stub.authHeaders.size).toBe(0);
    // the worker's own SRLM_ALLOWED_KEY_ENVS extends the allowlist; http to loopback is fine
    const { job } = makeJob(1, 1);
    await engine({ apiKeyEnv: 'CORP_TOKEN', env: { ...env, SRLM_ALLOWED_KEY_ENVS: 'CORP_*' } }).generate(job, {});
    expect([...stub.authHeaders]).toEqual(['Bearer corp']);
  });

  it('delegates train and importModel to the wrapped backend', async () => {
    const wrapped = new FakeCompute();
    const out = path.join(tmp, 'imported');
    await engine({ wrapped }).importModel({ packaged: 'x', output: out }, {});
    expect(wrapped.calls.map((c) => c.kind)).toEqual(['import']);
  });

  it('openAIEngines: one engine per engine settings, none for local or absent engines', () => {
    const pick = openAIEngines(new FakeCompute());
    const cfg = (engine?: unknown) => RunConfig.parse({ run: 'r', seed: { ift: 'x.jsonl' }, compute: engine ? { engine } : {} });
    expect(pick(cfg())).toBeUndefined();
    expect(pick(cfg({ kind: 'local' }))).toBeUndefined();
    const a = pick(cfg({ kind: 'openai', baseUrl: stub.url, model: 'm' }));
    expect(a).toBeInstanceOf(OpenAICompute);
    expect(pick(cfg({ kind: 'openai', baseUrl: stub.url, model: 'm' }))).toBe(a);
    expect(pick(cfg({ kind: 'openai', baseUrl: stub.url, model: 'm', concurrency: 3 }))).not.toBe(a);
  });
});
