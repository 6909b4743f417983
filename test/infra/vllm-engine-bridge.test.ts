/**
 * compute.engine kind vllm from the run config to the compute process and back: the sharded
 * generation of the activities (generateSharded) on VllmCompute over the real PythonCompute
 * (`python -m srlm_compute generate` with the job's `engine`), with a FAKE vllm module
 * (compute/tests/fakes/vllm, named a fake in its docstring) on the child's PYTHONPATH, since
 * vLLM itself cannot run here. The tokenizer is the packaged SmolLM2's (no weights are loaded).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GenerateRequest, PythonCompute } from '../../backends/compute';
import { generateSharded, readCommittedShard } from '../../activities/shards';
import { LocalStore } from '../../store/store';
import { vllmEngines } from '../../backends/vllm-engine';
import { RunConfig } from '../../core/schemas';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { packagedModel } from '../../testing/packaged-model';

const root = repoRoot();
const env = loadEnvPaths(root);
const loc = { run: 'r', iteration: 1, stage: 'candidates' };

describe('vLLM engine through the compute bridge (fake vllm)', () => {
  let tmp: string;
  let model: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-vllm-bridge-'));
    model = packagedModel(env.python, env.cacheDir, tmp);
  }, 240_000);
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('carries the engine settings into the job; shards commit with the fake vLLM outputs', async () => {
    const log = path.join(tmp, 'vllm.log');
    const compute = path.join(root, 'compute');
    const python = new PythonCompute({
      python: env.python,
      packageDir: compute,
      workDir: path.join(tmp, 'jobs'),
      env: { PYTHONPATH: `${compute}${path.delimiter}${path.join(compute, 'tests', 'fakes')}`, FAKE_VLLM_LOG: log },
    });
    const config = RunConfig.parse({
      run: 'r',
      seed: { ift: '/abs/ift.jsonl' },
      compute: {
        engine: { kind: 'vllm', tensorParallelSize: 2, gpuMemoryUtilization: 0.8, maxModelLen: 2048, dtype: 'float16', requestsPerCall: 3 },
      },
    });
    const engine = vllmEngines(python)(config)!;
    const requests: GenerateRequest[] = Array.from({ length: 7 }, (_, i) => ({
      id: `q${i}`,
      messages: [{ role: 'user', content: `Question ${i}: name a colour.` }],
      n: 2,
      temperature: 0.7,
      top_p: 0.9,
      max_new_tokens: 12,
      seed: 100 + i,
    }));
    const store = new LocalStore(path.join(tmp, 'store'));
    const res = await generateSharded({
      store,
      compute: engine,
      workDir: path.join(tmp, 'work'),
      loc,
      part: 'all',
      model,
      requests,
      shardSize: 3,
      partialFlushMs: 0,
      device: 'cpu',
      batchSize: 4,
      threads: 1,
    });
    expect(res.shards).toBe(3);
    expect(res.requestsGenerated).toBe(7);
    for (const r of requests) {
      const out = res.outputs.get(r.id)!;
      expect(out.outputs).toHaveLength(2);
      for (const o of out.outputs) {
        expect(o.text).toMatch(/^<fake t=0\.7 p=0\.9 seed=\d+ prompt=\d+ len=\d+>$/);
        expect(['stop', 'length']).toContain(o.finish_reason);
        expect(o.tokens).toBeGreaterThan(0);
        expect(o.tokens).toBeLessThanOrEqual(12);
      }
    }
    for (const k of [0, 1, 2])
      expect(await readCommittedShard(store, loc, 'all', k, requests.slice(k * 3, k * 3 + 3), () => undefined)).not.toBeNull();
    const calls = fs
      .readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { call: string; kwargs?: Record<string, unknown>; prompts?: unknown[] });
    expect(calls[0]!.kwargs).toMatchObject({
      model,
      tensor_parallel_size: 2,
      gpu_memory_utilization: 0.8,
      max_model_len: 2048,
      dtype: 'float16',
    });
    // requestsPerCall 3 over 7 requests of 2 samples: calls of 6, 6, 2 prompts, across the shards
    expect(calls.filter((c) => c.call === 'generate').map((c) => c.prompts!.length)).toEqual([6, 6, 2]);
  }, 120_000);
});
