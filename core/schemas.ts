/**
 * One zod schema per record type and for the run config. Every boundary (config file,
 * JSONL line, activity input) parses through these. Free of Temporal and I/O.
 *
 * Over 500 lines on purpose: it is the one definition of every record and config field, kept
 * in one file so that each boundary, test and doc finds a field's schema in one place.
 */
import { z } from 'zod';
import { KNOWN_GPUS, KNOWN_MODELS, type KnownGpu, type KnownModel } from './architectures';
import { isS3Uri, parseS3Uri } from './s3uri';
import { keyDestinationProblem, keyEnvProblem, userinfoProblem } from './security';

/** Names that become path segments of artifact keys: no `..`, no slashes, no control chars. */
export const SafeName = z
  .string()
  .min(1, 'must not be empty')
  .max(100, 'must be at most 100 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may hold only letters, digits, ".", "_" and "-", and must start with a letter or digit')
  .refine((s) => !s.includes('..'), 'must not contain ".."');

const Probability = z.number().gt(0).lte(1);
const Temperature = z.number().gte(0).lte(5);
const PositiveInt = z.number().int().positive();
const LearningRate = z.number().positive().lt(1);
/**
 * A size limit on a config field. Past it a run would fail hours later (out of memory, a
 * history too large, an unplanned bill); the message says which and how to go beyond it.
 */
function upTo<T extends z.ZodNumber>(schema: T, max: number, protects: 'memory' | 'history' | 'cost' | 'time'): T {
  const why = {
    memory: "the workers' memory",
    history: "the workflow's history size",
    cost: 'against an unplanned bill (compute time)',
    time: 'against a stuck run going unnoticed',
  }[protects];
  return schema.max(
    max,
    `must be at most ${max.toLocaleString('en-US')}: the limit protects ${why}; if a run truly needs more, raise the limit in core/schemas.ts`,
  ) as T;
}

// ---------------------------------------------------------------------------------------
// Run config
// ---------------------------------------------------------------------------------------

export const ModelSource = z.union([
  z.strictObject({ packaged: z.enum(['smollm2-135m-instruct', 'gemma3-270m']) }),
  z.strictObject({ path: z.string().min(1) }),
  /** the model currently promoted in a lineage of the store (recurring retraining starts here) */
  z.strictObject({ promoted: SafeName }),
]);
export type ModelSource = z.infer<typeof ModelSource>;

export const SeedConfig = z
  .strictObject({
    /** IFT examples: JSONL of IftExample. */
    ift: z.string().min(1).optional(),
    /** Prompts with human-ranked replies: JSONL of RankedSet. */
    ranked: z.string().min(1).optional(),
    /** Ready-made judge-training examples (JSONL of EftSeed), added to the EFT data the SFT baseline builds. */
    eft: z.string().min(1).optional(),
    /** An OASST `*.trees.jsonl` export: yields both IFT examples and ranked sets. */
    oasst: z.string().min(1).optional(),
    /** Language kept from an OASST export. */
    lang: z.string().min(2).default('en'),
    /** Caps (after import) so a demo can use a slice of a large file. */
    maxIft: upTo(PositiveInt, 10_000_000, 'memory').optional(),
    maxRanked: upTo(PositiveInt, 10_000_000, 'memory').optional(),
    maxEft: upTo(PositiveInt, 10_000_000, 'memory').optional(),
  })
  .refine((s) => s.ift !== undefined || s.oasst !== undefined, {
    message: 'needs `ift` (a JSONL file of instruction examples) or `oasst` (an OASST trees export)',
  });
export type SeedConfig = z.infer<typeof SeedConfig>;

export const SamplingConfig = z.strictObject({
  temperature: Temperature,
  topP: Probability,
  maxNewTokens: PositiveInt.max(8192),
});
export type SamplingConfig = z.infer<typeof SamplingConfig>;

export const SftConfig = z.strictObject({
  lr: LearningRate.default(5.5e-6),
  lrEnd: LearningRate.default(1.1e-6),
  batchSize: upTo(PositiveInt, 4096, 'memory').default(16),
  epochs: upTo(z.number().positive(), 100, 'cost').default(1),
  dropout: z.number().gte(0).lt(1).default(0.1),
  maxLength: upTo(PositiveInt, 262_144, 'memory').default(1024),
  /**
   * Batches of examples of similar length (the Trainer's group_by_length sampler) instead of
   * uniformly shuffled ones: less padding, so fewer tokens computed when lengths vary (IFT
   * answers next to long EFT judge prompts). Absent: uniform shuffling, as before.
   */
  groupByLength: z.boolean().optional(),
});

export const DpoConfig = z.strictObject({
  beta: z.number().positive().default(0.1),
  lr: LearningRate.default(1e-6),
  lrEnd: LearningRate.default(1e-7),
  batchSize: upTo(PositiveInt, 4096, 'memory').default(16),
  epochs: upTo(z.number().positive(), 100, 'cost').default(1),
  dropout: z.number().gte(0).lt(1).default(0.1),
  maxLength: upTo(PositiveInt, 262_144, 'memory').default(1024),
  /**
   * The frozen reference's log-probabilities: `copy` (absent) keeps a second model resident during
   * training; `precomputed` computes them in one pass before training, so only the policy is resident.
   */
  reference: z.enum(['copy', 'precomputed']).optional(),
});

