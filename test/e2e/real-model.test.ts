/**
 * End to end with the real packaged model (SmolLM2-135M-Instruct, converted from its GGUF)
 * through M0 -> SFT baseline -> EFT -> M1 -> DPO -> M2 on a tiny config, on the real dev
 * server with the real Python compute. Slow (minutes on 2 CPU cores).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findStage, modelDir, readModelManifest, readStage, readStageManifest } from '../../store/artifacts';
import { sha256File } from '../../store/store';
import { LocalStore } from '../../store/store';
import { Candidate, GeneratedPrompt, Judgment, PreferencePair, type RunConfigInput, SftExample } from '../../core/schemas';
import { ALL_QUEUES, createWorkers, defaultDeps, installQuietRuntime } from '../../workers';
import { runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');
const alpacaEval = path.resolve(repo, '../shared/data/alpaca-eval-gpt4-turbo-reference.json');

const tinyConfig = (root: string): RunConfigInput => ({
  run: 'e2e',
  baseModel: { packaged: 'smollm2-135m-instruct' },
  seed: {
    ift: path.join(repo, 'seed/ift.jsonl'),
    ranked: path.join(repo, 'seed/ranked.jsonl'),
    eft: path.join(repo, 'seed/eft.jsonl'),
    maxIft: 8,
    maxRanked: 2,
    maxEft: 10,
  },
  iterations: 1,
  sft: { lr: 2e-4, lrEnd: 5e-5, batchSize: 4, epochs: 3, maxLength: 768 },
  eft: { samples: 1, sampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 48 } },
  prompts: { count: 4, requestsPerRound: 4, maxRounds: 10, sampling: { temperature: 0.6, topP: 0.9, maxNewTokens: 48 } },
  candidates: { n: 4, sampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 48 } },
  judge: { samples: 3, sampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 96 } },
  dpo: { lr: 5e-6, lrEnd: 5e-7, batchSize: 4, epochs: 1, maxLength: 768 },
  compute: { device: 'cpu', generationBatchSize: 16, gradientCheckpointing: false },
  // several shards per generation stage, and a full checkpoint during M1's SFT
  durability: { shardSize: 4, checkpointEvery: 8 },
  store: { root },
  // evaluation on a few held-out prompts (AlpacaEval's, with GPT-4 Turbo's outputs as references) and held-out ranked sets,
  // the untrained base model (M0) as the fixed head-to-head judge
  evaluation: {
    prompts: fs.existsSync(alpacaEval) ? { file: alpacaEval, max: 3 } : { file: path.join(repo, 'seed/ift.jsonl'), offset: 40, max: 3 },
    judgeSet: { ranked: path.join(repo, 'seed/ranked.jsonl'), offset: 8, max: 3 },
    judge: { kind: 'model', model: { packaged: 'smollm2-135m-instruct' } },
    responses: { temperature: 0, topP: 1, maxNewTokens: 48 },
    judgeSamples: 1,
    judgeSampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 64 },
    pairwise: { temperature: 0, topP: 1, maxNewTokens: 48 },
    pairwiseMaxChars: 600,
    // a gate that cannot fail here (tiny models, three prompts): the decision is recorded all the same
    gate: { minWinRateVsPrevious: 0, onFail: 'stop' },
  },
});

describe('a real self-rewarding run with the packaged model', () => {
  let tmp: string;
  let connection: Connection;
  let native: NativeConnection;
  let workers: Worker[];
  let running: Promise<unknown>;
  let result: RunResult;
  let store: LocalStore;

  beforeAll(async () => {
    installQuietRuntime();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-e2e-'));
    connection = await Connection.connect({ address: testTemporalAddress() });
    native = await NativeConnection.connect({ address: testTemporalAddress() });
    workers = await createWorkers({ connection: native, namespace: 'default', queues: ALL_QUEUES, deps: defaultDeps({ stateDir: tmp }) });
    running = Promise.all(workers.map((w) => w.run()));
    store = new LocalStore(path.join(tmp, 'store'));
    const client = new Client({ connection });
    result = await client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(`e2e-${path.basename(tmp)}`),
      args: [{ config: tinyConfig(store.root) }],
      workflowExecutionTimeout: '40 minutes',
    });
  }, 45 * 60_000);

  afterAll(async () => {
    for (const w of workers ?? []) w.shutdown();
    await running;
    await connection?.close();
    await native?.close();
  });

  it('produces M0, the SFT baseline, M1 and M2 with manifests whose files verify', async () => {
    expect(result.models.map((m) => m.name)).toEqual(['M0', 'SFT baseline', 'M1', 'M2']);
    for (const { model } of result.models.slice(1)) {
      const manifest = await readModelManifest(store, model);
      const dir = await modelDir(store, model);
      expect(manifest.files.some((f) => f.path.endsWith('.safetensors'))).toBe(true);
      for (const f of manifest.files) expect((await sha256File(path.join(dir, f.path))).sha256).toBe(f.sha256);
    }
  });

  it("M2's weights differ from M1's", async () => {
    const weights = async (name: string) => {
      const m = result.models.find((x) => x.name === name)!.model;
      const manifest = await readModelManifest(store, m);
      return manifest.files
        .filter((f) => f.path.endsWith('.safetensors'))
        .map((f) => f.sha256)
        .join();
    };
    expect(await weights('M2')).not.toBe(await weights('M1'));
    expect(await weights('M1')).not.toBe(await weights('SFT baseline'));
  });

  it('every stage artifact exists and validates, and pairs were produced', async () => {
    const read = async <T>(iteration: number, stage: string, schema: Parameters<typeof readStage<T>>[2]) =>
      readStage(store, (await findStage(store, { run: 'e2e', iteration, stage }))!, schema);
    const eft = await read(0, 'eft', SftExample);
    const prompts = await read(1, 'prompts', GeneratedPrompt);
    const candidates = await read(1, 'candidates', Candidate);
    const judgments = await read(1, 'judgments', Judgment);
    const pairs = await read(1, 'pairs', PreferencePair);
    expect(eft.every((e) => e.kind === 'eft')).toBe(true);
    expect(prompts.length).toBe(4);
    expect(candidates.length).toBe(prompts.length * 4);
    expect(judgments.length).toBe(candidates.length * 3);
    expect(pairs.length).toBeGreaterThan(0);
    const s = result.summaries[0]!;
    expect(s.judge.parseRate).toBeGreaterThan(0);
    expect(s.pairs.kept).toBe(pairs.length);
    expect(s.dpo?.loss).toEqual(expect.any(Number));
    expect(await store.exists('runs/e2e/iter-1/summary.md')).toBe(true);
  });

  it('evaluated M2: held-out responses, judge quality of M1 and M2, head-to-head against M1 and the references, the gate', async () => {
    const e = result.summaries[0]!.evaluation!;
    expect(e.model).toBe(result.models.find((m) => m.name === 'M2')!.model.modelId);
    expect(e.responses.map((r) => r.count)).toEqual([3, 3]);
    expect(e.responses[0]!.meanTokens).toBeGreaterThan(0);
    expect(e.headToHead.map((h) => h.opponent)).toEqual([result.models.find((m) => m.name === 'M1')!.model.modelId, 'reference']);
    for (const h of e.headToHead) {
      expect(h.prompts).toBe(3);
      expect(h.wins + h.ties + h.losses).toBe(3);
      expect(h.judge).toBe('model:smollm2-135m-instruct');
    }
    expect(e.judgeQuality).toHaveLength(2);
    for (const j of e.judgeQuality) expect(j.judgments).toBeGreaterThan(0);
    expect(e.gate).toMatchObject({ passed: true, checks: [{ name: 'minWinRateVsPrevious', passed: true }] });
    expect(result.promoted).toBe(e.model);
  });

  it('generation ran in committed shards and training checkpoints were cleaned up after publishing', async () => {
    const manifest = async (stage: string) => readStageManifest(store, (await findStage(store, { run: 'e2e', iteration: 1, stage }))!);
    const judgments = await manifest('judgments');
    const shards = Math.ceil(judgments.count / 3 / 4); // one request (3 samples) per candidate, shards of 4
    expect(shards).toBeGreaterThan(1);
    expect(judgments.stats.shards).toBe(shards);
    for (let k = 0; k < shards; k++)
      expect(await store.exists(`runs/e2e/iter-1/judgments/parts/all/shard-0000${k}.commit.json`)).toBe(true);
    const m1 = await readModelManifest(store, result.models.find((m) => m.name === 'M1')!.model);
    expect(Number(m1.metrics.steps)).toBeGreaterThan(8); // so one checkpoint was written on the way
    expect(m1.metrics.resumed_from_step).toBe(0);
    expect((await store.list('runs/e2e/train')).filter((k) => k.includes('/checkpoints/'))).toEqual([]);
  });
});
