/**
 * Evaluation and the promotion gate on a real Temporal dev server, with FakeCompute (a fake,
 * named so) in place of the models: held-out responses per model, judge quality on held-out
 * human rankings, head-to-head comparisons in both orders, and what a failed gate does.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findStage, readStage, readStageManifest } from '../../store/artifacts';
import { LocalStore } from '../../store/store';
import { recordId } from '../../core/ids';
import { Candidate, EvalResponse, ModelManifest, PairwiseVerdict, PreferencePair, type RunConfigInput } from '../../core/schemas';
import { IterationSummary } from '../../core/stats';
import { progressQuery, runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { FakeCompute } from '../../testing/fake-compute';
import { recordHistory } from '../helpers/histories';
import { startTestStack, type TestStack } from '../helpers/stack';
import { testTemporalAddress } from '../helpers/temporal';

const repo = path.resolve(__dirname, '../..');

describe('evaluation and the promotion gate (FakeCompute)', () => {
  let tmp: string;
  let fake: FakeCompute;
  let stack: TestStack;
  let promptsFile: string;
  const requestLog = () => path.join(tmp, 'requests.log');

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-eval-wf-'));
    promptsFile = path.join(tmp, 'held-out.jsonl');
    const prompts = [
      'Name three uses of copper.',
      'Write a two-line poem about rain.',
      'What is 17 times 3?',
      'Give one tip for sleeping well.',
      'Explain what a leap year is.',
      'Translate "good morning" into French.',
    ];
    fs.writeFileSync(
      promptsFile,
      prompts.map((p, i) => JSON.stringify({ id: `h${i + 1}`, instruction: p, output: `A reference answer to: ${p}` })).join('\n') + '\n',
    );
    // position bias: the fake judge always prefers the response shown first
    fake = new FakeCompute({ pairwiseVerdict: 'A', logFile: requestLog() });
    stack = await startTestStack({ address: testTemporalAddress(), compute: fake, dir: tmp });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  function config(run: string, gate: Record<string, unknown> | undefined, over: Partial<RunConfigInput> = {}): RunConfigInput {
    return {
      run,
      seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl'), maxRanked: 4 },
      iterations: 2,
      eft: { samples: 1 },
      prompts: { count: 6, requestsPerRound: 8, maxRounds: 5 },
      store: { root: path.join(tmp, `store-${run}`) },
      evaluation: {
        prompts: { file: promptsFile },
        judgeSet: { ranked: path.join(repo, 'seed/ranked.jsonl'), offset: 8, max: 5 },
        judge: { kind: 'model', model: { packaged: 'smollm2-135m-instruct' } },
        opponents: ['previous', 'sft-baseline', 'reference'],
        judgeSamples: 2,
        ...(gate ? { gate } : {}),
      },
      ...over,
    };
  }

  async function run(cfg: RunConfigInput): Promise<RunResult> {
    return stack.client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId(String(cfg.run)),
      args: [{ config: cfg }],
      workflowExecutionTimeout: '5 minutes',
    });
  }

  it('evaluates every iteration: responses, judge quality, head-to-head in both orders, length watch; a passed gate promotes the final model', async () => {
    const result = await run(config('ev-pass', { minWinRateVsPrevious: 0.5, maxTopScoreShare: 1 }));
    await recordHistory(testTemporalAddress(), 'run-evaluated', runWorkflowId('ev-pass'));
    expect(result.summaries).toHaveLength(2);
    const store = new LocalStore(path.join(tmp, 'store-ev-pass'));
    for (const [k, s] of result.summaries.entries()) {
      const summary = IterationSummary.parse(s);
      const e = summary.evaluation!;
      const out = `ev-pass.m${k + 2}`;
      const prev = `ev-pass.m${k + 1}`;
      expect(e.model).toBe(out);
      // opponents: the previous model, the SFT baseline, the reference outputs
      expect(e.headToHead.map((h) => h.opponent)).toEqual([prev, 'ev-pass.sft-baseline', 'reference']);
      for (const h of e.headToHead) {
        // a judge that always picks the first response agrees with itself in neither order: all ties
        expect(h).toMatchObject({
          model: out,
          prompts: 6,
          wins: 0,
          losses: 0,
          ties: 6,
          winRate: 0.5,
          orderDisagreements: 6,
          unparsed: 0,
          judge: 'model:smollm2-135m-instruct',
        });
      }
      expect(e.judgeQuality.map((j) => j.model)).toEqual([prev, out]);
      for (const j of e.judgeQuality) {
        expect(j.sets).toBeGreaterThan(0);
        expect(j.judgments).toBe(2 * 16); // the 5 held-out sets (rank-09..rank-13) hold 3+4+2+4+3 replies, 2 samples each
        expect(j.pairwiseAccuracy).not.toBeNull();
      }
      expect(e.responses.map((r) => r.model)).toEqual([out, prev, 'ev-pass.sft-baseline']);
      expect(e.responses.every((r) => r.count === 6 && r.meanChars! > 0)).toBe(true);
      expect(e.watch.topScoreShare).not.toBeNull();
      expect(e.watch.parseFailureRate).toBe(0);
      expect(e.gate).toMatchObject({ passed: true, onFail: 'stop' });
      expect(e.gate!.checks.map((c) => c.name)).toEqual(['minWinRateVsPrevious', 'maxTopScoreShare']);
      // the judge's verdicts are kept, one per prompt and order
      const ref = await findStage(store, { run: 'ev-pass', iteration: k + 1, stage: `eval-h2h-${prev}` });
      const verdicts = await readStage(store, ref!, PairwiseVerdict);
      expect(verdicts.filter((v) => v.order === 'model-first')).toHaveLength(6);
      expect(verdicts.every((v) => v.verdict === 'A')).toBe(true);
      expect((await readStageManifest(store, ref!)).stats.headToHead).toEqual(e.headToHead[0]);
    }
    expect(result.promoted).toBe('ev-pass.m3');
    // M2's held-out responses were generated once (as iteration 1's output) and reused as iteration 2's opponent
    const log = fs.readFileSync(requestLog(), 'utf8').split('\n');
    const m2Requests = new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((h) => recordId('ev-pass', 'eval-response', 'ev-pass.m2', h)));
    expect(log.filter((l) => m2Requests.has(l))).toHaveLength(6);
    const m2Ref = await findStage(store, { run: 'ev-pass', iteration: 0, stage: 'eval-responses-ev-pass.m2' });
    expect((await readStage(store, m2Ref!, EvalResponse)).map((r) => r.promptId)).toEqual(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']);
    const handle = stack.client.workflow.getHandle(runWorkflowId('ev-pass'));
    const progress = await handle.query(progressQuery);
    expect(progress.gates).toEqual([
      { iteration: 1, model: 'ev-pass.m2', passed: true, onFail: 'stop', failed: [] },
      { iteration: 2, model: 'ev-pass.m3', passed: true, onFail: 'stop', failed: [] },
    ]);
    // the report inputs are in the store beside the other summaries
    const md = (await store.getBytes('runs/ev-pass/iter-2/summary.json')).toString('utf8');
    expect(IterationSummary.parse(JSON.parse(md)).evaluation?.model).toBe('ev-pass.m3');
  });

  it('a failed gate with onFail "stop" ends the run after that iteration and promotes the last accepted model, saying why', async () => {
    const result = await run(config('ev-stop', { minWinRateVsPrevious: 0.6 }));
    expect(result.summaries).toHaveLength(1);
    expect(result.models.map((m) => m.name)).toEqual(['M0', 'SFT baseline', 'M1', 'M2']);
    const gate = result.summaries[0]!.evaluation!.gate!;
    expect(gate.passed).toBe(false);
    expect(gate.checks[0]).toMatchObject({ name: 'minWinRateVsPrevious', value: 0.5, threshold: 0.6, passed: false });
    expect(gate.checks[0]!.message).toContain('ev-stop.m1');
    expect(result.promoted).toBe('ev-stop.m1');
    const store = new LocalStore(path.join(tmp, 'store-ev-stop'));
    const promoted = JSON.parse((await store.getBytes('models/ev-stop/promoted.json')).toString('utf8'));
    expect(promoted).toMatchObject({ modelId: 'ev-stop.m1', run: 'ev-stop' });
    expect(promoted.reason).toMatch(/ev-stop\.m2 did not pass its promotion gate; ev-stop\.m1 is the newest model that did/);
    const progress = await stack.client.workflow.getHandle(runWorkflowId('ev-stop')).query(progressQuery);
    expect(progress.gates).toEqual([
      { iteration: 1, model: 'ev-stop.m2', passed: false, onFail: 'stop', failed: [gate.checks[0]!.message] },
    ]);
    expect(progress.status).toBe('completed');
  });

  it('onFail "rollback" trains the next iteration from the last accepted model', async () => {
    const result = await run(config('ev-back', { minWinRateVsPrevious: 0.6, onFail: 'rollback' }));
    expect(result.summaries).toHaveLength(2);
    const store = new LocalStore(path.join(tmp, 'store-ev-back'));
    const m3 = ModelManifest.parse(
      JSON.parse((await store.getBytes(result.models.find((m) => m.name === 'M3')!.model.key)).toString('utf8')),
    );
    expect(m3.parent).toBe('ev-back.m1');
    expect(result.summaries[1]!.modelIn).toBe('ev-back.m1');
    expect(result.promoted).toBe('ev-back.m1');
  });

  it('judge.lengthControlRho selects pairs by length within the score band (rho 1: shortest against longest)', async () => {
    const cfg = config('ev-rho', undefined, { iterations: 1, judge: { samples: 3, lengthControlRho: 1 } });
    delete (cfg as { evaluation?: unknown }).evaluation;
    await run(cfg);
    const store = new LocalStore(path.join(tmp, 'store-ev-rho'));
    const pairs = await readStage(store, (await findStage(store, { run: 'ev-rho', iteration: 1, stage: 'pairs' }))!, PreferencePair);
    const candidates = new Map(
      (await readStage(store, (await findStage(store, { run: 'ev-rho', iteration: 1, stage: 'candidates' }))!, Candidate)).map((c) => [
        c.id,
        c,
      ]),
    );
    expect(pairs.length).toBeGreaterThan(0);
    for (const p of pairs) {
      const group = [...candidates.values()].filter((c) => c.promptId === p.promptId);
      const shortest = Math.min(...group.map((c) => c.tokens));
      const longest = Math.max(...group.map((c) => c.tokens));
      expect(candidates.get(p.chosenId)!.tokens).toBe(shortest);
      expect(candidates.get(p.rejectedId)!.tokens).toBe(longest);
    }
  });

  it('refuses a gate threshold the evaluation cannot measure, naming the field, before any work', async () => {
    const cfg = config('ev-bad', { maxJudgeAccuracyDrop: 0.05 });
    delete (cfg.evaluation as { judgeSet?: unknown }).judgeSet;
    await expect(run(cfg)).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/"evaluation\.gate\.maxJudgeAccuracyDrop": is measured only with `evaluation\.judgeSet`/) },
    });
  });
});