export const EftConfig = z.strictObject({
  /** Judgments sampled per human-ranked reply by the SFT baseline. */
  samples: upTo(PositiveInt, 64, 'cost').default(1),
  sampling: SamplingConfig.default({ temperature: 0.7, topP: 0.9, maxNewTokens: 256 }),
  /**
   * The paper downsampled its EFT data's over-represented score (4): examples of this score are
   * cut to the count of the most frequent other score. null keeps every agreeing example.
   */
  downsampleScore: z.number().int().min(0).max(5).nullable().default(4),
});

export const PromptGenConfig = z.strictObject({
  /** How many new prompts to keep per iteration. */
  count: upTo(PositiveInt, 10_000_000, 'cost').default(10_000),
  seedShots: upTo(z.number().int().nonnegative(), 64, 'memory').default(6),
  generatedShots: upTo(z.number().int().nonnegative(), 64, 'memory').default(2),
  /** Requests issued per round of self-instruct generation. */
  requestsPerRound: upTo(PositiveInt, 1_000_000, 'memory').default(64),
  /** Rounds after which generation stops even if `count` was not reached. */
  maxRounds: upTo(PositiveInt, 1_000_000, 'history').default(1000),
  rougeLThreshold: z.number().gt(0).lte(1).default(0.7),
  sampling: SamplingConfig.default({ temperature: 0.6, topP: 0.9, maxNewTokens: 256 }),
  /** A fixed model for writing prompts (the paper used one); default: the iteration's model M_t. */
  model: ModelSource.optional(),
});

export const CandidateConfig = z.strictObject({
  n: upTo(PositiveInt, 64, 'cost').default(4),
  sampling: SamplingConfig.default({ temperature: 0.7, topP: 0.9, maxNewTokens: 512 }),
});

export const JudgeConfig = z.strictObject({
  samples: upTo(PositiveInt, 32, 'cost').default(3),
  /**
   * Length-controlled pair selection (Meta-Rewarding's rule): with rho > 0 the chosen response is
   * the shortest scoring within rho x (score range) of the best, the rejected the longest within it
   * of the worst. 0 (default) is the paper's rule: best against worst.
   */
  lengthControlRho: z.number().min(0).max(1).default(0),
  sampling: SamplingConfig.default({ temperature: 0.7, topP: 0.9, maxNewTokens: 256 }),
});

/**
 * Where generation runs: `local` (default) is the compute/ Python engine on the worker;
 * `openai` sends requests to an OpenAI-compatible server (vLLM, TGI, llama.cpp server)
 * serving `model`. Training and import stay local. The API key is read on the worker from the
 * environment variable named by `apiKeyEnv`; the key itself never belongs in a config.
 */
export const GenerationEngine = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('local') }),
  z
    .strictObject({
      kind: z.literal('openai'),
      /** e.g. http://host:8000/v1 */
      baseUrl: z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http(s) URL such as http://host:8000/v1'),
      /** the served model name */
      model: z.string().min(1),
      /** NAME of the environment variable holding the API key */
      apiKeyEnv: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
        // the allowlist is the validating process's (the worker checks again with its own: core/security.ts)
        .superRefine((name, ctx) => {
          const problem = keyEnvProblem(name, typeof process === 'undefined' ? {} : process.env);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
      /** most requests in flight per generation activity */
      concurrency: PositiveInt.max(4096).default(64),
      /** per HTTP request */
      timeoutSeconds: upTo(z.number().positive(), 86_400, 'time').default(120),
      /** retries per request (429, 5xx, timeouts, connection errors) before the attempt fails */
      maxRetries: z.number().int().nonnegative().max(100).default(5),
    })
    .superRefine((e, ctx) => {
      // no userinfo ever; plain http to a remote host only when no key goes with the requests
      const problem = e.apiKeyEnv ? keyDestinationProblem(e.baseUrl) : userinfoProblem(e.baseUrl);
      if (problem) ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: problem });
    }),
  /** vLLM's offline engine inside the generation worker's compute process (compute/srlm_compute/vllm_engine.py) */
  z.strictObject({
    kind: z.literal('vllm'),
    /** GPUs one model is sharded over (vLLM tensor parallelism) */
    tensorParallelSize: PositiveInt.max(64).default(1),
    /** fraction of each GPU's memory vLLM may take (weights + KV cache) */
    gpuMemoryUtilization: z.number().gt(0).max(1).default(0.9),
    /** context length vLLM allocates for (absent: the model's own) */
    maxModelLen: upTo(PositiveInt, 1_048_576, 'memory').optional(),
    dtype: z.enum(['auto', 'bfloat16', 'float16', 'float32']).default('auto'),
    /** requests handed to vLLM per call; their lines are written after each call (the most a crash redoes on the same host) */
    requestsPerCall: PositiveInt.max(1_000_000).default(1024),
  }),
]);
export type GenerationEngine = z.infer<typeof GenerationEngine>;

