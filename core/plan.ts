/**
 * `srlm plan`: what a run config will need and cost, stage by stage, before anything starts —
 * memory per GPU for training (sharding, precision, activation checkpointing, the DPO reference)
 * and for sampling (tensor parallelism, KV cache), token counts, checkpoint size and GPU-hours
 * at a stated utilisation. Pure arithmetic over the config; no I/O. The formulas are written
 * out in docs/paper-scale.md and checked by hand-computed cases in test/unit/plan.test.ts.
 */
import { KNOWN_GPUS, KNOWN_MODELS, SAGEMAKER_INSTANCES, type GpuSpec, type ModelShape } from './architectures';
import type { PlanConfig, RunConfig, SamplingConfig } from './schemas';

const GiB = 2 ** 30;
/** tokens a chat template adds around one user turn and one assistant reply */
export const CHAT_TEMPLATE_TOKENS = 64;
/** vLLM's default most sequences decoded together (max_num_seqs) */
export const VLLM_MAX_SEQS = 256;
/** memory vLLM keeps per GPU besides weights and KV cache (activations of its profiling run, CUDA graphs) */
export const VLLM_RESERVE_BYTES = 2 * GiB;
/** the judge prompt's fixed text (core/rubric.ts) */
const RUBRIC_TOKENS = 220;
/** the self-instruct request's fixed text (core/selfInstruct.ts) */
const SELF_INSTRUCT_TOKENS = 90;
/** a held-out evaluation instruction (AlpacaEval's are mostly far shorter) */
const EVAL_PROMPT_TOKENS = 128;

export type Precision = 'fp32' | 'bf16-mixed' | 'bf16';

/** Bytes per parameter of each training state, and of activations, for a precision. */
export const PRECISION_BYTES: Record<Precision, { weights: number; gradients: number; optimizer: number; compute: number }> = {
  // AdamW keeps two moments in the parameters' dtype
  fp32: { weights: 4, gradients: 4, optimizer: 8, compute: 4 },
  'bf16-mixed': { weights: 4, gradients: 4, optimizer: 8, compute: 2 },
  bf16: { weights: 2, gradients: 2, optimizer: 4, compute: 2 },
};

export interface ModelCount {
  name: string;
  shape: ModelShape;
  params: number;
  /** one decoder layer: attention, MLP, two norms */
  layerParams: number;
  /** outside the layers: embedding, output projection (untied), final norm (FSDP's root unit) */
  rootParams: number;
  /** K and V of one token in all layers, per byte of KV dtype */
  kvElementsPerToken: number;
}

/** Parameter count of a Llama-style decoder. */
export function countParams(name: string, shape: ModelShape): ModelCount {
  const { layers, hidden: h, heads, kvHeads, ffn, vocab } = shape;
  const d = shape.headDim ?? h / heads;
  const attention = h * heads * d * 2 + h * kvHeads * d * 2; // q and o; k and v
  const mlp = 3 * h * ffn; // gate, up, down
  const layerParams = attention + mlp + 2 * h; // + input and post-attention RMSNorm
  const rootParams = vocab * h * (shape.tiedEmbeddings ? 1 : 2) + h;
  return { name, shape, params: layers * layerParams + rootParams, layerParams, rootParams, kvElementsPerToken: 2 * layers * kvHeads * d };
}

export interface TrainMemory {
  weights: number;
  gradients: number;
  optimizer: number;
  /** FSDP: the largest unit's parameters and gradients, unsharded while it runs */
  gathered: number;
  activations: number;
  /** fp32 logits of the micro-batch and their gradient */
  logits: number;
  /** DPO with a resident reference: its weights, sharded like the policy's */
  reference: number;
  total: number;
}

export interface TrainStage {
  stage: 'sft' | 'dpo';
  examples: number | null;
  /** tokens per sequence planned for (max length, or what the prompts and replies can reach) */
  seqLen: number;
  /** sequences per GPU per step (DPO: chosen and rejected of each example) */
  seqsPerGpu: number;
  tokens: number | null;
  memory: TrainMemory;
  /** model FLOPs: 6 x params x tokens, plus recomputation and the reference's forward passes */
  flops: number | null;
  gpuHours: number | null;
  wallHours: number | null;
  reference?: 'copy' | 'precomputed';
}

