import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadRunConfig } from '../../cli/config';
import { KNOWN_MODELS } from '../../core/architectures';
import { activationBytesPerToken, countParams, planRun, renderPlan } from '../../core/plan';
import { RunConfig } from '../../core/schemas';

const ROOT = path.resolve(__dirname, '../..');
const CONFIGS = path.join(ROOT, 'configs');
const GiB = 2 ** 30;
const P70 = 70_553_706_496;

/** The fields of configs/llama-70b.json the tests change before parsing it. */
interface Raw70b {
  compute: { precision?: string; training: { nodes: number }; engine: { tensorParallelSize: number } };
  sft: { batchSize: number };
  dpo: { batchSize: number; reference?: string };
  plan: { architecture?: unknown };
}

function config70b(patch: (c: Raw70b) => void = () => undefined): RunConfig {
  const raw = JSON.parse(fs.readFileSync(path.join(CONFIGS, 'llama-70b.json'), 'utf8')) as Raw70b;
  patch(raw);
  return RunConfig.parse(raw);
}

describe('countParams', () => {
  it('counts Llama-3-70B as 70,553,706,496 parameters', () => {
    // head dim 8192/64 = 128; KV width 8 x 128 = 1024
    // attention: q, o 2 x 8192^2 = 134,217,728; k, v 2 x 8192 x 1024 = 16,777,216
    // MLP: 3 x 8192 x 28672 = 704,643,072; norms 2 x 8192 = 16,384
    // layer: 855,654,400; x 80 = 68,452,352,000
    // embedding + untied output: 2 x 128256 x 8192 = 2,101,346,304; final norm 8192
    const m = countParams('llama-3-70b', KNOWN_MODELS['llama-3-70b']);
    expect(m.layerParams).toBe(855_654_400);
    expect(m.rootParams).toBe(2_101_354_496);
    expect(m.params).toBe(68_452_352_000 + 2_101_354_496);
    expect(m.params).toBe(P70);
    // KV per token: 2 (K, V) x 80 layers x 8 KV heads x 128 = 163,840 elements (320 KiB in bf16)
    expect(m.kvElementsPerToken * 2).toBe(320 * 1024);
  });

  it('counts SmolLM2-135M as 134,515,008 parameters (its published size)', () => {
    // head dim 576/9 = 64; KV width 3 x 64 = 192
    // attention 2 x 576^2 + 2 x 576 x 192 = 663,552 + 221,184 = 884,736; MLP 3 x 576 x 1536 = 2,654,208; norms 1,152
    // layer 3,540,096 x 30 = 106,202,880; tied embedding 49152 x 576 = 28,311,552; final norm 576
    expect(countParams('smollm2', KNOWN_MODELS['smollm2-135m-instruct']).params).toBe(134_515_008);
  });
});