/** An OpenAI-compatible endpoint (the `openai` variant of GenerationEngine). */
export const OpenAIEndpoint = GenerationEngine.options[1];

/**
 * The judge of head-to-head comparisons in evaluation: a fixed local model (imported like the
 * base model; not the model being trained) or any OpenAI-compatible endpoint.
 */
export const EvalJudgeConfig = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('model'), model: ModelSource }),
  OpenAIEndpoint,
]);
export type EvalJudgeConfig = z.infer<typeof EvalJudgeConfig>;

/**
 * When an iteration's model may become the lineage's current model. Every threshold is
 * optional; an absent one is not checked. `onFail`: `stop` ends the run after the iteration,
 * `rollback` trains the next iteration from the last accepted model, `continue` goes on from
 * the new model. In every case the run promotes its newest accepted model (M1 counts as accepted).
 */
export const GateConfig = z.strictObject({
  /** head-to-head win rate of M_{t+1} against M_t (ties count half), 0..1 */
  minWinRateVsPrevious: z.number().min(0).max(1).optional(),
  /** win rate against the evaluation set's reference outputs, 0..1 */
  minWinRateVsReference: z.number().min(0).max(1).optional(),
  /** largest drop of the judge's pairwise accuracy on held-out human rankings from M_t to M_{t+1} */
  maxJudgeAccuracyDrop: z.number().min(0).max(1).optional(),
  /** largest share of the iteration's parsed judgments scoring 5 (the judge saturating) */
  maxTopScoreShare: z.number().min(0).max(1).optional(),
  /** least parse rate of the iteration's judgments */
  minJudgeParseRate: z.number().min(0).max(1).optional(),
  /** largest growth of the mean evaluation response length from M_t to M_{t+1}, as a ratio (1.5 = +50%) */
  maxLengthGrowth: z.number().positive().optional(),
  onFail: z.enum(['stop', 'rollback', 'continue']).default('stop'),
});
export type GateConfig = z.infer<typeof GateConfig>;

/**
 * Evaluation after each iteration's training (absent: none). Held-out prompts give each model's
 * responses (head-to-head against the previous model, the SFT baseline and reference outputs,
 * judged by `judge` in both orders); held-out human rankings give each model's quality as a judge.
 */
export const EvaluationConfig = z
  .strictObject({
    /** held-out prompts: a JSON array or JSONL of {instruction|prompt, output?|reference?} (AlpacaEval's format works) */
    prompts: z
      .strictObject({
        file: z.string().min(1),
        /** records skipped from the start of the file */
        offset: z.number().int().nonnegative().default(0),
        max: upTo(PositiveInt, 1_000_000, 'cost').default(100),
      })
      .optional(),
    /** held-out human rankings: a JSONL of RankedSet, or an OASST trees export */
    judgeSet: z
      .strictObject({
        ranked: z.string().min(1).optional(),
        oasst: z.string().min(1).optional(),
        lang: z.string().min(2).default('en'),
        offset: z.number().int().nonnegative().default(0),
        max: upTo(PositiveInt, 1_000_000, 'cost').default(100),
      })
      .refine((j) => (j.ranked === undefined) !== (j.oasst === undefined), {
        message: 'needs exactly one of `ranked` (JSONL of ranked sets) or `oasst` (an OASST trees export)',
      })
      .optional(),
    /** the head-to-head judge; absent: no head-to-head comparisons */
    judge: EvalJudgeConfig.optional(),
    /** what M_{t+1} is compared with */
    opponents: z.array(z.enum(['previous', 'sft-baseline', 'reference'])).default(['previous', 'reference']),
    /** sampling of the evaluated models' responses (temperature 0: greedy) */
    responses: SamplingConfig.default({ temperature: 0, topP: 1, maxNewTokens: 512 }),
    /** samples per reply when a model judges the held-out rankings (scores averaged) */
    judgeSamples: upTo(PositiveInt, 32, 'cost').default(3),
    judgeSampling: SamplingConfig.default({ temperature: 0.7, topP: 0.9, maxNewTokens: 256 }),
    /** sampling of the head-to-head judge */
    pairwise: SamplingConfig.default({ temperature: 0, topP: 1, maxNewTokens: 256 }),
    /** responses longer than this many characters are cut (marked) in the head-to-head judge's prompt */
    pairwiseMaxChars: upTo(PositiveInt, 1_000_000, 'memory').default(4000),
    gate: GateConfig.optional(),
  })
  .superRefine((e, ctx) => {
    if (e.prompts === undefined && e.judgeSet === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: 'needs `prompts` (held-out prompts) or `judgeSet` (held-out human rankings), or both',
      });
    }
    // a threshold is only useful when the evaluation measures its figure
    const g = e.gate;
    if (!g) return;
    const need = (field: keyof GateConfig, ok: boolean, what: string): void => {
      if (g[field] !== undefined && !ok) ctx.addIssue({ code: 'custom', path: ['gate', field], message: `is measured only with ${what}` });
    };
    const h2h = e.prompts !== undefined && e.judge !== undefined;
    need(
      'minWinRateVsPrevious',
      h2h && e.opponents.includes('previous'),
      '`evaluation.prompts`, `evaluation.judge` and "previous" in `evaluation.opponents`',
    );
    need(
      'minWinRateVsReference',
      h2h && e.opponents.includes('reference'),
      '`evaluation.prompts` (with reference outputs), `evaluation.judge` and "reference" in `evaluation.opponents`',
    );
    need('maxJudgeAccuracyDrop', e.judgeSet !== undefined, '`evaluation.judgeSet`');
    need('maxLengthGrowth', e.prompts !== undefined, '`evaluation.prompts`');
  });