export interface SampleStage {
  stage: 'prompts' | 'candidates' | 'judgments' | 'evaluation';
  requests: number;
  promptTokens: number;
  decodeTokens: number;
  /** model replicas working at once (fleet parts) */
  replicas: number;
  concurrency: number | null;
  tokensPerSecond: number | null;
  gpuHours: number | null;
  wallHours: number | null;
  note?: string;
}

export interface Plan {
  model: ModelCount;
  training: {
    backend: string;
    device: 'cpu' | 'cuda';
    nodes: number;
    procsPerNode: number;
    gpus: number;
    gpu: { name: string; spec: GpuSpec } | null;
    strategy: 'ddp' | 'fsdp';
    precision: Precision;
    activationCheckpointing: boolean;
    /** host memory one rank needs to read the weights, and how many ranks read them */
    loadBytesPerRank: number;
    loadingRanks: number;
    usableBytes: number | null;
  };
  sampling: {
    engine: string;
    tensorParallel: number;
    replicas: number;
    gpu: { name: string; spec: GpuSpec } | null;
    weightsPerGpu: number;
    kvBytesPerToken: number;
    kvBudgetPerGpu: number | null;
    contextLength: number;
  };
  /** weights + optimizer state (+ gradients are not saved) */
  checkpointBytes: number;
  /** the trained model as saved (weights in their training dtype) */
  modelBytes: number;
  sft: TrainStage;
  iteration: { prompts: SampleStage; candidates: SampleStage; judgments: SampleStage; dpo: TrainStage; evaluation: SampleStage | null };
  iterations: number;
  totalGpuHours: number | null;
  mfu: number;
  decodeBandwidthEfficiency: number;
  /** reasons the run cannot work as configured; non-empty: `srlm plan` exits 1 */
  problems: string[];
  notes: string[];
}

export interface SeedCounts {
  ift?: number;
  eft?: number;
  ranked?: number;
}

export class PlanError extends Error {
  override name = 'PlanError';
}

function resolveGpu(g: PlanConfig['trainingGpu']): { name: string; spec: GpuSpec } | null {
  if (g === undefined) return null;
  if (typeof g === 'string') return { name: g, spec: KNOWN_GPUS[g] };
  return { name: 'custom GPU', spec: g };
}

/** The base model's shape: `plan.architecture`, else the packaged model's. */
export function resolveModel(config: RunConfig): ModelCount {
  const a = config.plan?.architecture;
  if (typeof a === 'string') return countParams(a, KNOWN_MODELS[a]);
  if (a) return countParams('custom architecture', a);
  if ('packaged' in config.baseModel) return countParams(config.baseModel.packaged, KNOWN_MODELS[config.baseModel.packaged]);
  throw new PlanError(
    `"plan.architecture": needed to plan a base model given by ${'path' in config.baseModel ? `path (${config.baseModel.path})` : `lineage (${config.baseModel.promoted})`}: name one of ${Object.keys(KNOWN_MODELS).join(', ')}, or give {layers, hidden, heads, kvHeads, ffn, vocab} from its config.json`,
  );
}

function trainingLayout(config: RunConfig): Pick<Plan['training'], 'backend' | 'device' | 'nodes' | 'procsPerNode' | 'gpu' | 'strategy'> {
  const t = config.compute.training ?? { kind: 'local' as const };
  const planned = resolveGpu(config.plan?.trainingGpu);
  const strategy = t.strategy ?? 'ddp';
  if (t.kind === 'kubernetes') {
    const device = t.gpusPerNode > 0 ? 'cuda' : 'cpu';
    return {
      backend: `kubernetes (${t.nodes} pods x ${t.gpusPerNode} GPUs)`,
      device,
      nodes: t.nodes,
      procsPerNode: t.nprocPerNode ?? (t.gpusPerNode || 1),
      gpu: device === 'cuda' ? planned : null,
      strategy,
    };
  }
  if (t.kind === 'sagemaker') {
    const inst = SAGEMAKER_INSTANCES[t.instanceType];
    const gpu = planned ?? (inst ? { name: inst.gpu, spec: KNOWN_GPUS[inst.gpu] } : null);
    return {
      backend: `sagemaker (${t.instanceCount} x ${t.instanceType})`,
      device: inst || planned ? 'cuda' : 'cpu',
      nodes: t.instanceCount,
      procsPerNode: t.nprocPerNode ?? inst?.gpus ?? 1,
      gpu,
      strategy,
    };
  }
  const device = config.compute.device === 'cuda' || (config.compute.device === 'auto' && planned) ? 'cuda' : 'cpu';
  const procs = t.launcher === 'torchrun' ? (t.nprocPerNode ?? 1) : 1;
  return {
    backend: t.launcher === 'torchrun' ? `local (torchrun, ${procs} processes)` : 'local (one process)',
    device,
    nodes: 1,
    procsPerNode: procs,
    gpu: device === 'cuda' ? planned : null,
    strategy: t.launcher === 'torchrun' ? strategy : 'ddp',
  };
}

