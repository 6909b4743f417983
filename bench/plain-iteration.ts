/**
 * The simplest alternative to the durable pipeline that a user would write for bench:scale's
 * iteration: one async loop per stage over the same OpenAI-compatible server, the same HTTP
 * client and concurrency as the openai engine, and the same core/ logic (self-instruct
 * prompts and parsing, the ROUGE-L filter, the judge prompt and score parser, best-vs-worst
 * pairs with ties dropped) — everything in memory: no Temporal, no store, no shards, no
 * resume after a crash.
 */
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import { HttpClient } from '../backends/openai-compute';
import { InstructionFilter } from '../core/filters';
import { judgePrompt, parseJudgeScore } from '../core/rubric';
import { buildSelfInstructRequest, mulberry32, parseGeneratedInstructions, sample } from '../core/selfInstruct';

export interface PlainIterationOptions {
  baseUrl: string;
  seedIft: string;
  prompts: number;
  requestsPerRound: number;
  maxRounds: number;
  n: number;
  samples: number;
  concurrency: number;
}

export interface PlainIterationResult {
  seconds: number;
  stages: { name: string; seconds: number }[];
  requests: number;
  generations: number;
  prompts: number;
  pairs: number;
}

export async function plainIteration(o: PlainIterationOptions): Promise<PlainIterationResult> {
  const http = new HttpClient(o.concurrency);
  const never = new AbortController().signal;
  setMaxListeners(o.concurrency + 10, never);
  const headers = { 'content-type': 'application/json' };
  let requests = 0;
  let generations = 0;
  const call = async (path: string, body: Record<string, unknown>, n: number): Promise<string[]> => {
    const res = await http.post(
      `${o.baseUrl}${path}`,
      JSON.stringify({ model: 'stub', n, temperature: 0.7, top_p: 0.9, max_tokens: 256, ...body }),
      headers,
      60_000,
      never,
    );
    if (res.status !== 200) throw new Error(`plain iteration: HTTP ${res.status}: ${res.text.slice(0, 200)}`);
    const choices = (JSON.parse(res.text) as { choices: { index: number; text?: string; message?: { content: string } }[] }).choices;
    requests++;
    generations += choices.length;
    return choices.sort((a, b) => a.index - b.index).map((c) => c.text ?? c.message?.content ?? '');
  };
  /** runs `fn` over `items` with `concurrency` in flight, results in input order */
  const pool = async <T, R>(items: readonly T[], fn: (item: T, i: number) => Promise<R>): Promise<R[]> => {
    const out: R[] = new Array(items.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(o.concurrency, items.length) }, async () => {
        while (next < items.length) {
          const i = next++;
          out[i] = await fn(items[i]!, i);
        }
      }),
    );
    return out;
  };

  const stages: { name: string; seconds: number }[] = [];
  const t0 = Date.now();
  let mark = t0;
  const stage = (name: string): void => {
    const now = Date.now();
    stages.push({ name, seconds: (now - mark) / 1000 });
    mark = now;
  };

  const seed = fs
    .readFileSync(o.seedIft, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => (JSON.parse(l) as { prompt: string }).prompt);
  const filter = new InstructionFilter(seed, 0.7);
  const rng = mulberry32(1);
  const kept: string[] = [];
  for (let round = 0; round < o.maxRounds && kept.length < o.prompts; round++) {
    const asks = Array.from({ length: o.requestsPerRound }, () => buildSelfInstructRequest(sample(seed, Math.min(8, seed.length), rng)));
    const answers = await pool(asks, (prompt, i) => call('/completions', { prompt, seed: round * o.requestsPerRound + i }, 1));
    for (const [text] of answers) {
      for (const instruction of parseGeneratedInstructions(text!)) {
        if (kept.length >= o.prompts) break;
        const d = filter.consider(instruction);
        if (d.kept) kept.push(d.instruction);
      }
    }
  }
  stage('prompts');
  const candidates = await pool(kept, (prompt, i) =>
    call('/chat/completions', { messages: [{ role: 'user', content: prompt }], seed: i }, o.n),
  );
  stage('candidates');
  const flat = kept.flatMap((prompt, p) => candidates[p]!.map((text) => ({ prompt: p, text })));
  const scores = await pool(flat, async (c, i) => {
    const texts = await call(
      '/chat/completions',
      { messages: [{ role: 'user', content: judgePrompt(kept[c.prompt]!, c.text) }], seed: i },
      o.samples,
    );
    const got = texts.map((t) => parseJudgeScore(t).score).filter((s): s is number => s !== null);
    return got.length > 0 ? got.reduce((a, b) => a + b, 0) / got.length : null;
  });
  stage('judgments');
  let pairs = 0;
  for (let p = 0; p < kept.length; p++) {
    const mine = scores.slice(p * o.n, (p + 1) * o.n).filter((s): s is number => s !== null);
    if (mine.length >= 2 && Math.max(...mine) > Math.min(...mine)) pairs++;
  }
  stage('pairs');
  return { seconds: (Date.now() - t0) / 1000, stages, requests, generations, prompts: kept.length, pairs };
}
