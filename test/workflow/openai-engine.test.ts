/**
 * A whole run (M0 -> M1 -> M2, 500 prompts) on a real Temporal dev server with generation by
 * OpenAICompute against the stub OpenAI-compatible server (a stub, named so: it stands in for
 * vLLM) and training by FakeCompute (a fake, named so). Correctness only: every prompt has
 * exactly N candidates, every candidate exactly `judge.samples` judgments, no id twice.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenAICompute } from '../../backends/openai-compute';
import type { Candidate, Judgment, RunConfigInput } from '../../core/schemas';
import { runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { startTestStack, type TestStack } from '../helpers/stack';
import { duplicates, runRecords } from '../helpers/stages';
import { startStubOpenAI, type StubServer } from '../helpers/stub-openai-server';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');
const PROMPTS = 500;

describe('a run with the openai engine (stub server)', () => {
  let tmp: string;
  let stub: StubServer;
  let fake: FakeCompute;
  let stack: TestStack;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-openai-wf-'));
    stub = await startStubOpenAI();
    fake = new FakeCompute();
    const compute = new OpenAICompute({
      baseUrl: stub.url,
      model: 'stub-model',
      concurrency: 16,
      timeoutSeconds: 30,
      maxRetries: 3,
      wrapped: fake,
    });
    stack = await startTestStack({ address: testTemporalAddress(), compute, dir: tmp });
  });

  afterAll(async () => {
    await stack?.client.workflow
      .getHandle(runWorkflowId('oai'))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.stop();
    await stub?.close();
  });

  it(`generates ${PROMPTS} prompts x 4 candidates x 3 judgments with nothing missing or doubled`, async () => {
    const root = path.join(tmp, 'store');
    const config: RunConfigInput = {
      run: 'oai',
      seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl') },
      iterations: 1,
      prompts: { count: PROMPTS, requestsPerRound: 256, maxRounds: 10 },
      candidates: { n: 4 },
      judge: { samples: 3 },
      durability: { shardSize: 64, partialFlushSeconds: 5 },
      store: { root },
    };
    const t0 = Date.now();
    const result: RunResult = await stack.client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('oai'),
      args: [{ config }],
      workflowExecutionTimeout: '5 minutes',
    });
    const seconds = (Date.now() - t0) / 1000;
    expect(result.models.map((m) => m.name)).toEqual(['M0', 'SFT baseline', 'M1', 'M2']);

    const rec = await runRecords(root, 'oai', 1);
    const prompts = rec['1/prompts']!;
    const candidates = rec['1/candidates'] as Candidate[];
    const judgments = rec['1/judgments'] as Judgment[];
    expect(prompts).toHaveLength(PROMPTS);
    for (const [stage, records] of Object.entries(rec)) expect(duplicates(records ?? []), stage).toEqual([]);

    const perPrompt = new Map<string, number>();
    for (const c of candidates) perPrompt.set(c.promptId, (perPrompt.get(c.promptId) ?? 0) + 1);
    expect(perPrompt.size).toBe(PROMPTS);
    expect(new Set(perPrompt.values())).toEqual(new Set([4]));
    expect(new Set(prompts.map((p) => p.id))).toEqual(new Set(perPrompt.keys()));

    const perCandidate = new Map<string, number>();
    for (const j of judgments) perCandidate.set(j.candidateId, (perCandidate.get(j.candidateId) ?? 0) + 1);
    expect(perCandidate.size).toBe(PROMPTS * 4);
    expect(new Set(perCandidate.values())).toEqual(new Set([3]));
    expect(judgments.filter((j) => j.score === null)).toEqual([]);
    expect(rec['1/pairs']!.length).toBeGreaterThan(0);

    // generation went to the server only; training and import to the fake
    expect(fake.calls.filter((c) => c.kind === 'generate')).toEqual([]);
    expect(fake.calls.filter((c) => c.kind === 'train').length).toBeGreaterThanOrEqual(2);
    expect(stub.maxInFlight).toBeLessThanOrEqual(16);
    console.log(
      `openai-engine run: ${PROMPTS} prompts, ${candidates.length} candidates, ${judgments.length} judgments, ${stub.served} HTTP requests in ${seconds.toFixed(1)} s`,
    );
  }, 240_000);
});
