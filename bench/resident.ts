/**
 * bench:resident — what keeping the model resident (`compute.resident`) saves across the
 * generation activities of an iteration, with the real model (SmolLM2-135M-Instruct, CPU).
 *
 * One "iteration" is three generation jobs on the same model, shaped like its stages
 * (prompts: n=1; candidates: n=4; judgments: n=3; `--requests` each, `--tokens` new tokens).
 * Side by side in each round, in alternating order:
 *
 *   per-job:  PythonCompute, one `python -m srlm_compute generate` process (and model load) per job
 *   resident: ResidentCompute, one `serve` process for the three jobs (its start counted)
 *
 * Printed per kind: median seconds per iteration, median seconds to the first token-bearing
 * answer of each job, and the ratio per-job / resident.
 *
 *   npm run bench:resident -- --rounds 3 --requests 8 --tokens 32
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type ComputeBackend, type GenerateJob, type GenerateRequest, PythonCompute } from '../backends/compute';
import { ResidentCompute, ResidentPool } from '../backends/resident-compute';
import { loadEnvPaths, repoRoot } from '../infra/paths';
import { packagedModel } from '../testing/packaged-model';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const ROUNDS = arg('rounds', 3);
const REQUESTS = arg('requests', 8);
const TOKENS = arg('tokens', 32);
const BATCH = arg('batch', 16);
const THREADS = arg('threads', 2);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const STAGES = [
  { stage: 'prompts', n: 1 },
  { stage: 'candidates', n: 4 },
  { stage: 'judgments', n: 3 },
];

async function main(): Promise<void> {
  const env = loadEnvPaths();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-bench-resident-'));
  const model = packagedModel(env.python, env.cacheDir, tmp);
  const packageDir = path.join(repoRoot(), 'compute');
  const perJob = new PythonCompute({ python: env.python, packageDir, workDir: path.join(tmp, 'jobs') });
  let jobNo = 0;
  const job = (stage: string, n: number, round: number): GenerateJob => {
    const dir = path.join(tmp, `job-${jobNo++}`);
    fs.mkdirSync(dir);
    const input = path.join(dir, 'requests.jsonl');
    const reqs: GenerateRequest[] = Array.from({ length: REQUESTS }, (_, i) => ({
      id: `${stage}-${round}-${i}`,
      messages: [{ role: 'user', content: `Write one sentence about topic number ${i} for the ${stage} stage.` }],
      n,
      temperature: 0.7,
      top_p: 0.9,
      max_new_tokens: TOKENS,
      seed: i,
    }));
    fs.writeFileSync(input, reqs.map((r) => JSON.stringify(r) + '\n').join(''));
    return { model, shards: [{ input, output: path.join(dir, 'outputs.jsonl') }], device: 'cpu', batch_size: BATCH, threads: THREADS };
  };
  const iteration = async (backend: ComputeBackend, round: number): Promise<{ seconds: number; tokens: number }> => {
    const started = Date.now();
    let tokens = 0;
    for (const s of STAGES) tokens += Number((await backend.generate(job(s.stage, s.n, round), {})).tokens ?? 0);
    return { seconds: (Date.now() - started) / 1000, tokens };
  };

  const results: Record<'per-job' | 'resident', { seconds: number; tokens: number }[]> = { 'per-job': [], resident: [] };
  console.log(
    `bench:resident — ${ROUNDS} rounds; an iteration = 3 jobs (n = 1, 4, 3) of ${REQUESTS} requests, ${TOKENS} new tokens, batch ${BATCH}, ${THREADS} threads, ${path.basename(model)} on CPU`,
  );
  for (let r = 0; r < ROUNDS; r++) {
    const order: ('per-job' | 'resident')[] = r % 2 === 0 ? ['per-job', 'resident'] : ['resident', 'per-job'];
    for (const kind of order) {
      // a fresh pool per round: the resident figure includes the one model load of its iteration
      const pool = new ResidentPool({ python: env.python, packageDir });
      const backend =
        kind === 'per-job'
          ? perJob
          : new ResidentCompute(pool, { idleSeconds: 600, affinitySeconds: 30, maxModels: 1, requestTimeoutSeconds: 1800 }, perJob);
      const res = await iteration(backend, r);
      await pool.stopAll();
      results[kind].push(res);
      console.log(`  round ${r + 1} ${kind.padEnd(8)} ${res.seconds.toFixed(1)} s, ${res.tokens} tokens`);
    }
  }
  const per = median(results['per-job'].map((x) => x.seconds));
  const res = median(results.resident.map((x) => x.seconds));
  console.log('\nkind       iteration median   tokens/s median');
  for (const kind of ['per-job', 'resident'] as const) {
    const s = median(results[kind].map((x) => x.seconds));
    const tps = median(results[kind].map((x) => x.tokens / x.seconds));
    console.log(`${kind.padEnd(10)} ${s.toFixed(1).padStart(10)} s ${tps.toFixed(1).padStart(14)}`);
  }
  console.log(
    `ratio per-job / resident: ${(per / res).toFixed(2)}x (${(per - res).toFixed(1)} s saved per iteration's three generation activities)`,
  );
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
