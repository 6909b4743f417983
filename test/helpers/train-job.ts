/** A TrainJob as trainModel hands it to a backend, for backend tests. */
import type { TrainJob } from '../../backends/compute';

export function trainJobFixture(over: Partial<TrainJob> & Pick<TrainJob, 'mode' | 'model' | 'data' | 'output'>): TrainJob {
  return {
    ref_model: null,
    lr: 1e-5,
    lr_end: 1e-6,
    epochs: 1,
    batch_size: 16,
    grad_accum: 1,
    dropout: 0.1,
    beta: 0.1,
    max_length: 1024,
    seed: 0,
    device: 'auto',
    threads: 0,
    max_steps: null,
    gradient_checkpointing: true,
    checkpoint_every: 50,
    resume_from: null,
    ...over,
  };
}