export type EvaluationConfig = z.infer<typeof EvaluationConfig>;
/** A Kubernetes DNS-1123 label (names, namespaces). */
const K8sName = z
  .string()
  .max(63, 'must be at most 63 characters')
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
    'must be a DNS-1123 label: lowercase letters, digits and "-", starting and ending with a letter or digit',
  );

/**
 * How the ranks of a multi-process SFT/DPO job share the model (compute/srlm_compute/train.py's
 * `distributed`), the same fields for every training backend.
 */
const distributedFields = {
  /** ddp (default) replicates the model on every rank; fsdp shards it (needs CUDA GPUs) */
  strategy: z.enum(['ddp', 'fsdp']).optional(),
  /** fsdp only: the layer class wrapped as one FSDP unit (default: detected from the model) */
  fsdpLayerClass: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a Python class name such as LlamaDecoderLayer')
    .optional(),
};

function checkDistributed(o: { strategy?: 'ddp' | 'fsdp'; fsdpLayerClass?: string }, ctx: z.RefinementCtx): void {
  if (o.fsdpLayerClass !== undefined && o.strategy !== 'fsdp')
    ctx.addIssue({ code: 'custom', path: ['fsdpLayerClass'], message: 'is only meaningful with strategy: "fsdp"' });
}

/**
 * Where SFT and DPO run: `local` (default: compute/ on the training worker), `sagemaker`
 * (an Amazon SageMaker training job) or `kubernetes` (an indexed batch/v1 Job, torchrun across
 * its pods). The remote kinds need an s3:// store: inputs, checkpoints and the trained model
 * travel through it. See backends/sagemaker-train.ts and backends/k8s-train.ts.
 */
export const TrainingBackend = z.discriminatedUnion('kind', [
  z
    .strictObject({
      kind: z.literal('local'),
      /** process (default): one compute process; torchrun: nprocPerNode ranks on this host (DDP or FSDP) */
      launcher: z.enum(['process', 'torchrun']).optional(),
      /** torchrun only: processes (one per GPU; on CPU each takes its share of the cores) */
      nprocPerNode: PositiveInt.max(64).optional(),
      ...distributedFields,
    })
    .superRefine((o, ctx) => {
      const torchrun = o.launcher === 'torchrun';
      if (torchrun && o.nprocPerNode === undefined)
        ctx.addIssue({ code: 'custom', path: ['nprocPerNode'], message: 'is required with launcher: "torchrun"' });
      if (!torchrun && o.nprocPerNode !== undefined)
        ctx.addIssue({ code: 'custom', path: ['nprocPerNode'], message: 'is only meaningful with launcher: "torchrun"' });
      if (!torchrun && o.strategy !== undefined)
        ctx.addIssue({ code: 'custom', path: ['strategy'], message: 'is only meaningful with launcher: "torchrun"' });
      checkDistributed(o, ctx);
    }),
  z
    .strictObject({
      kind: z.literal('sagemaker'),
      /** ECR URI of the training image (runs srlm_compute train; see docs/scaling.md) */
      image: z.string().regex(/^[^\s]+\/[^\s]+$/, 'must be an image URI such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com/srlm-train:1'),
      /** execution role SageMaker assumes (reads and writes the store's bucket) */
      roleArn: z
        .string()
        .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/\S+$/, 'must be an IAM role ARN such as arn:aws:iam::123456789012:role/srlm-training'),
      instanceType: z.string().regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.p4d.24xlarge'),
      instanceCount: PositiveInt.max(256).default(1),
      volumeSizeGB: PositiveInt.max(16384).default(100),
      maxRuntimeSeconds: PositiveInt.max(28 * 24 * 3600).default(24 * 3600),
      /** managed spot training; interrupted jobs resume from the checkpoints SageMaker syncs to the store */
      spot: z.boolean().default(false),
      /** spot only: most seconds waiting for capacity plus training (>= maxRuntimeSeconds) */
      maxWaitSeconds: PositiveInt.max(28 * 24 * 3600).optional(),
      /** default AWS_REGION */
      region: z.string().min(1).optional(),
      /** seconds between two DescribeTrainingJob calls */
      pollSeconds: z.number().positive().default(30),
      /** torchrun processes per instance (default: the instance's GPUs, SM_NUM_GPUS, or 1 without GPUs) */
      nprocPerNode: PositiveInt.max(64).optional(),
      ...distributedFields,
    })
    .superRefine((o, ctx) => {
      checkDistributed(o, ctx);
      if (o.maxWaitSeconds !== undefined && !o.spot)
        ctx.addIssue({ code: 'custom', path: ['maxWaitSeconds'], message: 'is only meaningful with spot: true' });
      if (o.spot && o.maxWaitSeconds !== undefined && o.maxWaitSeconds < o.maxRuntimeSeconds)
        ctx.addIssue({ code: 'custom', path: ['maxWaitSeconds'], message: 'must be >= maxRuntimeSeconds' });
    }),
  z
    .strictObject({
      kind: z.literal('kubernetes'),
      namespace: K8sName.default('default'),
      /** image holding srlm_compute, torch and torchrun */
      image: z.string().min(1).regex(/^\S+$/, 'must be an image reference without spaces'),
      /** pods (one torchrun node each) */
      nodes: PositiveInt.max(1024).default(1),
      /** nvidia.com/gpu per pod (torchrun --nproc-per-node); 0 runs on CPU with one process */
      gpusPerNode: z.number().int().nonnegative().max(64).default(1),
      serviceAccount: K8sName.optional(),
      nodeSelector: z.record(z.string(), z.string()).optional(),
      tolerations: z
        .array(
          z.strictObject({
            key: z.string().optional(),
            operator: z.enum(['Exists', 'Equal']).optional(),
            value: z.string().optional(),
            effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
            tolerationSeconds: z.number().int().optional(),
          }),
        )
        .optional(),
      /** extra environment for the trainer (e.g. AWS_REGION; never secrets: use the service account's role) */
      env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'), z.string()).optional(),
      /** pod restarts before the Job fails (the whole torchrun group restarts) */
      backoffLimit: z.number().int().nonnegative().max(100).default(2),
      /** seconds between two reads of the Job's status */
      pollSeconds: z.number().positive().default(15),
      /** kubeconfig context (default: the current one, or the in-cluster service account) */
      context: z.string().min(1).optional(),
      /** torchrun processes per pod (default: gpusPerNode, or 1 on CPU); at most one per GPU */
      nprocPerNode: PositiveInt.max(64).optional(),
      ...distributedFields,
    })
    .superRefine((o, ctx) => {
      if (o.gpusPerNode > 0 && o.nprocPerNode !== undefined && o.nprocPerNode > o.gpusPerNode) {
        ctx.addIssue({
          code: 'custom',
          path: ['nprocPerNode'],
          message: `must be at most gpusPerNode (${o.gpusPerNode}): one process per GPU`,
        });
      }
      if (o.strategy === 'fsdp' && o.gpusPerNode === 0)
        ctx.addIssue({ code: 'custom', path: ['strategy'], message: '"fsdp" needs CUDA GPUs: set gpusPerNode (it is 0)' });
      checkDistributed(o, ctx);
    }),
]);
export type TrainingBackend = z.infer<typeof TrainingBackend>;