/** Activations kept for the backward pass, per token: see docs/paper-scale.md. */
export function activationBytesPerToken(m: ModelCount, computeBytes: number, checkpointing: boolean): number {
  const { layers, hidden: h, ffn, kvHeads, heads } = m.shape;
  const d = m.shape.headDim ?? h / heads;
  // per layer: norm inputs and outputs, q/k/v, attention output, the MLP's four ffn-wide tensors
  const perLayer = (4 * h + heads * d * 2 + 2 * kvHeads * d + 4 * ffn) * computeBytes;
  // checkpointing keeps each layer's input and recomputes one layer at a time
  return checkpointing ? layers * h * computeBytes + perLayer : layers * perLayer;
}

function trainStage(
  stage: 'sft' | 'dpo',
  m: ModelCount,
  layout: { gpus: number; strategy: 'ddp' | 'fsdp'; precision: Precision; checkpointing: boolean; gpu: GpuSpec | null; mfu: number },
  run: { batchSize: number; seqLen: number; examples: number | null; epochs: number; reference?: 'copy' | 'precomputed' },
  problems: string[],
): TrainStage {
  const b = PRECISION_BYTES[layout.precision];
  const shards = layout.strategy === 'fsdp' ? layout.gpus : 1;
  const P = m.params;
  const perGpuBatch = run.batchSize / layout.gpus;
  if (!Number.isInteger(perGpuBatch))
    problems.push(
      `${stage}: batchSize ${run.batchSize} is not divisible by the ${layout.gpus} training processes (each takes batchSize / processes examples per step): use a multiple of ${layout.gpus}`,
    );
  const seqsPerGpu = Math.max(1, Math.floor(perGpuBatch)) * (stage === 'dpo' ? 2 : 1);
  const tokensPerGpu = seqsPerGpu * run.seqLen;
  const dpoCopy = stage === 'dpo' && run.reference !== 'precomputed';
  const memory: TrainMemory = {
    weights: (P * b.weights) / shards,
    gradients: (P * b.gradients) / shards,
    optimizer: (P * b.optimizer) / shards,
    gathered: shards > 1 ? 2 * Math.max(m.layerParams, m.rootParams) * b.compute : 0,
    activations: tokensPerGpu * activationBytesPerToken(m, b.compute, layout.checkpointing),
    logits: tokensPerGpu * m.shape.vocab * 4 * 2,
    // a frozen reference needs no fp32 master copy: compute dtype
    reference: dpoCopy ? (P * b.compute) / shards : 0,
    total: 0,
  };
  memory.total =
    memory.weights + memory.gradients + memory.optimizer + memory.gathered + memory.activations + memory.logits + memory.reference;
  const tokens = run.examples === null ? null : run.examples * (stage === 'dpo' ? 2 : 1) * run.seqLen * run.epochs;
  let flops: number | null = null;
  let gpuHours: number | null = null;
  if (tokens !== null) {
    // forward 2PT + backward 4PT; checkpointing repeats the forward; the reference runs forward only
    // (every epoch when resident, once when precomputed)
    const refFlops = stage === 'dpo' ? 2 * P * (run.reference === 'precomputed' ? tokens / run.epochs : tokens) : 0;
    flops = 6 * P * tokens * (layout.checkpointing ? 4 / 3 : 1) + refFlops;
    if (layout.gpu)
      gpuHours = flops / ((layout.precision === 'fp32' ? layout.gpu.fp32Tflops : layout.gpu.bf16Tflops) * 1e12 * layout.mfu) / 3600;
  }
  return {
    stage,
    examples: run.examples,
    seqLen: run.seqLen,
    seqsPerGpu,
    tokens,
    memory,
    flops,
    gpuHours,
    wallHours: gpuHours === null ? null : gpuHours / layout.gpus,
    ...(stage === 'dpo' ? { reference: run.reference ?? 'copy' } : {}),
  };
}

