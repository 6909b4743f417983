/**
 * Shapes of decoder-only transformers the planner (core/plan.ts) knows by name, and of the
 * GPUs it knows. Pure data: the config names one of these, or gives the numbers itself.
 */

/** A Llama-style decoder: grouped-query attention, gated MLP (three FFN matrices), RMSNorm. */
export interface ModelShape {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  /** intermediate size of the gated MLP */
  ffn: number;
  vocab: number;
  /** per attention head; hidden / heads when absent */
  headDim?: number;
  /** the output projection shares the embedding matrix */
  tiedEmbeddings: boolean;
}

export const KNOWN_MODELS = {
  // HuggingFaceTB/SmolLM2-135M-Instruct config.json
  'smollm2-135m-instruct': { layers: 30, hidden: 576, heads: 9, kvHeads: 3, ffn: 1536, vocab: 49152, tiedEmbeddings: true },
  // google/gemma-3-270m-it config.json (its extra per-layer norms are not counted: < 0.1% of the parameters)
  'gemma3-270m': { layers: 18, hidden: 640, heads: 4, kvHeads: 1, headDim: 256, ffn: 2048, vocab: 262144, tiedEmbeddings: true },
  // TinyLlama/TinyLlama-1.1B (the 1.1B shape of the memory benchmark)
  'tinyllama-1.1b': { layers: 22, hidden: 2048, heads: 32, kvHeads: 4, ffn: 5632, vocab: 32000, tiedEmbeddings: false },
  // meta-llama/Meta-Llama-3-8B
  'llama-3-8b': { layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 128256, tiedEmbeddings: false },
  // meta-llama/Meta-Llama-3-70B
  'llama-3-70b': { layers: 80, hidden: 8192, heads: 64, kvHeads: 8, ffn: 28672, vocab: 128256, tiedEmbeddings: false },
} as const satisfies Record<string, ModelShape>;
export type KnownModel = keyof typeof KNOWN_MODELS;

/** Dense peak throughput (no sparsity) and memory of one GPU, from the vendors' data sheets. */
export interface GpuSpec {
  memoryGiB: number;
  /** bf16 tensor-core peak, TFLOP/s */
  bf16Tflops: number;
  /** fp32 peak without TF32 (PyTorch's default matmul precision), TFLOP/s */
  fp32Tflops: number;
  /** memory bandwidth, GB/s */
  bandwidthGBs: number;
}

export const KNOWN_GPUS = {
  'a10g-24gb': { memoryGiB: 24, bf16Tflops: 125, fp32Tflops: 31.2, bandwidthGBs: 600 },
  'a100-40gb': { memoryGiB: 40, bf16Tflops: 312, fp32Tflops: 19.5, bandwidthGBs: 1555 },
  'a100-80gb': { memoryGiB: 80, bf16Tflops: 312, fp32Tflops: 19.5, bandwidthGBs: 2039 },
  'h100-80gb': { memoryGiB: 80, bf16Tflops: 989, fp32Tflops: 67, bandwidthGBs: 3350 },
  'h200-141gb': { memoryGiB: 141, bf16Tflops: 989, fp32Tflops: 67, bandwidthGBs: 4800 },
} as const satisfies Record<string, GpuSpec>;
export type KnownGpu = keyof typeof KNOWN_GPUS;

/** SageMaker instance types: GPUs per instance and which GPU. */
export const SAGEMAKER_INSTANCES: Record<string, { gpus: number; gpu: KnownGpu }> = {
  'ml.g5.xlarge': { gpus: 1, gpu: 'a10g-24gb' },
  'ml.g5.12xlarge': { gpus: 4, gpu: 'a10g-24gb' },
  'ml.g5.48xlarge': { gpus: 8, gpu: 'a10g-24gb' },
  'ml.p4d.24xlarge': { gpus: 8, gpu: 'a100-40gb' },
  'ml.p4de.24xlarge': { gpus: 8, gpu: 'a100-80gb' },
  'ml.p5.48xlarge': { gpus: 8, gpu: 'h100-80gb' },
  'ml.p5e.48xlarge': { gpus: 8, gpu: 'h200-141gb' },
};