export const ComputeConfig = z
  .strictObject({
    /** Where generation runs (absent: local). */
    engine: GenerationEngine.optional(),
    /** Where SFT and DPO run (absent: local, on the training worker). */
    training: TrainingBackend.optional(),
    /** cpu, cuda, or auto (cuda when available). */
    device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    /** Sequences generated together. */
    generationBatchSize: upTo(PositiveInt, 4096, 'memory').default(16),
    /** Worker threads torch may use on CPU (0: torch's default). */
    threads: z.number().int().nonnegative().default(0),
    /** Recompute activations in the backward pass: about half the memory, about twice the time. */
    gradientCheckpointing: z.boolean().default(true),
    /**
     * Training precision. `fp32`: fp32 weights and compute. `bf16-mixed`: fp32 weights, gradients and
     * optimizer state, bf16 compute (the reference model is held in bf16). `bf16`: weights, gradients
     * and optimizer state in bf16 (half the memory; updates smaller than bf16's resolution, about
     * 0.4% of a weight, are lost). Absent: fp32 on CPU, bf16-mixed on CUDA GPUs that support bf16.
     */
    precision: z.enum(['fp32', 'bf16-mixed', 'bf16']).optional(),
    /**
     * A fleet of generation workers (one per GPU host): the candidates and judgments stages are
     * cut into `parts` activities of whole shards, run in parallel on the generation queue by
     * whichever workers are live (absent or 1: one activity per stage, on one worker).
     */
    fleet: z.strictObject({ parts: PositiveInt.max(256) }).optional(),
    /**
     * Resident models: a generation worker keeps the model it generated with loaded in a
     * long-lived server (compute/'s `serve` for the local engine, vLLM's OpenAI server for the
     * vllm engine) and reuses it across shards, parts and stages; the workflow sends a model's
     * next generation activities to the worker holding it (its host task queue), and to the
     * shared generation queue when that worker has not taken them within `affinitySeconds`
     * (it is gone or busy). Absent: every generation activity loads its model afresh.
     */
    resident: z
      .strictObject({
        /** a resident model unused for this long is unloaded (its server stopped) */
        idleSeconds: z.number().positive().default(600),
        /** how long an activity waits on the holding worker's queue before going to the shared one */
        affinitySeconds: z.number().positive().max(3600).default(30),
        /** models one worker keeps loaded at once (the least recently used idle one is unloaded first) */
        maxModels: PositiveInt.max(16).default(1),
        /** per request to the resident server (it queues requests behind the batch running) */
        requestTimeoutSeconds: z.number().positive().default(1800),
      })
      .optional(),
  })
  .superRefine((o, ctx) => {
    if (o.resident && o.engine?.kind === 'openai') {
      ctx.addIssue({
        code: 'custom',
        path: ['resident'],
        message: "the openai engine's server already holds its model: resident is for the local and vllm engines",
      });
    }
  });