interface Sampler {
  m: ModelCount;
  engine: RunConfig['compute']['engine'];
  tp: number;
  dtypeBytes: number;
  gpu: GpuSpec | null;
  memUtil: number;
  mfu: number;
  bwEff: number;
}

function sampleStage(
  stage: SampleStage['stage'],
  s: Sampler,
  w: { requests: number; promptTokens: number; newTokens: number; replicas: number; note?: string },
): SampleStage {
  const base = {
    stage,
    requests: w.requests,
    promptTokens: w.requests * w.promptTokens,
    decodeTokens: w.requests * w.newTokens,
    replicas: w.replicas,
    ...(w.note ? { note: w.note } : {}),
  };
  if (s.engine?.kind !== 'vllm' || !s.gpu) return { ...base, concurrency: null, tokensPerSecond: null, gpuHours: null, wallHours: null };
  const kvPerToken = s.m.kvElementsPerToken * s.dtypeBytes;
  const weightsPerGpu = (s.m.params * s.dtypeBytes) / s.tp;
  const kvBudget = s.gpu.memoryGiB * GiB * s.memUtil - weightsPerGpu - VLLM_RESERVE_BYTES;
  const ctx = w.promptTokens + w.newTokens;
  const concurrency = Math.max(0, Math.min(VLLM_MAX_SEQS, Math.floor((kvBudget * s.tp) / (ctx * kvPerToken))));
  if (concurrency === 0) return { ...base, concurrency, tokensPerSecond: null, gpuHours: null, wallHours: null };
  // a decode step reads every weight and the batch's KV cache once (memory-bound), or is bound by
  // 2 x params FLOPs per sequence (compute-bound at large batches), whichever takes longer
  const avgCtx = w.promptTokens + w.newTokens / 2;
  const memSeconds = (weightsPerGpu + (concurrency * avgCtx * kvPerToken) / s.tp) / (s.gpu.bandwidthGBs * 1e9 * s.bwEff);
  const computeSeconds = (2 * s.m.params * concurrency) / (s.tp * s.gpu.bf16Tflops * 1e12 * s.mfu);
  const tokensPerSecond = concurrency / Math.max(memSeconds, computeSeconds);
  const prefillSeconds = (2 * s.m.params * base.promptTokens) / (s.tp * s.gpu.bf16Tflops * 1e12 * s.mfu);
  const replicaSeconds = base.decodeTokens / tokensPerSecond + prefillSeconds;
  const gpuHours = (replicaSeconds * s.tp) / 3600;
  return { ...base, concurrency, tokensPerSecond, gpuHours, wallHours: replicaSeconds / w.replicas / 3600 };
}

const promptOf = (s: SamplingConfig): number => s.maxNewTokens;

