/**
 * A STUB OpenAI-compatible server for tests and benchmarks: it stands in for vLLM (which
 * cannot run here) and never loads a model. It answers `/v1/chat/completions` and
 * `/v1/completions` at once and deterministically (from a hash of the request):
 * self-instruct requests (the prompt ends with a `Task n:` cue, core/selfInstruct.ts) get a
 * few distinct made-up instructions as `Task n:` items, judge requests (core/rubric.ts
 * judgePrompt) a short justification ending in `Score: <0-5>`, anything else a short answer.
 *
 * Faults for tests: `failNext(k, status)` (or header `x-stub-fail: <status>`), a delay per
 * response, and a context-length 400 for prompts containing `STUB_TOO_LONG`. Counters:
 * requests served, completions generated (the sum of `n`), most requests in flight at once, Authorization headers seen (`GET /stats`
 * gives the first two, for a stub in another process).
 *
 * As a process: `node --import tsx test/helpers/stub-openai-server.ts --port 0 [--delay-ms N]`
 * prints `listening <port>`.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

const WORDS = (
  'tides interest photosynthesis bicycle sourdough volcano jetlag printing vaccine solar chess coral inflation migration rainbow ' +
  'market blackhole plastic sleep honeybee battery glacier caffeine immune turbine earthquake fermentation credit moonlanding tea ' +
  'origami lighthouse compost telescope violin marathon saffron bridge desert rainforest submarine yoga pottery algebra orchestra ' +
  'kite canal penguin cathedral mushroom satellite bakery hurricane library lantern quilt tornado vineyard windmill ferry ' +
  'glacier2 canyon ballet robot puzzle volleyball harbor meteor pigment carnival beetle compass tapestry fjord galaxy pendulum'
).split(' ');
const VERBS = ['Explain', 'Summarize', 'Describe', 'Compare', 'Outline', 'Critique', 'Illustrate', 'Teach', 'Evaluate', 'Narrate'];
const AUDIENCES = [
  'children',
  'managers',
  'retirees',
  'students',
  'tourists',
  'engineers',
  'parents',
  'poets',
  'chefs',
  'sailors',
  'nurses',
  'farmers',
];

export interface StubOptions {
  /** milliseconds before each answer */
  delayMs?: number;
}

export interface StubServer {
  port: number;
  url: string;
  /** requests answered (any status) */
  served: number;
  /** completions generated: the sum of `n` over the requests answered with 200 */
  generations: number;
  /** most requests in flight at once */
  maxInFlight: number;
  inFlight: number;
  /** Authorization headers received */
  authHeaders: Set<string>;
  /** the next k requests answer `status` (500, 429, ...) */
  failNext(k: number, status?: number): void;
  options: StubOptions;
  close(): Promise<void>;
}

function h32(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('|')).digest().readUInt32BE(0);
}

function pick<T>(xs: readonly T[], h: number): T {
  return xs[h % xs.length]!;
}

/** The generated text for one choice of a request. */
export function stubAnswer(prompt: string, seed: number, choice: number): string {
  const h = h32(prompt, seed, choice);
  const cue = /Task (\d+):\s*$/.exec(prompt);
  if (cue) {
    const first = Number(cue[1]);
    const items = [0, 1, 2].map((j) => {
      const g = h32(prompt, seed, choice, j);
      const w = [0, 1, 2, 3, 4, 5].map((i) => pick(WORDS, h32(g, i)));
      return `${pick(VERBS, g >>> 3)} the ${w[0]} ${w[1]} ${w[2]} of ${w[3]} ${w[4]} for ${pick(AUDIENCES, g >>> 11)} near a ${w[5]}.`;
    });
    return ` ${items[0]}\n\nTask ${first + 1}: ${items[1]}\n\nTask ${first + 2}: ${items[2]}`;
  }
  if (prompt.includes('"Score: <points>"')) return `The response is on topic and mostly complete (stub judge).\nScore: ${h % 6}`;
  return `Stub answer ${h % 997}: ${pick(WORDS, h)} matters because of ${pick(WORDS, h >>> 8)}${' and more'.repeat((h >>> 16) % 4)}.`;
}

