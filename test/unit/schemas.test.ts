import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { formatPath } from '../../core/jsonl';
import * as schemas from '../../core/schemas';
import { RunConfig } from '../../core/schemas';

const SHA = 'a'.repeat(64);

/** For every schema: a valid example, and invalid variants with the field each must name. */
const CASES: Record<string, { valid: unknown; invalid: [unknown, string][] }> = {
  SafeName: {
    valid: 'demo-run_1.a',
    invalid: [
      ['../etc', ''],
      ['', ''],
      ['a/b', ''],
      ['a..b', ''],
    ],
  },
  ModelSource: {
    valid: { packaged: 'smollm2-135m-instruct' },
    invalid: [
      [{ packaged: 'gpt-9' }, ''],
      [{ path: '' }, 'path'],
      [{}, ''],
    ],
  },
  SeedConfig: {
    valid: { oasst: 'seed/trees.jsonl' },
    invalid: [
      [{ ranked: 'r.jsonl' }, ''],
      [{ ift: 'x', lang: 'e' }, 'lang'],
    ],
  },
  PlanConfig: {
    valid: {
      architecture: 'llama-3-70b',
      trainingGpu: 'a100-80gb',
      samplingGpu: { memoryGiB: 141, bf16Tflops: 989, fp32Tflops: 67, bandwidthGBs: 4800 },
    },
    invalid: [
      [{ architecture: 'llama-9-1t' }, 'architecture'],
      [{ architecture: { layers: 2, hidden: 64, heads: 4, kvHeads: 2, ffn: 128 } }, 'architecture'],
      [{ trainingGpu: 'tpu-v5' }, 'trainingGpu'],
      [{ mfu: 1.5 }, 'mfu'],
    ],
  },
  SamplingConfig: {
    valid: { temperature: 0.7, topP: 0.9, maxNewTokens: 256 },
    invalid: [
      [{ temperature: -0.1, topP: 0.9, maxNewTokens: 256 }, 'temperature'],
      [{ temperature: 0.7, topP: 0, maxNewTokens: 256 }, 'topP'],
      [{ temperature: 0.7, topP: 0.9, maxNewTokens: 0 }, 'maxNewTokens'],
    ],
  },
  SftConfig: {
    valid: {},
    invalid: [
      [{ lr: 0 }, 'lr'],
      [{ dropout: 1 }, 'dropout'],
      [{ batchSize: 2.5 }, 'batchSize'],
    ],
  },
  DpoConfig: {
    valid: { beta: 0.5 },
    invalid: [
      [{ beta: 0 }, 'beta'],
      [{ lr: -1e-6 }, 'lr'],
      [{ lrEnd: 1 }, 'lrEnd'],
    ],
  },
  EftConfig: { valid: { samples: 2 }, invalid: [[{ samples: 0 }, 'samples']] },
  PromptGenConfig: {
    valid: { count: 50, seedShots: 8, generatedShots: 0 },
    invalid: [
      [{ rougeLThreshold: 0 }, 'rougeLThreshold'],
      [{ seedShots: -1 }, 'seedShots'],
      [{ model: { path: '' } }, 'model.path'],
    ],
  },
  CandidateConfig: {
    valid: { n: 2 },
    invalid: [
      [{ n: 0 }, 'n'],
      [{ n: 5_000_000 }, 'n'],
      [{ sampling: { temperature: 1 } }, 'sampling.topP'],
    ],
  },
  JudgeConfig: {
    valid: { samples: 1 },
    invalid: [
      [{ samples: 0 }, 'samples'],
      [{ extra: 1 }, ''],
    ],
  },
  GenerationEngine: {
    valid: { kind: 'openai', baseUrl: 'https://gpu-1:8000/v1', model: 'm1', apiKeyEnv: 'OPENAI_API_KEY' },
    invalid: [
      [{ kind: 'openai', baseUrl: 'https://h/v1', model: 'm', apiKeyEnv: 'AWS_SECRET_ACCESS_KEY' }, 'apiKeyEnv'],
      [{ kind: 'openai', baseUrl: 'https://h/v1', model: 'm', apiKeyEnv: 'TEMPORAL_API_KEY' }, 'apiKeyEnv'],
      [{ kind: 'openai', baseUrl: 'http://gpu-1:8000/v1', model: 'm', apiKeyEnv: 'SRLM_GPU_API_KEY' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'https://u:p@gpu-1/v1', model: 'm' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'gpu-1:8000', model: 'm1' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'http://h/v1', model: 'm', apiKey: 'sk-1' }, ''],
      [{ kind: 'openai', baseUrl: 'http://h/v1', model: 'm', apiKeyEnv: 'sk-1' }, 'apiKeyEnv'],
      [{ kind: 'openai', baseUrl: 'http://h/v1', model: 'm', concurrency: 0 }, 'concurrency'],
      [{ kind: 'tgi' }, 'kind'],
      [{ kind: 'vllm', tensorParallelSize: 0 }, 'tensorParallelSize'],
      [{ kind: 'vllm', gpuMemoryUtilization: 1.2 }, 'gpuMemoryUtilization'],
      [{ kind: 'vllm', dtype: 'int8' }, 'dtype'],
      [{ kind: 'vllm', maxModelLen: 0 }, 'maxModelLen'],
      [{ kind: 'vllm', tp: 2 }, ''],
    ],
  },
  OpenAIEndpoint: {
    valid: { kind: 'openai', baseUrl: 'https://api.example.com/v1', model: 'judge', apiKeyEnv: 'SRLM_JUDGE_API_KEY' },
    invalid: [
      [{ kind: 'openai', baseUrl: 'ftp://x', model: 'j' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'http://api.example.com/v1', model: 'j', apiKeyEnv: 'OPENAI_API_KEY' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'https://a:b@api.example.com/v1', model: 'j' }, 'baseUrl'],
      [{ kind: 'openai', baseUrl: 'https://api.example.com/v1', model: 'j', apiKeyEnv: 'AWS_SECRET_ACCESS_KEY' }, 'apiKeyEnv'],
    ],
  },
  EvalJudgeConfig: {
    valid: { kind: 'model', model: { packaged: 'gemma3-270m' } },
    invalid: [
      [{ kind: 'openai', baseUrl: 'http://judge.example.com/v1', model: 'j', apiKeyEnv: 'OPENAI_API_KEY' }, 'baseUrl'],
      [{ kind: 'model', model: { packaged: 'gpt-5' } }, 'model'],
      [{ kind: 'human' }, 'kind'],
    ],
  },
  GateConfig: {
    valid: { minWinRateVsPrevious: 0.5, maxJudgeAccuracyDrop: 0.05, onFail: 'rollback' },
    invalid: [
      [{ minWinRateVsPrevious: 1.5 }, 'minWinRateVsPrevious'],
      [{ onFail: 'retry' }, 'onFail'],
      [{ maxLengthGrowth: 0 }, 'maxLengthGrowth'],
    ],
  },
  EvaluationConfig: {
    valid: {
      prompts: { file: 'eval.json', max: 8 },
      judgeSet: { ranked: 'ranked.jsonl', offset: 8 },
      judge: { kind: 'model', model: { packaged: 'gemma3-270m' } },
    },
    invalid: [
      [{}, ''],
      [{ judgeSet: { ranked: 'a.jsonl', oasst: 'b.jsonl' } }, 'judgeSet'],
      [{ prompts: { file: 'e.json', max: 0 } }, 'prompts.max'],
      [{ prompts: { file: 'e.json' }, opponents: ['grandparent'] }, 'opponents[0]'],
      [{ prompts: { file: 'e.json' }, gate: { minWinRateVsPrevious: 0.5 } }, 'gate.minWinRateVsPrevious'],
      [{ prompts: { file: 'e.json' }, gate: { maxJudgeAccuracyDrop: 0.1 } }, 'gate.maxJudgeAccuracyDrop'],
    ],
  },
  EvalPrompt: {
    valid: { id: 'alpaca-1', instruction: 'Say hi', reference: 'Hi!' },
    invalid: [[{ id: 'x', instruction: '' }, 'instruction']],
  },
  EvalResponse: {
    valid: { id: 'r', promptId: 'p', model: 'demo.m2', text: 'hi', tokens: 1, finishReason: 'stop' },
    invalid: [[{ id: 'r', promptId: 'p', model: 'm', text: '', tokens: -1, finishReason: 'stop' }, 'tokens']],
  },
  PairwiseVerdict: {
    valid: { id: 'v', promptId: 'p', order: 'model-first', text: 'A wins', verdict: 'A' },
    invalid: [[{ id: 'v', promptId: 'p', order: 'first', text: '', verdict: null }, 'order']],
  },
  TrainingBackend: {
    valid: { kind: 'kubernetes', image: 'registry/srlm-train:1', nodes: 2, gpusPerNode: 8 },
    invalid: [
      [{ kind: 'sagemaker', image: 'a/b', roleArn: 'arn:aws:iam::123456789012:role/t', instanceType: 'p4d.24xlarge' }, 'instanceType'],
      [{ kind: 'sagemaker', image: 'a/b', roleArn: 'role', instanceType: 'ml.p4d.24xlarge' }, 'roleArn'],
      [{ kind: 'kubernetes', image: 'i', namespace: 'Team_A' }, 'namespace'],
      [{ kind: 'kubernetes', image: 'i', gpusPerNode: -1 }, 'gpusPerNode'],
      [{ kind: 'slurm' }, 'kind'],
    ],
  },
  ComputeConfig: {
    valid: { device: 'cpu' },
    invalid: [
      [{ device: 'tpu' }, 'device'],
      [{ threads: -1 }, 'threads'],
    ],
  },
  DurabilityConfig: {
    valid: { shardSize: 8, checkpointEvery: 0 },
    invalid: [
      [{ shardSize: 0 }, 'shardSize'],
      [{ checkpointEvery: -1 }, 'checkpointEvery'],
      [{ heartbeatTimeoutSeconds: 1.5 }, 'heartbeatTimeoutSeconds'],
    ],
  },
  StoreConfig: {
    valid: { root: 's3://srlm-artifacts/team', s3: { region: 'eu-west-1', sse: 'AES256' } },
    invalid: [
      [{ root: '' }, 'root'],
      [{ root: 's3://x/y' }, 'root'],
      [{ root: '/tmp/srlm', s3: {} }, 's3'],
    ],
  },
  S3Options: {
    valid: {
      endpoint: 'http://127.0.0.1:7070',
      forcePathStyle: true,
      sse: 'aws:kms',
      kmsKeyId: 'alias/srlm',
      partSizeMiB: 64,
      concurrency: 16,
    },
    invalid: [
      [{ endpoint: 'not a url' }, 'endpoint'],
      [{ partSizeMiB: 4 }, 'partSizeMiB'],
      [{ sse: 'AES256', kmsKeyId: 'k' }, 'kmsKeyId'],
      [{ accessKeyId: 'AKIA' }, ''],
    ],
  },
  RunConfig: {
    valid: { run: 'demo', seed: { ift: 'seed/ift.jsonl' } },
    invalid: [
      [{ run: 'demo', seed: { ift: 'x' }, candidates: { n: 0 } }, 'candidates.n'],
      [{ seed: { ift: 'x' } }, 'run'],
    ],
  },
  IftExample: {
    valid: { id: 'a', prompt: 'Say hi.', response: 'Hi!', source: 'test' },
    invalid: [
      [{ id: 'a', prompt: 'Say hi.', response: '' }, 'response'],
      [{ id: 'a', prompt: 1, response: 'r' }, 'prompt'],
    ],
  },
  RankedSet: {
    valid: {
      id: 's',
      prompt: 'p',
      replies: [
        { text: 'a', rank: 0 },
        { text: 'b', rank: 1 },
      ],
    },
    invalid: [
      [{ id: 's', prompt: 'p', replies: [{ text: 'a', rank: 0 }] }, 'replies'],
      [
        {
          id: 's',
          prompt: 'p',
          replies: [
            { text: 'a', rank: 0 },
            { text: 'b', rank: 0 },
          ],
        },
        'replies',
      ],
      [
        {
          id: 's',
          prompt: 'p',
          replies: [
            { text: 'a', rank: 0 },
            { text: '', rank: 1 },
          ],
        },
        'replies[1].text',
      ],
    ],
  },
  SftExample: {
    valid: { id: 'e', prompt: 'p', completion: 'c', kind: 'eft' },
    invalid: [
      [{ id: 'e', prompt: 'p', completion: 'c', kind: 'dpo' }, 'kind'],
      [{ id: 'e', prompt: 'p', completion: '', kind: 'ift' }, 'completion'],
    ],
  },
  GeneratedPrompt: {
    valid: { id: 'g', prompt: 'Name a river.', iteration: 1, shots: ['s1', 's2'] },
    invalid: [
      [{ id: 'g', prompt: 'Name a river.', iteration: 0, shots: [] }, 'iteration'],
      [{ id: 'g', prompt: 'x', iteration: 1, shots: [3] }, 'shots[0]'],
    ],
  },
  Candidate: {
    valid: { id: 'c', promptId: 'p', prompt: 'q', index: 0, text: '', tokens: 0, finishReason: 'length' },
    invalid: [
      [{ id: 'c', promptId: 'p', prompt: 'q', index: -1, text: 't', tokens: 1, finishReason: 'stop' }, 'index'],
      [{ id: 'c', promptId: 'p', prompt: 'q', index: 0, text: 't', tokens: 1, finishReason: 'eos' }, 'finishReason'],
    ],
  },
  Judgment: {
    valid: { id: 'j', candidateId: 'c', promptId: 'p', sample: 2, text: 'Score: 4', score: 4 },
    invalid: [
      [{ id: 'j', candidateId: 'c', promptId: 'p', sample: 0, text: 'Score: 7', score: 7 }, 'score'],
      [{ id: 'j', candidateId: 'c', promptId: 'p', sample: 0, text: 'x' }, 'score'],
    ],
  },
  PreferencePair: {
    valid: {
      id: 'x',
      promptId: 'p',
      prompt: 'q',
      chosen: 'a',
      rejected: 'b',
      chosenId: 'c1',
      rejectedId: 'c2',
      chosenScore: 4,
      rejectedScore: 2,
    },
    invalid: [
      [
        {
          id: 'x',
          promptId: 'p',
          prompt: 'q',
          chosen: 'a',
          rejected: 'b',
          chosenId: '',
          rejectedId: 'c2',
          chosenScore: 4,
          rejectedScore: 2,
        },
        'chosenId',
      ],
    ],
  },
  ShardEntry: {
    valid: { key: 'runs/demo/iter-1/pairs/shard-0.jsonl', count: 3, sha256: SHA, bytes: 100 },
    invalid: [[{ key: 'k', count: 3, sha256: 'abc', bytes: 100 }, 'sha256']],
  },
  StageManifest: {
    valid: {
      kind: 'stage',
      run: 'demo',
      iteration: 1,
      stage: 'pairs',
      recordType: 'PreferencePair',
      count: 3,
      shards: [{ key: 'k', count: 3, sha256: SHA, bytes: 1 }],
      producer: 'srlm',
      configHash: 'h',
      createdAt: '2024-01-01T00:00:00Z',
    },
    invalid: [
      [
        {
          kind: 'model',
          run: 'demo',
          iteration: 1,
          stage: 's',
          recordType: 'r',
          count: 0,
          shards: [],
          producer: 'p',
          configHash: 'h',
          createdAt: 'now',
        },
        'kind',
      ],
    ],
  },
  ModelManifest: {
    valid: {
      kind: 'model',
      modelId: 'M1',
      lineage: 'demo',
      parent: null,
      method: 'sft',
      files: [{ path: 'model.safetensors', sha256: SHA, bytes: 10 }],
      trainedOn: ['k'],
      createdAt: 'now',
    },
    invalid: [
      [
        { kind: 'model', modelId: 'M1', lineage: 'demo', parent: null, method: 'ppo', files: [], trainedOn: [], createdAt: 'now' },
        'method',
      ],
    ],
  },
  ArtifactRef: {
    valid: { uri: 'file:///tmp/x', key: 'k', count: 1, sha256: SHA },
    invalid: [[{ uri: 'file:///tmp/x', key: 'k', count: -1, sha256: SHA }, 'count']],
  },
  EftJudgment: {
    valid: { id: 'j', setId: 's', replyIndex: 1, sample: 0, text: 'x', score: null, parseError: 'no score found' },
    invalid: [[{ id: 'j', setId: 's', replyIndex: 1.5, sample: 0, text: 'x', score: 3 }, 'replyIndex']],
  },
  EftSeed: {
    valid: { id: 'e', setId: 'rank-01', rank: 0, prompt: 'q', response: 'r', judgment: 'Fine.\nScore: 4' },
    invalid: [[{ id: 'e', prompt: 'q', response: 'r' }, 'judgment']],
  },
};