export function planRun(config: RunConfig, counts: SeedCounts = {}): Plan {
  const m = resolveModel(config);
  const pc = config.plan ?? { mfu: 0.4, decodeBandwidthEfficiency: 0.6, usableMemoryFraction: 0.9 };
  const problems: string[] = [];
  const notes: string[] = [];
  const layout = trainingLayout(config);
  const gpus = layout.nodes * layout.procsPerNode;
  const precision: Precision = config.compute.precision ?? (layout.device === 'cuda' ? 'bf16-mixed' : 'fp32');
  const checkpointing = config.compute.gradientCheckpointing;
  if (layout.strategy === 'fsdp' && layout.device !== 'cuda')
    problems.push('training: strategy "fsdp" needs CUDA GPUs (compute/srlm_compute/train.py refuses it on CPU)');
  if (layout.device === 'cuda' && !layout.gpu)
    notes.push('training memory is not checked against a GPU and no time is estimated: set plan.trainingGpu');
  const tl = { gpus, strategy: layout.strategy, precision, checkpointing, gpu: layout.gpu?.spec ?? null, mfu: pc.mfu };

  // SFT: seed IFT and EFT examples, plus EFT built from ranked sets (up to replies x samples per set; 2 replies assumed)
  const ift = counts.ift ?? config.seed.maxIft;
  const eft = (config.seed.eft ? (counts.eft ?? config.seed.maxEft) : 0) ?? null;
  const ranked = config.seed.ranked || config.seed.oasst ? (counts.ranked ?? config.seed.maxRanked) : 0;
  const sftExamples = ift === undefined || eft === null || ranked === undefined ? null : ift + eft + ranked * 2 * config.eft.samples;
  if (sftExamples === null)
    notes.push('SFT examples unknown (seed files not counted): set seed.maxIft / maxEft / maxRanked to plan SFT tokens and time');
  const sft = trainStage(
    'sft',
    m,
    tl,
    { batchSize: config.sft.batchSize, seqLen: config.sft.maxLength, examples: sftExamples, epochs: config.sft.epochs },
    problems,
  );

  // DPO: at most one pair per generated prompt; a sequence is the prompt and one reply
  const promptLen = promptOf(config.prompts.sampling);
  const dpoSeq = Math.min(config.dpo.maxLength, promptLen + config.candidates.sampling.maxNewTokens + CHAT_TEMPLATE_TOKENS);
  const dpo = trainStage(
    'dpo',
    m,
    tl,
    {
      batchSize: config.dpo.batchSize,
      seqLen: dpoSeq,
      examples: config.prompts.count,
      epochs: config.dpo.epochs,
      ...(config.dpo.reference ? { reference: config.dpo.reference } : {}),
    },
    problems,
  );

  const usableBytes = layout.gpu ? layout.gpu.spec.memoryGiB * GiB * pc.usableMemoryFraction : null;
  if (usableBytes !== null && layout.gpu) {
    const gpu = layout.gpu;
    for (const st of [sft, dpo]) {
      if (st.memory.total <= usableBytes) continue;
      const mem = st.memory;
      const sharded = mem.weights + mem.gradients + mem.optimizer + mem.reference;
      const rest = mem.total - sharded;
      const perParam = PRECISION_BYTES[precision].weights + PRECISION_BYTES[precision].gradients + PRECISION_BYTES[precision].optimizer;
      const need = layout.strategy === 'fsdp' && rest < usableBytes ? Math.ceil((sharded * gpus) / (usableBytes - rest)) : null;
      problems.push(
        `${st.stage.toUpperCase()} does not fit: ${gib(mem.total)} GiB per GPU (weights ${gib(mem.weights)} + gradients ${gib(mem.gradients)} + optimizer ${gib(mem.optimizer)}` +
          `${mem.reference ? ` + reference ${gib(mem.reference)}` : ''}${mem.gathered ? ` + gathered ${gib(mem.gathered)}` : ''} + activations ${gib(mem.activations)} + logits ${gib(mem.logits)})` +
          ` > ${gib(usableBytes)} GiB usable (${Math.round(pc.usableMemoryFraction * 100)}% of a ${gpu.spec.memoryGiB} GiB ${gpu.name}): ${fmtCount(m.params)} parameters x ${perParam} bytes (${precision}) over ${layout.strategy === 'fsdp' ? `${gpus} GPUs (fsdp)` : '1 GPU (ddp replicates the model)'}` +
          (need !== null
            ? `; needs at least ${need} such GPUs with fsdp`
            : layout.strategy === 'ddp'
              ? '; shard it: strategy "fsdp"'
              : '; shorten maxLength or lower batchSize'),
      );
    }
  }

  // sampling
  const engine = config.compute.engine;
  const tp = engine?.kind === 'vllm' ? engine.tensorParallelSize : 1;
  const replicas = config.compute.fleet?.parts ?? 1;
  const sgpu = resolveGpu(config.plan?.samplingGpu);
  const dtypeBytes = engine?.kind === 'vllm' ? (engine.dtype === 'float32' ? 4 : 2) : engine?.kind === 'openai' ? 2 : 4;
  const sampler: Sampler = {
    m,
    engine,
    tp,
    dtypeBytes,
    gpu: sgpu?.spec ?? null,
    memUtil: engine?.kind === 'vllm' ? engine.gpuMemoryUtilization : 1,
    mfu: pc.mfu,
    bwEff: pc.decodeBandwidthEfficiency,
  };
  const weightsPerGpu = (m.params * dtypeBytes) / tp;
  const kvBytesPerToken = m.kvElementsPerToken * dtypeBytes;
  const judgeCtx = RUBRIC_TOKENS + promptLen + config.candidates.sampling.maxNewTokens + CHAT_TEMPLATE_TOKENS;
  const contextLength = engine?.kind === 'vllm' && engine.maxModelLen ? engine.maxModelLen : judgeCtx + config.judge.sampling.maxNewTokens;
  let kvBudgetPerGpu: number | null = null;
  if (engine?.kind === 'vllm') {
    if (m.shape.heads % tp !== 0)
      problems.push(`sampling: tensorParallelSize ${tp} does not divide the model's ${m.shape.heads} attention heads (vLLM needs it to)`);
    if (sgpu) {
      kvBudgetPerGpu = sgpu.spec.memoryGiB * GiB * engine.gpuMemoryUtilization - weightsPerGpu - VLLM_RESERVE_BYTES;
      const oneSeq = (contextLength * kvBytesPerToken) / tp;
      if (kvBudgetPerGpu < oneSeq) {
        problems.push(
          `sampling does not fit: weights ${gib(weightsPerGpu)} GiB per GPU (${fmtCount(m.params)} parameters x ${dtypeBytes} bytes / tensor parallel ${tp}) + ${gib(VLLM_RESERVE_BYTES)} GiB reserve leave ${gib(Math.max(0, kvBudgetPerGpu))} GiB of ` +
            `${gib(sgpu.spec.memoryGiB * GiB * engine.gpuMemoryUtilization)} GiB (gpuMemoryUtilization ${engine.gpuMemoryUtilization} of a ${sgpu.spec.memoryGiB} GiB ${sgpu.name}) for KV cache, and one ${contextLength}-token sequence needs ${gib(oneSeq)} GiB per GPU: raise tensorParallelSize`,
        );
      }
    } else notes.push('sampling memory and time are not estimated: set plan.samplingGpu');
  } else
    notes.push(
      engine?.kind === 'openai'
        ? `sampling runs on ${engine.baseUrl} (${engine.model}): tokens are listed, its GPUs are not planned`
        : 'sampling: the local engine (one process per generation activity); tokens are listed, time is estimated for the vllm engine only',
    );

  const c = config.candidates.n;
  const selfInstructPrompt =
    SELF_INSTRUCT_TOKENS + (config.prompts.seedShots + config.prompts.generatedShots) * promptLen + CHAT_TEMPLATE_TOKENS;
  const prompts = sampleStage('prompts', sampler, {
    requests: config.prompts.count,
    promptTokens: selfInstructPrompt,
    newTokens: promptLen,
    replicas: 1,
    note: `one request per kept prompt (more when the filters drop some; at most ${config.prompts.maxRounds * config.prompts.requestsPerRound} requests)`,
  });
  const candidates = sampleStage('candidates', sampler, {
    requests: config.prompts.count * c,
    promptTokens: promptLen + CHAT_TEMPLATE_TOKENS,
    newTokens: config.candidates.sampling.maxNewTokens,
    replicas,
  });
  const judgments = sampleStage('judgments', sampler, {
    requests: config.prompts.count * c * config.judge.samples,
    promptTokens: judgeCtx,
    newTokens: config.judge.sampling.maxNewTokens,
    replicas,
  });
  let evaluation: SampleStage | null = null;
  const ev = config.evaluation;
  if (ev) {
    const p = ev.prompts?.max ?? 0;
    const js = ev.judgeSet?.max ?? 0;
    const modelOpponents = ev.opponents.filter((o) => o !== 'reference').length;
    const responses = p * (1 + modelOpponents);
    // the judge-quality check: M_t and M_{t+1} each judge every reply of every held-out set (2 replies assumed)
    const judged = js * 2 * ev.judgeSamples * 2;
    const h2h = ev.judge ? p * ev.opponents.length * 2 : 0;
    const requests = responses + judged;
    const newTokens = requests === 0 ? 0 : (responses * ev.responses.maxNewTokens + judged * ev.judgeSampling.maxNewTokens) / requests;
    const promptTokens = requests === 0 ? 0 : (responses * (CHAT_TEMPLATE_TOKENS + EVAL_PROMPT_TOKENS) + judged * judgeCtx) / requests;
    evaluation = sampleStage('evaluation', sampler, {
      requests,
      promptTokens,
      newTokens,
      replicas: 1,
      note: `responses of the evaluated model and its ${modelOpponents} model opponent(s), judge quality of two models; plus ${h2h} head-to-head judgments of ${ev.pairwise.maxNewTokens} tokens by ${ev.judge?.kind === 'openai' ? `${ev.judge.model} at ${ev.judge.baseUrl}` : 'the evaluation judge'} (not counted)`,
    });
  }

  const b = PRECISION_BYTES[precision];
  const checkpointBytes = m.params * (b.weights + b.optimizer);
  const perIteration = [
    prompts.gpuHours,
    candidates.gpuHours,
    judgments.gpuHours,
    dpo.gpuHours,
    ...(evaluation ? [evaluation.gpuHours] : []),
  ];
  const totalGpuHours =
    sft.gpuHours === null || perIteration.some((h) => h === null)
      ? null
      : sft.gpuHours + config.iterations * perIteration.reduce<number>((a, h) => a + h!, 0);
  const fsdp = layout.strategy === 'fsdp' && gpus > 1;
  return {
    model: m,
    training: {
      ...layout,
      gpus,
      precision,
      activationCheckpointing: checkpointing,
      // bf16 loads the weights in bf16; the others in fp32 (the master copy). FSDP: rank 0 reads, the rest start on the meta device.
      loadBytesPerRank: m.params * (precision === 'bf16' ? 2 : 4),
      loadingRanks: fsdp ? layout.nodes : gpus,
      usableBytes,
    },
    sampling: {
      engine: engine?.kind ?? 'local',
      tensorParallel: tp,
      replicas,
      gpu: sgpu,
      weightsPerGpu,
      kvBytesPerToken,
      kvBudgetPerGpu,
      contextLength,
    },
    checkpointBytes,
    modelBytes: m.params * b.weights,
    sft,
    iteration: { prompts, candidates, judgments, dpo, evaluation },
    iterations: config.iterations,
    totalGpuHours,
    mfu: pc.mfu,
    decodeBandwidthEfficiency: pc.decodeBandwidthEfficiency,
    problems,
    notes,
  };
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

export const gib = (bytes: number): string => (bytes / GiB).toFixed(bytes < 10 * GiB ? 2 : 1);

export function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

const fmtFlops = (f: number): string => (f >= 1e18 ? `${(f / 1e18).toFixed(2)} EFLOP` : `${(f / 1e15).toFixed(2)} PFLOP`);
const hours = (h: number | null): string => (h === null ? 'n/a' : h < 1 ? `${(h * 60).toFixed(1)} min` : `${h.toFixed(1)} h`);

function renderTrain(st: TrainStage, p: Plan): string[] {
  const mm = st.memory;
  const out = [
    `  examples ${st.examples === null ? 'unknown' : fmtCount(st.examples)}, ${st.seqsPerGpu} sequence(s) of up to ${st.seqLen} tokens per GPU per step, tokens ${st.tokens === null ? 'unknown' : fmtCount(st.tokens)} (upper bound: every sequence at its length cap)`,
    `  memory per ${p.training.device === 'cuda' ? 'GPU' : 'process'}: weights ${gib(mm.weights)} + gradients ${gib(mm.gradients)} + optimizer ${gib(mm.optimizer)}${mm.gathered ? ` + gathered unit ${gib(mm.gathered)}` : ''} + activations ${gib(mm.activations)} + logits ${gib(mm.logits)}${mm.reference ? ` + reference ${gib(mm.reference)}` : ''} = ${gib(mm.total)} GiB${p.training.usableBytes !== null ? ` of ${gib(p.training.usableBytes)} usable` : ''}`,
  ];
  if (st.reference)
    out.push(
      st.reference === 'precomputed'
        ? '  reference: log-probs precomputed in one forward pass before training (no second model resident)'
        : `  reference: a second copy, ${p.training.strategy === 'fsdp' ? 'sharded like the policy' : 'whole on every GPU'}, in the compute dtype`,
    );
  if (st.flops !== null)
    out.push(
      `  compute ${fmtFlops(st.flops)}${st.gpuHours !== null ? `: ${hours(st.gpuHours)} GPU time, ${hours(st.wallHours)} wall on ${p.training.gpus} GPU(s) at ${Math.round(p.mfu * 100)}% MFU` : ''}`,
    );
  return out;
}

function renderSample(st: SampleStage, p: Plan): string[] {
  const out = [
    `  requests ${fmtCount(st.requests)}: prompt tokens ${fmtCount(st.promptTokens)}, generated tokens up to ${fmtCount(st.decodeTokens)}${st.note ? ` (${st.note})` : ''}`,
  ];
  if (st.concurrency !== null && st.tokensPerSecond !== null) {
    out.push(
      `  ${st.concurrency} sequences at once per replica, ~${fmtCount(st.tokensPerSecond)} tokens/s per replica: ${hours(st.gpuHours)} GPU time, ${hours(st.wallHours)} wall on ${st.replicas} replica(s) of ${p.sampling.tensorParallel} GPU(s)`,
    );
  }
  return out;
}

/** The plan as text: one section per stage, then problems (why it cannot run) and notes. */
export function renderPlan(p: Plan): string {
  const t = p.training;
  const s = p.sampling;
  const lines = [
    `model: ${p.model.name}: ${fmtCount(p.model.params)} parameters (${p.model.params.toLocaleString('en-US')}), ${p.model.shape.layers} layers, hidden ${p.model.shape.hidden}, ${p.model.shape.heads} heads / ${p.model.shape.kvHeads} KV heads, FFN ${p.model.shape.ffn}, vocab ${p.model.shape.vocab}`,
    `training: ${t.backend}, ${t.gpus} ${t.device === 'cuda' ? `GPU(s)${t.gpu ? ` (${t.gpu.name}, ${t.gpu.spec.memoryGiB} GiB)` : ''}` : 'CPU process(es)'}, ${t.strategy}${t.strategy === 'fsdp' ? ' (full shard)' : ''}, ${t.precision}, activation checkpointing ${t.activationCheckpointing ? 'on' : 'off'}`,
    `  loading: ${gib(t.loadBytesPerRank)} GiB of host memory on each of ${t.loadingRanks} rank(s)${t.strategy === 'fsdp' && t.gpus > 1 ? ' (rank 0 of each node reads; the others start on the meta device)' : ''}`,
    `  checkpoint: ${gib(p.checkpointBytes)} GiB (weights + optimizer state); trained model: ${gib(p.modelBytes)} GiB`,
    `sampling: ${s.engine}${s.engine === 'vllm' ? `, tensor parallel ${s.tensorParallel}, ${s.replicas} replica(s)${s.gpu ? ` on ${s.gpu.name}` : ''}` : ''}: weights ${gib(s.weightsPerGpu)} GiB per ${s.engine === 'vllm' ? 'GPU' : 'process'}, KV cache ${(s.kvBytesPerToken / 1024).toFixed(0)} KiB per token${s.kvBudgetPerGpu !== null ? `, ${gib(Math.max(0, s.kvBudgetPerGpu))} GiB per GPU for KV cache (${fmtCount(Math.max(0, (s.kvBudgetPerGpu * s.tensorParallel) / s.kvBytesPerToken))} tokens per replica)` : ''}`,
    '',
    'SFT (once):',
    ...renderTrain(p.sft, p),
    `per iteration (x${p.iterations}):`,
    ' prompts:',
    ...renderSample(p.iteration.prompts, p),
    ' candidates:',
    ...renderSample(p.iteration.candidates, p),
    ' judgments:',
    ...renderSample(p.iteration.judgments, p),
    ' DPO:',
    ...renderTrain(p.iteration.dpo, p),
    ...(p.iteration.evaluation ? [' evaluation:', ...renderSample(p.iteration.evaluation, p)] : []),
    '',
    `total: ${p.totalGpuHours === null ? 'n/a (see notes)' : `${p.totalGpuHours.toFixed(0)} GPU-hours`} (training at ${Math.round(p.mfu * 100)}% MFU; decoding at ${Math.round(p.decodeBandwidthEfficiency * 100)}% of memory bandwidth or ${Math.round(p.mfu * 100)}% of peak FLOPs, whichever binds)`,
  ];
  for (const n of p.notes) lines.push(`note: ${n}`);
  for (const pr of p.problems) lines.push(`INFEASIBLE: ${pr}`);
  return lines.join('\n');
}