describe('planRun', () => {
  it('plans the 70B config: 32 A100-80GB GPUs, FSDP, bf16-mixed, precomputed reference, within memory', () => {
    const p = planRun(config70b());
    expect(p.problems).toEqual([]);
    expect(p.training.gpus).toBe(32);
    const sft = p.sft.memory;
    // fp32 master weights and gradients: 4 bytes x P / 32 GPUs; AdamW's two fp32 moments: 8 bytes x P / 32
    expect(sft.weights).toBe((P70 * 4) / 32);
    expect(sft.gradients).toBe((P70 * 4) / 32);
    expect(sft.optimizer).toBe((P70 * 8) / 32);
    // gathered: the root unit (embedding + output + norm, 2,101,354,496) is larger than a layer: x 2 (params, grads) x 2 bytes
    expect(sft.gathered).toBe(2 * 2_101_354_496 * 2);
    // batch 32 over 32 GPUs = 1 sequence of 2048 tokens; checkpointing keeps 80 x 8192 x 2 bytes per token
    // plus one layer recomputed: (4 x 8192 + 2 x 8192 + 2 x 1024 + 4 x 28672) x 2 = 331,776 bytes per token
    expect(sft.activations).toBe(2048 * (80 * 8192 * 2 + 331_776));
    // fp32 logits and their gradient: 2048 x 128256 x 4 x 2
    expect(sft.logits).toBe(2048 * 128256 * 8);
    expect(sft.reference).toBe(0);
    expect(sft.total / GiB).toBeCloseTo(45.78, 1);
    // DPO: chosen + rejected = 2 sequences of min(2048, 256 + 1024 + 64) = 1344 tokens; precomputed reference: nothing resident
    expect(p.iteration.dpo.seqLen).toBe(1344);
    expect(p.iteration.dpo.seqsPerGpu).toBe(2);
    expect(p.iteration.dpo.memory.reference).toBe(0);
    // tokens: 10,000 pairs x 2 x 1344 = 26,880,000; FLOPs 6PT x 4/3 (recompute) + 2PT (reference pass, once)
    expect(p.iteration.dpo.tokens).toBe(26_880_000);
    expect(p.iteration.dpo.flops).toBeCloseTo(8 * P70 * 26_880_000 + 2 * P70 * 26_880_000, -12);
    // GPU-hours: FLOPs / (312 TFLOP/s x 0.4) / 3600
    expect(p.iteration.dpo.gpuHours).toBeCloseTo((10 * P70 * 26_880_000) / (312e12 * 0.4) / 3600, 6);
    // checkpoint: 4 (fp32 weights) + 8 (AdamW) bytes per parameter = 846.6 GB
    expect(p.checkpointBytes).toBe(P70 * 12);
    // sampling: bf16 weights / TP 8 = 17.64 GB per GPU; KV budget 80 GiB x 0.9 - weights - 2 GiB reserve
    expect(p.sampling.weightsPerGpu).toBe((P70 * 2) / 8);
    expect(p.sampling.kvBudgetPerGpu).toBeCloseTo(80 * GiB * 0.9 - (P70 * 2) / 8 - 2 * GiB, 0);
  });

  it('counts a resident DPO reference as a second sharded copy in bf16', () => {
    const p = planRun(config70b((c) => delete c.dpo.reference));
    expect(p.iteration.dpo.reference).toBe('copy');
    expect(p.iteration.dpo.memory.reference).toBe((P70 * 2) / 32);
    // the reference forward runs every epoch instead of once: same for 1 epoch
    expect(p.iteration.dpo.flops).toBeCloseTo(10 * P70 * 26_880_000, -12);
  });

  it('refuses 70B in fp32 on 8 x 80 GB, naming the numbers', () => {
    const p = planRun(
      config70b((c) => {
        c.compute.precision = 'fp32';
        c.compute.training.nodes = 1;
        c.sft.batchSize = 8;
        c.dpo.batchSize = 8;
      }),
    );
    // 16 bytes x 70.55B / 8 = 131.4 GiB of sharded state alone, against 72 GiB usable
    // + gathered 2 x 2,101,354,496 x 4 bytes = 15.66 GiB + activations 2048 x (80 x 8192 x 4 + 663,552) = 6.27 GiB
    // + logits 1.96 GiB = 155.3 GiB; at least ceil(16 x P / (72 GiB - 23.88 GiB)) = 22 GPUs
    const sft = p.problems.find((m) => m.startsWith('SFT does not fit'));
    expect(sft).toBeDefined();
    expect(sft).toContain('155.3 GiB per GPU');
    expect(sft).toContain('weights 32.9 + gradients 32.9 + optimizer 65.7');
    expect(sft).toContain('> 72.0 GiB usable (90% of a 80 GiB a100-80gb)');
    expect(sft).toContain('70.55B parameters x 16 bytes (fp32) over 8 GPUs (fsdp)');
    expect(sft).toContain('needs at least 22 such GPUs');
    expect(renderPlan(p)).toContain('INFEASIBLE: SFT does not fit');
  });

  it('refuses a tensor parallel size that leaves no room for one sequence, and one that does not divide the heads', () => {
    const tp1 = planRun(config70b((c) => (c.compute.engine.tensorParallelSize = 1)));
    // bf16 weights on one GPU: 141.1 GB = 131.4 GiB > 72 GiB
    expect(tp1.problems.join('\n')).toMatch(
      /sampling does not fit: weights 131\.4 GiB per GPU \(70\.55B parameters x 2 bytes \/ tensor parallel 1\)/,
    );
    const tp3 = planRun(config70b((c) => (c.compute.engine.tensorParallelSize = 3)));
    expect(tp3.problems).toContain("sampling: tensorParallelSize 3 does not divide the model's 64 attention heads (vLLM needs it to)");
  });

  it('refuses a global batch the training processes do not divide', () => {
    const p = planRun(config70b((c) => (c.dpo.batchSize = 16)));
    expect(p.problems).toContain(
      'dpo: batchSize 16 is not divisible by the 32 training processes (each takes batchSize / processes examples per step): use a multiple of 32',
    );
  });

  it('plans the demo on CPU: SmolLM2 in fp32, one process, activations without checkpointing', () => {
    // the hand computation below is for fp32 weights (the demo itself trains in bf16-mixed)
    const demo = loadRunConfig(path.join(CONFIGS, 'demo.json'));
    demo.compute.precision = 'fp32';
    const p = planRun(demo, { ift: 16, eft: 16, ranked: 4 });
    expect(p.problems).toEqual([]);
    expect(p.training.device).toBe('cpu');
    expect(p.training.precision).toBe('fp32');
    // 16 IFT + 16 EFT + 4 ranked sets x 2 replies x 1 sample = 40 examples x sft.epochs x 768 tokens
    const epochs = loadRunConfig(path.join(CONFIGS, 'demo.json')).sft.epochs;
    expect(p.sft.tokens).toBe(40 * epochs * 768);
    // per token per layer: (4 x 576 + 2 x 576 + 2 x 192 + 4 x 1536) x 4 bytes = 39,936; x 30 layers = 1,198,080
    // (train.py's docstring measured ~1.9 MB per token with the logits, which add 49152 x 8 = 393,216)
    expect(activationBytesPerToken(p.model, 4, false)).toBe(1_198_080);
    // batch 4 x 768 tokens
    expect(p.sft.memory.activations).toBe(4 * 768 * 1_198_080);
    // DDP in one process: whole weights 4 B, gradients 4 B, AdamW 8 B per parameter; reference copy fp32 4 B
    expect(p.sft.memory.weights + p.sft.memory.gradients + p.sft.memory.optimizer).toBe(134_515_008 * 16);
    expect(p.iteration.dpo.memory.reference).toBe(134_515_008 * 4);
    expect(p.sft.gpuHours).toBeNull();
  });

  it('needs the shape of a model given by path', () => {
    expect(() => planRun(config70b((c) => delete c.plan.architecture))).toThrow(
      /"plan.architecture": needed to plan a base model given by path \(\/models\/llama-3-70b\)/,
    );
  });
});

