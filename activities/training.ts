/**
 * The training driver the SFT and DPO stages go through: one training job from a base model to
 * a published model, with checkpoints copied into the store and a retry resuming from the
 * newest complete one; locally, with torchrun, or on a remote platform (compute.training).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { configHash } from '../core/ids';
import { toJsonl } from '../core/jsonl';
import type { ModelRef, RunConfig } from '../core/schemas';
import { localTorchrun, trainDistributed, type TrainJob, trainMemory } from '../backends/compute';
import { REMOTE_NAME_MAX, remoteJobBase } from '../backends/remote-train';
import { modelDir, modelPrefix, publishModel } from '../store/artifacts';
import { checkpointsPrefix, findNewestCheckpoint, publishCheckpoint, pruneCheckpoints } from '../store/checkpoints';
import { remoteTrainPrefix } from '../store/keys';
import type { ArtifactStore } from '../store/store';
import { type ActivityDeps, intervals, lineageOf, modelIdFor, type TrainResult, where } from './common';
import { recordTrainingMetrics } from './metrics';
import { type LiveSignaller, liveSignaller, rates, stageLog, withHeartbeats } from './progress';

export type TrainingDriver = ReturnType<typeof trainingDriver>;

export function trainingDriver(deps: ActivityDeps) {
  const { hbMs, signalMs } = intervals(deps);

  /**
   * One training job (SFT or DPO) from a base model to a published model, with full
   * checkpoints copied into the store every `durability.checkpointEvery` steps. A retried
   * attempt resumes from the newest complete checkpoint of the same job; torn ones are skipped.
   */
  async function trainModel(input: {
    config: RunConfig;
    iteration: number;
    name: string;
    method: 'sft' | 'dpo';
    base: ModelRef;
    /** training records, all at once or batch by batch (written to the job's data file as they come) */
    data: object[] | AsyncIterable<object[]>;
    trainedOn: string[];
    hyper: Pick<TrainJob, 'lr' | 'lr_end' | 'epochs' | 'batch_size' | 'dropout' | 'beta' | 'max_length' | 'seed'>;
    extraMetrics: Record<string, unknown>;
  }): Promise<TrainResult> {
    const { config, iteration, name } = input;
    const store = deps.storeFor(config);
    const lineage = lineageOf(config);
    const modelId = modelIdFor(config, name);
    const label = `${input.method} ${name}`;
    const dir = path.join(deps.workDir, 'runs', config.run, 'train', name);
    await fs.mkdir(dir, { recursive: true });
    const data = path.join(dir, `${input.method}.jsonl`);
    const dataSha256 = await writeJsonlFile(data, Array.isArray(input.data) ? [input.data] : input.data);
    const output = path.join(dir, 'model');
    await fs.rm(output, { recursive: true, force: true });
    const localCheckpoints = path.join(dir, 'checkpoints');
    await fs.rm(localCheckpoints, { recursive: true, force: true });
    await fs.mkdir(localCheckpoints, { recursive: true });

    const every = config.durability.checkpointEvery;
    const multi = localTorchrun(config.compute.training);
    // checkpoints belong to exactly this job: base model, data and every setting that shapes the steps
    // (batch_size is global, so DDP checkpoints resume with any process count; FSDP's, local or remote, are sharded files)
    const memory = trainMemory(config, input.method);
    const jobDigest = configHash({
      method: input.method,
      base: input.base.sha256,
      data: dataSha256,
      hyper: input.hyper,
      every,
      compute: config.compute.gradientCheckpointing,
      ...(trainDistributed(config.compute.training)?.strategy === 'fsdp' ? { layout: 'fsdp' } : {}),
      ...memory,
    });
    const ckptPrefix = checkpointsPrefix(config.run, name, jobDigest);
    const scan = every > 0 ? await findNewestCheckpoint(store, ckptPrefix) : { newest: null, torn: [] };
    for (const t of scan.torn)
      stageLog('warn', `skipping torn checkpoint ${store.uri(t.prefix)}: ${t.reason}`, { run: config.run, iteration, stage: label });
    if (scan.newest)
      stageLog('info', 'resuming training from a checkpoint', { run: config.run, iteration, stage: label, step: scan.newest.step });
    const resume = scan.newest;
    if (resume)
      deps.reporter?.({
        run: config.run,
        iteration,
        stage: label,
        done: resume.step,
        total: 0,
        tokens: 0,
        elapsedS: 0,
        note: `resuming from checkpoint at step ${resume.step}`,
      });

    const started = Date.now();
    let lastCheckpoint = resume?.step ?? 0;
    let chain: Promise<void> = Promise.resolve();
    let chainError: unknown = null;
    const live = liveSignaller(signalMs);
    let lastLive: Parameters<LiveSignaller['update']>[0] | null = null;
    // a remote backend (compute.training) runs the job as srlm-<run>-<name>-<digest> with its files under the store
    const trainer = deps.trainerFor?.(config);
    const remotePrefix = remoteTrainPrefix(config.run, name, jobDigest);
    const remote = trainer
      ? {
          remote: {
            job_name: remoteJobBase(config.run, name, jobDigest, REMOTE_NAME_MAX),
            store_prefix: remotePrefix,
            model_key: input.base.externalPath ? null : modelPrefix(input.base.lineage, input.base.modelId),
          },
        }
      : {};
    const done = await withHeartbeats(
      async (update, signal) =>
        (trainer ?? deps.compute)
          .train(
            {
              mode: input.method,
              // a remote job reads a stored base model from the store itself: nothing to download here
              model:
                trainer && !input.base.externalPath
                  ? store.uri(modelPrefix(input.base.lineage, input.base.modelId))
                  : await modelDir(store, input.base),
              ref_model: null,
              data,
              output,
              ...input.hyper,
              grad_accum: 1,
              max_steps: null,
              device: config.compute.device,
              threads: config.compute.threads,
              gradient_checkpointing: config.compute.gradientCheckpointing,
              ...memory,
              checkpoint_every: every > 0 ? every : null,
              checkpoint_dir: every > 0 ? localCheckpoints : null,
              resume_from: resume ? resume.dir : null,
              ...remote,
              ...(multi && !trainer ? multi : {}),
            },
            {
              signal,
              onEvent: (ev) => {
                if (ev.event === 'checkpoint' && typeof ev.dir === 'string') {
                  const local = ev.dir;
                  chain = chain
                    .then(async () => {
                      const step = await publishCheckpoint(store, ckptPrefix, local);
                      // keep the newest complete checkpoint only; the one before goes once this one is whole
                      await pruneCheckpoints(store, ckptPrefix, [step]);
                      await fs.rm(local, { recursive: true, force: true });
                      lastCheckpoint = step;
                    })
                    .catch((err: unknown) => {
                      chainError ??= err;
                    });
                  return;
                }
                if (ev.event !== 'progress') return;
                const p = {
                  run: config.run,
                  iteration,
                  stage: label,
                  done: Number(ev.step ?? 0),
                  total: Number(ev.total_steps ?? 0),
                  tokens: 0,
                  elapsedS: (Date.now() - started) / 1000,
                  note:
                    typeof ev.loss === 'number'
                      ? `loss ${ev.loss.toFixed(4)}`
                      : typeof ev.job_name === 'string' && typeof ev.status === 'string'
                        ? `${ev.job_name}: ${ev.status}`
                        : undefined,
                };
                update({
                  ...p,
                  loss: ev.loss,
                  checkpointStep: lastCheckpoint,
                  ...(typeof ev.job_name === 'string' ? { job: ev.job_name, jobStatus: ev.status } : {}),
                });
                lastLive = {
                  iteration,
                  stage: label,
                  done: p.done,
                  total: p.total,
                  tokens: 0,
                  elapsedS: Math.round(p.elapsedS),
                  ...rates(p.done, p.total, 0, p.elapsedS),
                  ...(typeof ev.loss === 'number' ? { loss: ev.loss } : {}),
                  checkpointStep: lastCheckpoint,
                };
                live.update(lastLive);
                recordTrainingMetrics(modelId, {
                  ...(typeof ev.loss === 'number' ? { loss: ev.loss } : {}),
                  checkpointStep: lastCheckpoint,
                });
                deps.reporter?.(p);
              },
            },
          )
          .finally(() => chain),
      hbMs,
    );
    if (lastLive) await live.finish(lastLive);
    if (chainError)
      throw ApplicationFailure.retryable(
        `${where(config, iteration, label)}: could not store a checkpoint: ${(chainError as Error).message}`,
        'CheckpointFailed',
      );
    const metrics = { ...(await readJson(path.join(output, 'metrics.json'))), ...input.extraMetrics, compute: done };
    const model = await publishModel(store, {
      lineage,
      modelId,
      parent: input.base.modelId,
      method: input.method,
      trainedOn: input.trainedOn,
      metrics,
      dir: output,
    });
    await fs.rm(output, { recursive: true, force: true });
    await store.deletePrefix(ckptPrefix);
    if (trainer) await store.deletePrefix(remotePrefix);
    stageLog('info', 'model published', { run: config.run, iteration, stage: label, modelId, uri: model.uri });
    return { model, metrics };
  }

  return { trainModel };
}

/** A model an earlier attempt already trained and published, with the metrics in its manifest. */
export async function trainedBefore(store: ArtifactStore, model: ModelRef): Promise<TrainResult> {
  return { model, metrics: (await readModelMetrics(store, model)) ?? {} };
}

/** Writes batches of records to a JSONL file; returns the sha256 of its text. */
async function writeJsonlFile(file: string, batches: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<string> {
  const hash = createHash('sha256');
  const out = await fs.open(file, 'w');
  try {
    for await (const batch of batches) {
      const text = toJsonl(batch);
      hash.update(text);
      await out.write(text);
    }
  } finally {
    await out.close();
  }
  return hash.digest('hex');
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function readModelMetrics(store: ArtifactStore, ref: ModelRef): Promise<Record<string, unknown> | null> {
  const bytes = await store.getBytes(ref.key);
  const parsed = JSON.parse(bytes.toString('utf8')) as { metrics?: Record<string, unknown> };
  return parsed.metrics ?? null;
}
