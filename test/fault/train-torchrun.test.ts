/**
 * PythonCompute with the torchrun launcher (`compute.training: {kind: "local", launcher:
 * "torchrun", nprocPerNode: 2}`): a real 2-process DDP job on CPU (gloo) end to end, and an
 * abort that must stop every process of the launch (launcher, torchrun agent, both ranks).
 * Tiny random Llama (`make-tiny-model`): the point is the process plumbing, not the model.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComputeEvent, computeArgs, localTorchrun, PythonCompute, type TrainJob } from '../../backends/compute';
import { TrainingBackend } from '../../core/schemas';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { waitFor } from '../helpers/stack';
import { makeTinyModel, pidAlive } from '../helpers/tiny-model';

const repo = repoRoot();
const env = loadEnvPaths(repo);

/** Pids and command lines of live processes that mention `dir` (this test's own job files). */
async function processesUnder(dir: string): Promise<{ pid: number; args: string }[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,args=']);
  return stdout
    .split('\n')
    .filter((l) => l.includes(dir) && l.includes('srlm_compute') && !l.includes(' ps '))
    .map((l) => {
      const t = l.trim();
      const at = t.indexOf(' ');
      return { pid: Number(t.slice(0, at)), args: t.slice(at + 1) };
    });
}

describe('PythonCompute: torchrun launcher (2 CPU processes)', () => {
  let tmp: string;
  let tiny: string;
  let compute: PythonCompute;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-torchrun-'));
    compute = new PythonCompute({
      python: env.python,
      packageDir: path.join(repo, 'compute'),
      workDir: path.join(tmp, 'jobs'),
      killGraceMs: 3000,
    });
    tiny = await makeTinyModel(compute, env.python, repo, env.cacheDir, tmp);
  }, 600_000);

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function trainJob(name: string, rows: number, extra: Partial<TrainJob>): TrainJob {
    const data = path.join(tmp, `${name}.jsonl`);
    fs.writeFileSync(
      data,
      Array.from({ length: rows }, (_, i) =>
        JSON.stringify({ id: String(i), prompt: `Question ${i}: what is ${i} plus ${i}?`, completion: `The answer is ${2 * i}.` }),
      ).join('\n') + '\n',
    );
    return {
      mode: 'sft',
      model: tiny,
      ref_model: null,
      data,
      output: path.join(tmp, `${name}-out`),
      lr: 1e-3,
      lr_end: 1e-4,
      epochs: 1,
      batch_size: 2,
      grad_accum: 1,
      dropout: 0.1,
      beta: 0.1,
      max_length: 128,
      seed: 0,
      device: 'cpu',
      threads: 1,
      max_steps: null,
      gradient_checkpointing: true,
      ...localTorchrun(TrainingBackend.parse({ kind: 'local', launcher: 'torchrun', nprocPerNode: 2 })),
      ...extra,
    };
  }

  it('maps the run config to a torchrun launch through srlm_compute.launch', () => {
    const t = localTorchrun(TrainingBackend.parse({ kind: 'local', launcher: 'torchrun', nprocPerNode: 4, strategy: 'fsdp' }));
    expect(t).toEqual({ launcher: { kind: 'torchrun', nproc_per_node: 4 }, distributed: { strategy: 'fsdp' } });
    expect(computeArgs('train', '/j.json', t?.launcher)).toEqual([
      '-m',
      'srlm_compute.launch',
      '--standalone',
      '--nproc-per-node',
      '4',
      '-m',
      'srlm_compute',
      'train',
      '--job',
      '/j.json',
    ]);
    expect(localTorchrun(TrainingBackend.parse({ kind: 'local' }))).toBeUndefined();
    expect(localTorchrun(undefined)).toBeUndefined();
    for (const [training, needle] of [
      [{ kind: 'local', launcher: 'torchrun' }, 'nprocPerNode: is required'],
      [{ kind: 'local', nprocPerNode: 2 }, 'nprocPerNode: is only meaningful'],
      [{ kind: 'local', launcher: 'torchrun', nprocPerNode: 2, fsdpLayerClass: 'LlamaDecoderLayer' }, 'fsdpLayerClass: is only meaningful'],
    ] as const) {
      const res = TrainingBackend.safeParse(training);
      expect(res.success).toBe(false);
      expect(res.error?.issues.map((i) => `${String(i.path.at(-1))}: ${i.message}`).join('\n')).toContain(needle);
    }
  });

  it('runs a 2-process SFT job end to end: one event stream, one model', async () => {
    const events: ComputeEvent[] = [];
    const job = trainJob('ok', 4, { max_steps: 2 });
    const done = await compute.train(job, { onEvent: (ev) => events.push(ev) });
    expect(done.event).toBe('done');
    expect(events.map((e) => e.event)).toEqual(['start', 'progress', 'progress', 'done']);
    expect(events[0]).toMatchObject({ world_size: 2, strategy: 'ddp', per_device_batch_size: 1 });
    expect(events.filter((e) => e.event === 'progress').map((e) => e.step)).toEqual([1, 2]);
    const metrics = JSON.parse(fs.readFileSync(path.join(job.output, 'metrics.json'), 'utf8')) as Record<string, unknown>;
    expect(metrics).toMatchObject({ steps: 2, world_size: 2, batch_size: 2 });
    expect(fs.existsSync(path.join(job.output, 'model.safetensors'))).toBe(true);
    // the launcher field stays on this side: compute/ would reject an unknown key
    const written = fs
      .readdirSync(path.join(tmp, 'jobs'))
      .map((f) => JSON.parse(fs.readFileSync(path.join(tmp, 'jobs', f), 'utf8')) as Record<string, unknown>);
    expect(
      written.some((j) => j.output === job.output && !('launcher' in j) && (j.distributed as { strategy: string }).strategy === 'ddp'),
    ).toBe(true);
  }, 300_000);

  it('an abort stops every process of the launch', async () => {
    const ac = new AbortController();
    let seen: { pid: number; args: string }[] = [];
    const job = trainJob('abort', 16, { epochs: 50 });
    const run = compute.train(job, {
      signal: ac.signal,
      onEvent: (ev) => {
        if (ev.event === 'progress' && seen.length === 0) {
          void processesUnder(tmp).then((p) => {
            seen = p;
            ac.abort();
          });
        }
      },
    });
    await expect(run).rejects.toThrow(/cancelled/);
    // the launcher, torchrun's agent and both ranks were running
    expect(seen.filter((p) => p.args.includes('srlm_compute.launch')).length).toBe(1);
    expect(seen.filter((p) => p.args.includes('torch.distributed.run')).length).toBe(1);
    expect(
      seen.filter((p) => /-m srlm_compute train --job/.test(p.args) && !/srlm_compute.launch|torch.distributed.run/.test(p.args)).length,
    ).toBe(2);
    await waitFor('every process of the launch to exit', () => seen.every((p) => !pidAlive(p.pid)), 15_000, 100);
    expect(await processesUnder(tmp)).toEqual([]);
    expect(fs.existsSync(job.output)).toBe(false);
  }, 300_000);
});
