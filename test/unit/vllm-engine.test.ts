import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ComputeBackend, ComputeEvent, GenerateJob, ImportJob, TrainJob } from '../../backends/compute';
import { openAIEngines } from '../../backends/openai-compute';
import { vllmEngines, vllmJobEngine } from '../../backends/vllm-engine';
import { RunConfig } from '../../core/schemas';
import { loadEnvPaths } from '../../infra/paths';
import { parseWorkerArgs } from '../../workers/main';

/** Records the jobs it is given; answers `done` at once. */
class RecordingBackend implements ComputeBackend {
  readonly name = 'recording';
  readonly calls: { kind: string; job: unknown }[] = [];
  generate(job: GenerateJob): Promise<ComputeEvent> {
    this.calls.push({ kind: 'generate', job });
    return Promise.resolve({ event: 'done', tokens: 0 });
  }
  train(job: TrainJob): Promise<ComputeEvent> {
    this.calls.push({ kind: 'train', job });
    return Promise.resolve({ event: 'done' });
  }
  importModel(job: ImportJob): Promise<ComputeEvent> {
    this.calls.push({ kind: 'import', job });
    return Promise.resolve({ event: 'done' });
  }
}

const base = { run: 'r', seed: { ift: '/abs/ift.jsonl' } };
const GEN_JOB: GenerateJob = {
  model: '/models/m1',
  shards: [{ input: '/w/a.jsonl', output: '/w/a.out' }],
  device: 'auto',
  batch_size: 16,
  threads: 0,
};

describe('compute.engine kind vllm', () => {
  it('parses with defaults and maps to the job-file engine', () => {
    const cfg = RunConfig.parse({ ...base, compute: { engine: { kind: 'vllm' } } });
    expect(cfg.compute.engine).toEqual({
      kind: 'vllm',
      tensorParallelSize: 1,
      gpuMemoryUtilization: 0.9,
      dtype: 'auto',
      requestsPerCall: 1024,
    });
    const full = RunConfig.parse({
      ...base,
      compute: {
        engine: {
          kind: 'vllm',
          tensorParallelSize: 4,
          gpuMemoryUtilization: 0.85,
          maxModelLen: 8192,
          dtype: 'bfloat16',
          requestsPerCall: 256,
        },
      },
    });
    if (full.compute.engine?.kind !== 'vllm') throw new Error('expected vllm');
    expect(vllmJobEngine(full.compute.engine)).toEqual({
      kind: 'vllm',
      tensor_parallel_size: 4,
      gpu_memory_utilization: 0.85,
      max_model_len: 8192,
      dtype: 'bfloat16',
      requests_per_call: 256,
    });
    expect(vllmJobEngine({ ...full.compute.engine, maxModelLen: undefined }).max_model_len).toBeNull();
  });

  it('names the bad field', () => {
    const res = RunConfig.safeParse({ ...base, compute: { engine: { kind: 'vllm', gpuMemoryUtilization: 0 } } });
    expect(res.success).toBe(false);
    expect(res.error!.issues.map((i) => i.path.join('.'))).toContain('compute.engine.gpuMemoryUtilization');
  });

  it('sends generation jobs with the engine to the vLLM interpreter, training and import to the local backend', async () => {
    const local = new RecordingBackend();
    const vllmPy = new RecordingBackend();
    const engineFor = vllmEngines(local, vllmPy);
    const cfg = RunConfig.parse({ ...base, compute: { engine: { kind: 'vllm', tensorParallelSize: 2 } } });
    const engine = engineFor(cfg)!;
    expect(engine.name).toBe('vllm');
    expect(engine.servesOwnModel).toBeFalsy(); // the activity hands it the model directory, as for the local engine
    expect(engineFor(cfg)).toBe(engine); // one per settings
    await engine.generate(GEN_JOB, {});
    expect(vllmPy.calls).toEqual([{ kind: 'generate', job: { ...GEN_JOB, engine: vllmJobEngine(cfg.compute.engine as never) } }]);
    await engine.train({ mode: 'sft' } as TrainJob, {});
    await engine.importModel({ output: '/m' }, {});
    expect(local.calls.map((c) => c.kind)).toEqual(['train', 'import']);
    expect(GEN_JOB).not.toHaveProperty('engine'); // the caller's job is not changed
  });

  it('without a separate interpreter runs vLLM jobs on the local backend; other kinds are not its business', async () => {
    const local = new RecordingBackend();
    const engineFor = vllmEngines(local);
    await engineFor(RunConfig.parse({ ...base, compute: { engine: { kind: 'vllm' } } }))!.generate(GEN_JOB, {});
    expect((local.calls[0]!.job as GenerateJob).engine?.kind).toBe('vllm');
    expect(engineFor(RunConfig.parse(base))).toBeUndefined();
    const openai = RunConfig.parse({ ...base, compute: { engine: { kind: 'openai', baseUrl: 'http://h:8000/v1', model: 'm' } } });
    expect(engineFor(openai)).toBeUndefined();
    expect(openAIEngines(local)(openai)!.servesOwnModel).toBe(true);
  });
});

describe('workers/main.ts settings', () => {
  it('reads flags, else SRLM_QUEUES / SRLM_COMPUTE_CONCURRENCY, else all queues and 1', () => {
    expect(parseWorkerArgs([], {})).toEqual({ queues: ['orchestration', 'generation', 'training'], computeConcurrency: 1 });
    expect(parseWorkerArgs([], { SRLM_QUEUES: 'generation', SRLM_COMPUTE_CONCURRENCY: '2' })).toEqual({
      queues: ['generation'],
      computeConcurrency: 2,
    });
    expect(parseWorkerArgs(['--queues', 'training,orchestration', '--compute-concurrency', '3'], { SRLM_QUEUES: 'generation' })).toEqual({
      queues: ['training', 'orchestration'],
      computeConcurrency: 3,
    });
  });

  it('refuses bad values naming the flag or variable', () => {
    expect(() => parseWorkerArgs(['--queues', 'gpu'], {})).toThrow('--queues: unknown queue "gpu"');
    expect(() => parseWorkerArgs([], { SRLM_QUEUES: 'generation,judge' })).toThrow('SRLM_QUEUES: unknown queue "judge"');
    expect(() => parseWorkerArgs([], { SRLM_COMPUTE_CONCURRENCY: '0' })).toThrow(
      'SRLM_COMPUTE_CONCURRENCY: must be an integer from 1 to 64',
    );
    expect(() => parseWorkerArgs(['--compute-concurrency', '1.5'], {})).toThrow('--compute-concurrency: must be an integer');
    expect(() => parseWorkerArgs(['--queues'], {})).toThrow('--queues: a value is required');
    expect(() => parseWorkerArgs(['--queue', 'generation'], {})).toThrow('unknown flag --queue');
  });
});

describe('loadEnvPaths in a container image (no .srlm/env.json)', () => {
  it('needs only SRLM_PYTHON; temporal defaults to the one on PATH', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-paths-'));
    try {
      const p = loadEnvPaths(root, { SRLM_PYTHON: '/opt/srlm/venv/bin/python', SRLM_CACHE_DIR: '/var/cache/srlm' });
      expect(p).toMatchObject({
        python: '/opt/srlm/venv/bin/python',
        temporal: 'temporal',
        cacheDir: '/var/cache/srlm',
        venv: '/opt/srlm/venv',
      });
      expect(() => loadEnvPaths(root, {})).toThrow(/env\.json not found.*SRLM_PYTHON/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