const exportedSchemas = Object.entries(schemas).filter(([, v]) => v instanceof z.ZodType) as [string, z.ZodType][];

describe('core/schemas', () => {
  it('has a test case for every exported schema', () => {
    expect(exportedSchemas.map(([name]) => name).sort()).toEqual(Object.keys(CASES).sort());
  });

  for (const [name, schema] of exportedSchemas) {
    const cases = CASES[name];
    if (!cases) continue;
    it(`${name}: a valid example parses`, () => {
      const r = schema.safeParse(cases.valid);
      expect(r.error?.issues).toBeUndefined();
    });
    for (const [input, field] of cases.invalid) {
      it(`${name}: rejects ${JSON.stringify(input).slice(0, 80)}, naming ${field === '' ? 'the value itself' : `"${field}"`}`, () => {
        const r = schema.safeParse(input);
        expect(r.success).toBe(false);
        expect(formatPath(r.error!.issues[0]!.path)).toBe(field);
      });
    }
  }
});

describe('RunConfig', () => {
  const minimal = { run: 'demo', seed: { ift: 'seed/ift.jsonl' } };

  it('applies the paper defaults', () => {
    const c = RunConfig.parse(minimal);
    expect(c.iterations).toBe(2);
    expect(c.baseModel).toEqual({ packaged: 'smollm2-135m-instruct' });
    expect(c.candidates).toEqual({ n: 4, sampling: { temperature: 0.7, topP: 0.9, maxNewTokens: 512 } });
    expect(c.judge.samples).toBe(3);
    expect(c.judge.sampling).toMatchObject({ temperature: 0.7, topP: 0.9 });
    expect(c.prompts).toMatchObject({ seedShots: 6, generatedShots: 2, rougeLThreshold: 0.7, sampling: { temperature: 0.6, topP: 0.9 } });
    expect(c.dpo).toMatchObject({ beta: 0.1, lr: 1e-6, lrEnd: 1e-7, batchSize: 16, dropout: 0.1 });
    expect(c.sft).toMatchObject({ lr: 5.5e-6, lrEnd: 1.1e-6, batchSize: 16, dropout: 0.1 });
    expect(c.seed.lang).toBe('en');
  });

  it('keeps given values and fills the rest of a section', () => {
    const c = RunConfig.parse({ ...minimal, candidates: { n: 2 }, dpo: { beta: 0.2 } });
    expect(c.candidates.n).toBe(2);
    expect(c.candidates.sampling.temperature).toBe(0.7);
    expect(c.dpo).toMatchObject({ beta: 0.2, lr: 1e-6 });
  });

  it('rejects unknown keys at the top level and inside sections', () => {
    expect(RunConfig.safeParse({ ...minimal, itertions: 3 }).error!.issues[0]).toMatchObject({
      code: 'unrecognized_keys',
      keys: ['itertions'],
    });
    expect(RunConfig.safeParse({ ...minimal, judge: { sample: 3 } }).error!.issues[0]).toMatchObject({
      code: 'unrecognized_keys',
      path: ['judge'],
    });
  });

  it('rejects n = 0 candidates and a negative learning rate', () => {
    expect(RunConfig.safeParse({ ...minimal, candidates: { n: 0 } }).success).toBe(false);
    expect(RunConfig.safeParse({ ...minimal, dpo: { lr: -1e-6 } }).success).toBe(false);
    expect(RunConfig.safeParse({ ...minimal, sft: { lr: -1 } }).success).toBe(false);
  });

  it('rejects a run name that could escape the artifact store', () => {
    expect(RunConfig.safeParse({ ...minimal, run: '../other' }).success).toBe(false);
  });

  it('compute.resident: defaults, bounds, and refused with the openai engine (whose server already holds its model)', () => {
    expect(RunConfig.parse({ ...minimal, compute: { resident: {} } }).compute.resident).toEqual({
      idleSeconds: 600,
      affinitySeconds: 30,
      maxModels: 1,
      requestTimeoutSeconds: 1800,
    });
    expect(RunConfig.parse(minimal).compute.resident).toBeUndefined();
    expect(RunConfig.safeParse({ ...minimal, compute: { resident: { maxModels: 0 } } }).error!.issues[0]!.path).toEqual([
      'compute',
      'resident',
      'maxModels',
    ]);
    expect(RunConfig.safeParse({ ...minimal, compute: { resident: { affinitySeconds: 0 } } }).error!.issues[0]!.path).toEqual([
      'compute',
      'resident',
      'affinitySeconds',
    ]);
    const openai = RunConfig.safeParse({
      ...minimal,
      compute: { engine: { kind: 'openai', baseUrl: 'http://h/v1', model: 'm' }, resident: {} },
    });
    expect(openai.error!.issues[0]).toMatchObject({ path: ['compute', 'resident'] });
    expect(openai.error!.issues[0]!.message).toMatch(/already holds its model/);
    expect(RunConfig.safeParse({ ...minimal, compute: { engine: { kind: 'vllm' }, resident: { maxModels: 2 } } }).success).toBe(true);
  });

  it('needs a seed file', () => {
    expect(RunConfig.safeParse({ run: 'demo', seed: {} }).success).toBe(false);
  });
});

describe('size limits', () => {
  it('name the field, the bound, what it protects and how to raise it', () => {
    const r = RunConfig.safeParse({
      run: 'x',
      seed: { ift: 'a.jsonl' },
      candidates: { n: 5_000_000 },
      sft: { maxLength: 1e12 },
      prompts: { count: 1e9 },
    });
    expect(r.success).toBe(false);
    const text = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(text).toContain(
      'candidates.n: must be at most 64: the limit protects against an unplanned bill (compute time); if a run truly needs more, raise the limit in core/schemas.ts',
    );
    expect(text).toContain(
      "sft.maxLength: must be at most 262,144: the limit protects the workers' memory; if a run truly needs more, raise the limit in core/schemas.ts",
    );
    expect(text.some((t) => t.startsWith('prompts.count: must be at most 10,000,000'))).toBe(true);
  });
});