describe('configs/', () => {
  const files = fs.readdirSync(CONFIGS).filter((f) => f.endsWith('.json'));
  it.each(files)('%s validates and plans without problems', (f) => {
    const p = planRun(loadRunConfig(path.join(CONFIGS, f)));
    expect(p.problems).toEqual([]);
  });
});

describe('srlm plan', () => {
  it('prints the plan and exits 1 with the numbers for an infeasible config', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-plan-'));
    const raw = JSON.parse(fs.readFileSync(path.join(CONFIGS, 'llama-70b.json'), 'utf8')) as Raw70b;
    raw.compute.precision = 'fp32';
    raw.compute.training.nodes = 1;
    const file = path.join(dir, 'fp32-8gpu.json');
    fs.writeFileSync(file, JSON.stringify(raw));
    const err = await promisify(execFile)(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'cli/srlm.ts'), 'plan', file], {
      cwd: ROOT,
    }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect('code' in err ? err.code : 0).toBe(1);
    expect(err.stdout).toContain('model: llama-3-70b: 70.55B parameters');
    expect(err.stdout).toMatch(/INFEASIBLE: SFT does not fit: \d+\.\d GiB per GPU/);
    expect(err.stderr).toContain(`error: ${file}: the run cannot work as configured`);
  });
});
