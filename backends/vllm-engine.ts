/**
 * `compute.engine: {kind: "vllm", ...}`: generation on vLLM's offline engine, run by the same
 * compute process protocol as the local engine (`python -m srlm_compute generate`, with the
 * job's `engine` set), so shards, resume, partial flushes and events are unchanged. Training
 * and model import stay on the wrapped backend.
 *
 * vLLM pins its own torch and transformers, which differ from the training stack's, so a GPU
 * host usually keeps it in a second Python environment: `vllmPython` (workers: env
 * SRLM_VLLM_PYTHON) runs the vLLM jobs there; without it they run on the wrapped backend's
 * interpreter, which then needs vllm installed (else the job fails at once, exit 2, saying so).
 */
import type { RunConfig } from '../core/schemas';
import {
  type ComputeBackend,
  type ComputeEvent,
  enginesOfKind,
  type GenerateJob,
  type ImportJob,
  type RunControl,
  type TrainJob,
  type VllmJobEngine,
} from './compute';

type VllmEngineConfig = Extract<NonNullable<RunConfig['compute']['engine']>, { kind: 'vllm' }>;

/** The job-file form of a run config's vLLM engine. */
export function vllmJobEngine(e: VllmEngineConfig): VllmJobEngine {
  return {
    kind: 'vllm',
    tensor_parallel_size: e.tensorParallelSize,
    gpu_memory_utilization: e.gpuMemoryUtilization,
    max_model_len: e.maxModelLen ?? null,
    dtype: e.dtype,
    requests_per_call: e.requestsPerCall,
  };
}

/** Generation jobs go to `generator` with the engine set; training and import to `wrapped`. */
export class VllmCompute implements ComputeBackend {
  readonly name = 'vllm';
  constructor(
    private readonly engine: VllmJobEngine,
    private readonly wrapped: ComputeBackend,
    private readonly generator: ComputeBackend = wrapped,
  ) {}

  generate(job: GenerateJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.generator.generate({ ...job, engine: this.engine }, ctl);
  }
  train(job: TrainJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.train(job, ctl);
  }
  importModel(job: ImportJob, ctl: RunControl): Promise<ComputeEvent> {
    return this.wrapped.importModel(job, ctl);
  }
}

/**
 * `ActivityDeps.engineFor` for configs with `compute.engine.kind: "vllm"`: one VllmCompute per
 * distinct engine settings. `generator` runs the vLLM generation jobs (a PythonCompute on the
 * vLLM environment's interpreter); absent, `wrapped` runs them.
 */
export function vllmEngines(wrapped: ComputeBackend, generator?: ComputeBackend): (config: RunConfig) => ComputeBackend | undefined {
  return enginesOfKind('vllm', (e) => new VllmCompute(vllmJobEngine(e), wrapped, generator ?? wrapped));
}