export const DurabilityConfig = z.strictObject({
  /** Generation requests per shard: the unit published atomically, and at most what a crash redoes. */
  shardSize: PositiveInt.max(1_000_000).default(64),
  /** A shard's outputs so far are copied to the store at most this often, for a worker on another host to continue. */
  partialFlushSeconds: upTo(z.number().nonnegative(), 86_400, 'time').default(30),
  /** SFT and DPO save a full checkpoint into the store every this many optimizer steps (0: never). */
  checkpointEvery: z.number().int().nonnegative().default(50),
  /** A generation or training attempt without a heartbeat for this long is taken as lost and retried. */
  heartbeatTimeoutSeconds: upTo(PositiveInt, 86_400, 'time').default(300),
  /** First retry delay of a failed generation or training attempt (doubling up to 10 minutes). */
  retryInitialSeconds: upTo(z.number().positive(), 3600, 'time').default(10),
  /** Attempts of a generation or training activity before the run fails. */
  maximumAttempts: PositiveInt.max(1000).default(10),
});
export type DurabilityConfig = z.infer<typeof DurabilityConfig>;

export const S3Options = z
  .strictObject({
    /** endpoint of an S3-compatible server, e.g. http://127.0.0.1:7070 (else AWS_ENDPOINT_URL_S3, else AWS) */
    endpoint: z.url().optional(),
    /** default AWS_REGION, else us-east-1 */
    region: z.string().min(1).optional(),
    /** path-style addressing; default true when an endpoint is overridden */
    forcePathStyle: z.boolean().optional(),
    /** server-side encryption of every object written: SSE-S3 (AES256) or SSE-KMS */
    sse: z.enum(['AES256', 'aws:kms']).optional(),
    /** KMS key id or ARN for sse "aws:kms" (default: the account's S3 key) */
    kmsKeyId: z.string().min(1).optional(),
    /** multipart part size in MiB (S3's minimum is 5) */
    partSizeMiB: z.number().int().min(5).max(5120).default(16),
    /** parts or objects transferred at once */
    concurrency: z.number().int().min(1).max(64).default(8),
  })
  .refine((o) => !o.kmsKeyId || o.sse === 'aws:kms', { message: 'kmsKeyId needs sse "aws:kms"', path: ['kmsKeyId'] });

export const StoreConfig = z
  .strictObject({
    /** The artifact store: a directory, or `s3://bucket/prefix`; default `<stateDir>/artifacts`. */
    root: z.string().min(1).optional(),
    /** settings of an s3:// store (credentials are never here: the AWS provider chain supplies them) */
    s3: S3Options.optional(),
  })
  .superRefine((o, ctx) => {
    if (o.root && isS3Uri(o.root)) {
      try {
        parseS3Uri(o.root);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['root'], message: `s3 URI ${(err as Error).message}` });
      }
    } else if (o.root && /^[a-z][a-z0-9+.-]*:\/\//i.test(o.root)) {
      // the CLI turns file:///abs/path into the path before this; any other scheme would be taken as a relative folder
      ctx.addIssue({
        code: 'custom',
        path: ['root'],
        message: 'must be a directory or s3://bucket/prefix (srlm start/run also accept file:///absolute/path)',
      });
    } else if (o.s3) {
      ctx.addIssue({ code: 'custom', path: ['s3'], message: 'is only meaningful with an s3:// store root' });
    }
  });

const knownName = <T extends string>(known: Record<T, unknown>, what: string) =>
  z
    .string()
    .refine((n) => Object.hasOwn(known, n), {
      message: `is not a known ${what} (known: ${Object.keys(known).join(', ')}); give its numbers instead`,
    })
    .transform((n) => n as T);

/** A known GPU, or its data-sheet figures (core/architectures.ts's GpuSpec). */
const GpuChoice = z.union([
  knownName<KnownGpu>(KNOWN_GPUS, 'GPU'),
  z.strictObject({
    memoryGiB: z.number().positive(),
    bf16Tflops: z.number().positive(),
    fp32Tflops: z.number().positive(),
    bandwidthGBs: z.number().positive(),
  }),
]);

/**
 * What `srlm plan` needs beyond the run itself (core/plan.ts); nothing else reads it. Absent
 * fields: the model's shape from `baseModel` when it is a packaged model, no GPU (memory per
 * process only, no time estimates).
 */
