/**
 * FakeCompute: a FAKE compute backend for orchestration tests. It never loads a model: it
 * answers generation requests with deterministic text of the right shape (self-instruct
 * continuations, answers, judge texts ending in a score line) and "trains" by writing a
 * checkpoint whose bytes depend on the data. Tests of the real model use PythonCompute.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { ComputeBackend, ComputeEvent, GenerateJob, GenerateRequest, ImportJob, RunControl, TrainJob } from '../backends/compute';

const SUBJECTS = [
  'tides',
  'compound interest',
  'photosynthesis',
  'a bicycle gear',
  'sourdough',
  'volcanoes',
  'jet lag',
  'the printing press',
  'vaccines',
  'solar panels',
  'chess openings',
  'coral reefs',
  'inflation',
  'bird migration',
  'rainbows',
  'the stock market',
  'black holes',
  'recycling plastics',
  'sleep cycles',
  'honeybees',
  'electric cars',
  'glaciers',
  'caffeine',
  'the immune system',
  'wind turbines',
  'earthquakes',
  'fermentation',
  'credit scores',
  'the moon landing',
  'tea ceremonies',
];
const AUDIENCES = [
  'a ten-year-old',
  'a busy manager',
  'a retired teacher',
  'a first-year student',
  'a tourist',
  'a skeptical engineer',
  'a new parent',
  'a poet',
  'a chef',
  'a sailor',
];
const VERBS = [
  'Explain',
  'Summarize the main facts about',
  'Give three practical tips related to',
  'Describe the history of',
  'List common myths about',
  'Compare two viewpoints on',
];

export function hashInt(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('|')).digest().readUInt32BE(0);
}

export interface FakeComputeOptions {
  /** fraction (0..1) of judge outputs without a parsable score */
  judgeParseFailureRate?: number;
  /** every judge output gets this score (forces ties: no pairs) */
  constantScore?: number;
  /** fraction (0..1) of answer requests the engine skips as longer than the model's context */
  tooLongRate?: number;
  /** fraction (0..1) of answers that come back empty */
  emptyAnswerRate?: number;
  /** milliseconds to wait per request, to make runs observable/cancellable */
  delayPerRequestMs?: number;
  /** every generated request id is appended here (to count work done, and redone) */
  logFile?: string;
  /**
   * head-to-head judge prompts (core/eval.ts pairwiseJudgePrompt): always this verdict, or
   * "longer" for the longer response (A on equal length); default "longer"
   */
  pairwiseVerdict?: 'A' | 'B' | 'longer';
}

export class FakeCompute implements ComputeBackend {
  readonly name = 'fake';
  readonly calls: { kind: string; job: unknown }[] = [];
  /** generate calls that stopped because their signal was aborted */
  aborted = 0;
  /** generate calls running now, and the most that ever ran at once */
  inFlight = 0;
  maxInFlight = 0;
  constructor(readonly opts: FakeComputeOptions = {}) {}

  private content(r: GenerateRequest): string {
    return r.messages?.map((m) => m.content).join('\n') ?? r.prompt ?? '';
  }

  private respond(r: GenerateRequest, sample: number): string {
    const text = this.content(r);
    const h = hashInt(r.id, sample, r.seed);
    if (text.includes('Task 9:')) {
      const verb = VERBS[h % VERBS.length]!;
      const subject = SUBJECTS[(h >>> 8) % SUBJECTS.length]!;
      const audience = AUDIENCES[(h >>> 16) % AUDIENCES.length]!;
      return ` ${verb} ${subject} for ${audience}, using an example from ${SUBJECTS[(h >>> 4) % SUBJECTS.length]}.`;
    }
    if (text.includes('<response_a>')) {
      const mode = this.opts.pairwiseVerdict ?? 'longer';
      const a = /<response_a>\n([\s\S]*?)\n<\/response_a>/.exec(text)?.[1] ?? '';
      const b = /<response_b>\n([\s\S]*?)\n<\/response_b>/.exec(text)?.[1] ?? '';
      const verdict = mode === 'longer' ? (b.length > a.length ? 'B' : 'A') : mode;
      return `Both answers address the request (fake judge).\nVerdict: ${verdict}`;
    }
    if (text.includes('Score:')) {
      if (this.opts.constantScore !== undefined) return `The answer is on topic.\nScore: ${this.opts.constantScore}`;
      if ((h % 1000) / 1000 < (this.opts.judgeParseFailureRate ?? 0)) return 'The response is fine but I will not give a number.';
      return `The response addresses the question (fake judge).\nScore: ${h % 6}`;
    }
    if ((h % 997) / 997 < (this.opts.emptyAnswerRate ?? 0)) return '';
    return `Here is a fake answer number ${h % 97} about the request, with ${'detail '.repeat((h >>> 3) % 5)}included.`;
  }