export async function startStubOpenAI(options: StubOptions = {}, port = 0): Promise<StubServer> {
  let failures: { left: number; status: number } = { left: 0, status: 500 };
  const server = http.createServer((req, res) => {
    stub.inFlight++;
    stub.maxInFlight = Math.max(stub.maxInFlight, stub.inFlight);
    let closed = false;
    const finish = (status: number, body: unknown): void => {
      if (closed) return;
      closed = true;
      stub.inFlight--;
      stub.served++;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    res.on('close', () => {
      if (!closed) {
        closed = true;
        stub.inFlight--;
      }
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (typeof req.headers.authorization === 'string') stub.authHeaders.add(req.headers.authorization);
      if (req.method === 'GET' && req.url === '/stats') {
        stub.served--; // not a generation request
        return finish(200, { served: stub.served, generations: stub.generations, maxInFlight: stub.maxInFlight });
      }
      const answer = (): void => {
        const forced = Number(req.headers['x-stub-fail'] ?? 0);
        if (forced) return finish(forced, { error: { message: `stub: forced ${forced}` } });
        if (failures.left > 0) {
          failures.left--;
          return finish(failures.status, { error: { message: `stub: injected ${failures.status}`, type: 'server_error' } });
        }
        const chat = req.url === '/v1/chat/completions';
        if (!chat && req.url !== '/v1/completions') return finish(404, { error: { message: `stub: no route ${req.url}` } });
        let body: { messages?: { content: string }[]; prompt?: string; n?: number; seed?: number; max_tokens?: number; model?: string };
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          return finish(400, { error: { message: 'stub: body is not JSON', type: 'invalid_request_error' } });
        }
        const prompt = chat ? (body.messages ?? []).map((m) => m.content).join('\n') : (body.prompt ?? '');
        if (prompt.includes('STUB_TOO_LONG')) {
          return finish(400, {
            error: {
              message: "This model's maximum context length is 2048 tokens. However, you requested 9999 tokens.",
              type: 'invalid_request_error',
              code: 'context_length_exceeded',
            },
          });
        }
        const n = body.n ?? 1;
        stub.generations += n;
        const texts = Array.from({ length: n }, (_, i) => stubAnswer(prompt, body.seed ?? 0, i));
        const completion = texts.reduce((a, t) => a + t.split(/\s+/).length, 0);
        finish(200, {
          id: `stub-${h32(prompt, body.seed ?? 0)}`,
          object: chat ? 'chat.completion' : 'text_completion',
          model: body.model,
          choices: texts.map((t, index) =>
            chat ? { index, message: { role: 'assistant', content: t }, finish_reason: 'stop' } : { index, text: t, finish_reason: 'stop' },
          ),
          usage: { prompt_tokens: prompt.split(/\s+/).length, completion_tokens: completion, total_tokens: completion },
        });
      };
      const delay = stub.options.delayMs ?? 0;
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  const stub: StubServer = {
    port: 0,
    url: '',
    served: 0,
    generations: 0,
    maxInFlight: 0,
    inFlight: 0,
    authHeaders: new Set(),
    options: { ...options },
    failNext(k, status = 500) {
      failures = { left: k, status };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  stub.port = (server.address() as AddressInfo).port;
  stub.url = `http://127.0.0.1:${stub.port}/v1`;
  return stub;
}

if (process.argv[1] && /stub-openai-server\.[tj]s$/.test(process.argv[1])) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  void startStubOpenAI({ delayMs: Number(arg('--delay-ms') ?? 0) }, Number(arg('--port') ?? 0)).then((s) => {
    console.log(`listening ${s.port}`);
    const stop = (): void => void s.close().then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