export const PlanConfig = z.strictObject({
  /** the base model's shape: a known name or its numbers (config.json's num_hidden_layers, hidden_size, ...) */
  architecture: z
    .union([
      knownName<KnownModel>(KNOWN_MODELS, 'architecture'),
      z.strictObject({
        layers: PositiveInt,
        hidden: PositiveInt,
        heads: PositiveInt,
        kvHeads: PositiveInt,
        ffn: PositiveInt,
        vocab: PositiveInt,
        headDim: PositiveInt.optional(),
        tiedEmbeddings: z.boolean().default(false),
      }),
    ])
    .optional(),
  /** the GPU of the training nodes (SageMaker: from instanceType when absent) */
  trainingGpu: GpuChoice.optional(),
  /** the GPU of the generation hosts (vllm engine) */
  samplingGpu: GpuChoice.optional(),
  /** model FLOPs utilisation assumed for training and prefill (6 x params x tokens per second over the GPUs' peak) */
  mfu: z.number().gt(0).lte(1).default(0.4),
  /** share of the memory bandwidth a decode step achieves (decoding reads every weight once per step) */
  decodeBandwidthEfficiency: z.number().gt(0).lte(1).default(0.6),
  /** share of a GPU's memory a training process may plan for (the rest: CUDA context, allocator fragmentation) */
  usableMemoryFraction: z.number().gt(0).lte(1).default(0.9),
});
export type PlanConfig = z.infer<typeof PlanConfig>;

export const RunConfig = z.strictObject({
  /** Run name: workflow IDs and artifact keys derive from it. */
  run: SafeName,
  /** Model lineage the run's checkpoints belong to; default the run name. */
  lineage: SafeName.optional(),
  baseModel: ModelSource.default({ packaged: 'smollm2-135m-instruct' }),
  seed: SeedConfig,
  /** Self-rewarding iterations after SFT: 2 gives M1 -> M2 -> M3 as in the paper; 0 stops at M1. */
  iterations: z.number().int().nonnegative().max(100).default(2),
  /** Seed of every sampler and trainer in the run. */
  randomSeed: z.number().int().nonnegative().default(0),
  sft: SftConfig.default(SftConfig.parse({})),
  eft: EftConfig.default(EftConfig.parse({})),
  prompts: PromptGenConfig.default(PromptGenConfig.parse({})),
  candidates: CandidateConfig.default(CandidateConfig.parse({})),
  judge: JudgeConfig.default(JudgeConfig.parse({})),
  dpo: DpoConfig.default(DpoConfig.parse({})),
  compute: ComputeConfig.default(ComputeConfig.parse({})),
  durability: DurabilityConfig.default(DurabilityConfig.parse({})),
  store: StoreConfig.default({}),
  /** Evaluation of each iteration's model, and the promotion gate (absent: none). */
  evaluation: EvaluationConfig.optional(),
  /** Hardware and model shape for `srlm plan` (absent: what the rest of the config implies). */
  plan: PlanConfig.optional(),
});
export type RunConfig = z.infer<typeof RunConfig>;
export type RunConfigInput = z.input<typeof RunConfig>;

// ---------------------------------------------------------------------------------------
// Records (one JSON object per JSONL line)
// ---------------------------------------------------------------------------------------

/** Seed instruction-following example (IFT). */
export const IftExample = z.strictObject({
  id: z.string().min(1),
  prompt: z.string().min(1),
  response: z.string().min(1),
  source: z.string().optional(),
});
export type IftExample = z.infer<typeof IftExample>;

/** A prompt with human-ranked replies; rank 0 is best, ranks are distinct. */
export const RankedSet = z
  .strictObject({
    id: z.string().min(1),
    prompt: z.string().min(1),
    replies: z
      .array(z.strictObject({ text: z.string().min(1), rank: z.number().int().nonnegative() }))
      .min(2, 'needs at least 2 ranked replies'),
    source: z.string().optional(),
  })
  .refine((s) => new Set(s.replies.map((r) => r.rank)).size === s.replies.length, {
    message: 'reply ranks must be distinct',
    path: ['replies'],
  });
export type RankedSet = z.infer<typeof RankedSet>;

/** SFT training example: loss on `completion` only. */
export const SftExample = z.strictObject({
  id: z.string().min(1),
  prompt: z.string().min(1),
  completion: z.string().min(1),
  kind: z.enum(['ift', 'eft']),
});
export type SftExample = z.infer<typeof SftExample>;

/** A self-instruct prompt kept after filtering. */
export const GeneratedPrompt = z.strictObject({
  id: z.string().min(1),
  prompt: z.string().min(1),
  iteration: z.number().int().positive(),
  /** ids of the demonstrations in the few-shot request that produced it */
  shots: z.array(z.string()),
});
export type GeneratedPrompt = z.infer<typeof GeneratedPrompt>;

export const Candidate = z.strictObject({
  id: z.string().min(1),
  promptId: z.string().min(1),
  prompt: z.string().min(1),
  index: z.number().int().nonnegative(),
  text: z.string(),
  tokens: z.number().int().nonnegative(),
  finishReason: z.enum(['stop', 'length']),
});
export type Candidate = z.infer<typeof Candidate>;

export const Judgment = z.strictObject({
  id: z.string().min(1),
  candidateId: z.string().min(1),
  promptId: z.string().min(1),
  sample: z.number().int().nonnegative(),
  /** the judge's generated text only (never the judge prompt) */
  text: z.string(),
  /** parsed 0-5 score, or null for a parse failure */
  score: z.number().gte(0).lte(5).nullable(),
  parseError: z.string().optional(),
});
export type Judgment = z.infer<typeof Judgment>;