  /**
   * Like the real engine: one output line appended per finished request, ids already in an
   * output file skipped (a torn last line cut first), `shard_done` after each shard.
   */
  async generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return await this.generateNow(job, ctl);
    } finally {
      this.inFlight--;
    }
  }

  private async generateNow(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    this.calls.push({ kind: 'generate', job });
    const shards = job.shards ?? [{ input: job.input!, output: job.output! }];
    const all = await Promise.all(
      shards.map(async (s) =>
        (await fs.readFile(s.input, 'utf8'))
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as GenerateRequest),
      ),
    );
    const total = all.reduce((n, r) => n + r.length, 0);
    let done = 0;
    let tokens = 0;
    for (const [k, s] of shards.entries()) {
      let existing = await fs.readFile(s.output, 'utf8').catch(() => '');
      if (existing && !existing.endsWith('\n')) {
        existing = existing.slice(0, existing.lastIndexOf('\n') + 1);
        await fs.writeFile(s.output, existing);
      }
      const have = new Set(
        existing
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => (JSON.parse(l) as { id: string }).id),
      );
      for (const r of all[k]!) {
        if (have.has(r.id)) {
          done++;
          continue;
        }
        if (ctl.signal?.aborted) {
          this.aborted++;
          throw new Error('fake generate cancelled');
        }
        if (this.opts.delayPerRequestMs) await new Promise((res) => setTimeout(res, this.opts.delayPerRequestMs));
        const content = this.content(r);
        const isAnswer = !content.includes('Task 9:') && !content.includes('Score:') && !content.includes('<response_a>');
        if (isAnswer && (hashInt('long', r.id) % 1000) / 1000 < (this.opts.tooLongRate ?? 0)) {
          await fs.appendFile(s.output, JSON.stringify({ id: r.id, outputs: [], skipped: 'prompt_too_long: fake context limit' }) + '\n');
          done++;
          continue;
        }
        const outputs = Array.from({ length: r.n }, (_, i) => {
          const text = this.respond(r, i);
          const t = text.split(/\s+/).length;
          tokens += t;
          return { text, tokens: t, finish_reason: 'stop' as const };
        });
        // logged when generated, before it is written: a request whose line never landed counts as redone work
        if (this.opts.logFile) await fs.appendFile(this.opts.logFile, r.id + '\n');
        await fs.appendFile(s.output, JSON.stringify({ id: r.id, outputs }) + '\n');
        done++;
        ctl.onEvent?.({ event: 'progress', shard: k, done, total, tokens });
      }
      ctl.onEvent?.({ event: 'shard_done', shard: k, requests: all[k]!.length, output: s.output });
    }
    const ev: ComputeEvent = { event: 'done', done, tokens };
    ctl.onEvent?.(ev);
    return ev;
  }

  async train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    this.calls.push({ kind: 'train', job });
    const data = await fs.readFile(job.data, 'utf8');
    const parent = await fs.readFile(path.join(job.model, 'weights.bin'), 'utf8').catch(() => 'base');
    await fs.mkdir(job.output, { recursive: true });
    await fs.writeFile(path.join(job.output, 'config.json'), JSON.stringify({ fake: true, mode: job.mode }));
    await fs.writeFile(path.join(job.output, 'weights.bin'), createHash('sha256').update(parent).update(data).digest('hex'));
    const examples = data.split('\n').filter(Boolean).length;
    const metrics =
      job.mode === 'dpo'
        ? { train_loss: 0.69, steps: 1, examples, mean: { loss: 0.69, 'rewards/accuracies': 0.5, 'rewards/margins': 0.01 } }
        : { train_loss: 2.5, steps: 1, examples };
    await fs.writeFile(path.join(job.output, 'metrics.json'), JSON.stringify(metrics));
    ctl.onEvent?.({ event: 'progress', step: 1, total_steps: 1, loss: metrics.train_loss });
    return { event: 'done', ...metrics };
  }

  async importModel(job: ImportJob, _ctl: RunControl): Promise<ComputeEvent> {
    this.calls.push({ kind: 'import', job });
    await fs.mkdir(job.output, { recursive: true });
    await fs.writeFile(path.join(job.output, 'config.json'), JSON.stringify({ fake: true }));
    await fs.writeFile(path.join(job.output, 'weights.bin'), 'base');
    return { event: 'done', params: 0 };
  }
}