export const PreferencePair = z.strictObject({
  id: z.string().min(1),
  promptId: z.string().min(1),
  prompt: z.string().min(1),
  chosen: z.string(),
  rejected: z.string(),
  chosenId: z.string().min(1),
  rejectedId: z.string().min(1),
  chosenScore: z.number(),
  rejectedScore: z.number(),
});
export type PreferencePair = z.infer<typeof PreferencePair>;

// ---------------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------------

export const ShardEntry = z.strictObject({
  key: z.string().min(1),
  count: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});
export type ShardEntry = z.infer<typeof ShardEntry>;

/** A stage's output: JSONL shards; readers trust only the manifest. */
export const StageManifest = z.strictObject({
  kind: z.literal('stage'),
  run: z.string(),
  iteration: z.number().int().nonnegative(),
  stage: z.string(),
  recordType: z.string(),
  count: z.number().int().nonnegative(),
  shards: z.array(ShardEntry),
  producer: z.string(),
  configHash: z.string(),
  createdAt: z.string(),
  /** stage-specific counters (filter drops, parse failures, ...) */
  stats: z.record(z.string(), z.unknown()).default({}),
});
export type StageManifest = z.infer<typeof StageManifest>;

export const ModelManifest = z.strictObject({
  kind: z.literal('model'),
  modelId: z.string().min(1),
  lineage: z.string().min(1),
  parent: z.string().nullable(),
  method: z.enum(['import', 'sft', 'dpo', 'external']),
  files: z.array(z.strictObject({ path: z.string(), sha256: z.string(), bytes: z.number().int().nonnegative() })),
  trainedOn: z.array(z.string()),
  metrics: z.record(z.string(), z.unknown()).default({}),
  createdAt: z.string(),
  /** weights kept outside the store (a user's model directory, the packaged-model cache) */
  externalPath: z.string().optional(),
});
export type ModelManifest = z.infer<typeof ModelManifest>;

/** What workflows carry: a reference to an artifact, never its records. */
export const ArtifactRef = z.strictObject({
  uri: z.string(),
  key: z.string(),
  count: z.number().int().nonnegative(),
  sha256: z.string(),
});
export type ArtifactRef = z.infer<typeof ArtifactRef>;

/** A published model: its manifest in the artifact store (models/<lineage>/<model-id>/manifest.json). */
export interface ModelRef {
  modelId: string;
  lineage: string;
  /** manifest key in the store */
  key: string;
  uri: string;
  sha256: string;
  /** set when the weights live outside the store (a user's model directory, the packaged-model cache) */
  externalPath?: string;
}

/** The SFT baseline's judgment of one human-ranked reply (EFT data building). */
export const EftJudgment = z.strictObject({
  id: z.string().min(1),
  setId: z.string().min(1),
  replyIndex: z.number().int().nonnegative(),
  sample: z.number().int().nonnegative(),
  text: z.string(),
  score: z.number().gte(0).lte(5).nullable(),
  parseError: z.string().optional(),
});
export type EftJudgment = z.infer<typeof EftJudgment>;

/**
 * A ready-made judgment (written by people or a stronger model) of one response, in the
 * judge's output format; the last line must parse as a 0-5 score.
 */
export const EftSeed = z.strictObject({
  id: z.string().min(1),
  setId: z.string().min(1).optional(),
  rank: z.number().int().nonnegative().optional(),
  prompt: z.string().min(1),
  response: z.string().min(1),
  judgment: z.string().min(1),
});
export type EftSeed = z.infer<typeof EftSeed>;

/** A held-out evaluation prompt, with a reference output when the set has one (AlpacaEval's does). */
export const EvalPrompt = z.strictObject({
  id: z.string().min(1),
  instruction: z.string().min(1),
  reference: z.string().optional(),
  /** who wrote the reference, e.g. "gpt4_1106_preview" */
  referenceGenerator: z.string().optional(),
  dataset: z.string().optional(),
});
export type EvalPrompt = z.infer<typeof EvalPrompt>;

/** One model's response to a held-out prompt. */
export const EvalResponse = z.strictObject({
  id: z.string().min(1),
  promptId: z.string().min(1),
  model: z.string().min(1),
  text: z.string(),
  tokens: z.number().int().nonnegative(),
  finishReason: z.enum(['stop', 'length']),
  /** set when the engine did not generate it (e.g. prompt over the context) */
  skipped: z.string().optional(),
});
export type EvalResponse = z.infer<typeof EvalResponse>;

/** The head-to-head judge's verdict on one prompt in one order. */
export const PairwiseVerdict = z.strictObject({
  id: z.string().min(1),
  promptId: z.string().min(1),
  /** the evaluated model's response was shown first (as A) or second (as B) */
  order: z.enum(['model-first', 'model-second']),
  text: z.string(),
  verdict: z.enum(['A', 'B']).nullable(),
});
export type PairwiseVerdict = z.infer<typeof PairwiseVerdict>;
