/**
 * bench:cli — how fast the srlm command line starts and fails.
 *
 * Medians of N runs of each case, side by side in one run:
 *   --help                  `bin/srlm --help` (compiled dist/, built first) against `tsx cli/srlm.ts --help`
 *   no server               `srlm status x` with TEMPORAL_ADDRESS at a port nothing listens on (free a moment before)
 *   no worker               `srlm status x` of a run waiting on a dev server where no worker polls
 * With --baseline DIR (another checkout with node_modules, e.g. main), its `tsx cli/srlm.ts`
 * runs the same cases, as the "before" figures.
 *
 *   npm run bench:cli -- --runs 5 [--baseline /work/main]
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer } from '../infra/dev-server';
import { loadEnvPaths, repoRoot } from '../infra/paths';
import { TASK_QUEUES } from '../workflows/contract';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('--runs') ?? 5);
const baseline = arg('--baseline');
const root = repoRoot();

interface Cli {
  label: string;
  cmd: string;
  pre: string[];
}
const clis: Cli[] = [
  { label: 'bin/srlm (compiled)', cmd: path.join(root, 'bin/srlm'), pre: [] },
  { label: 'tsx cli/srlm.ts', cmd: path.join(root, 'node_modules/.bin/tsx'), pre: [path.join(root, 'cli/srlm.ts')] },
  ...(baseline
    ? [{ label: `baseline tsx ${baseline}`, cmd: path.join(baseline, 'node_modules/.bin/tsx'), pre: [path.join(baseline, 'cli/srlm.ts')] }]
    : []),
];

function timeOnce(cli: Cli, args: string[], env: NodeJS.ProcessEnv): Promise<{ seconds: number; code: number; out: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    execFile(cli.cmd, [...cli.pre, ...args], { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      resolve({
        seconds,
        code: err ? Number((err as { code?: unknown }).code ?? 1) : 0,
        out: (stderr || stdout).trim().split('\n').at(-1) ?? '',
      });
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  console.log(`\n${name}: srlm ${args.join(' ')}`);
  const medians: number[] = [];
  for (const cli of clis) {
    const times: number[] = [];
    let last = { code: 0, out: '' };
    for (let i = 0; i < RUNS; i++) {
      const r = await timeOnce(cli, args, env);
      times.push(r.seconds);
      last = r;
    }
    medians.push(median(times));
    console.log(
      `  ${cli.label.padEnd(34)} median ${median(times).toFixed(2)} s  (min ${Math.min(...times).toFixed(2)}, max ${Math.max(...times).toFixed(2)}; exit ${last.code}: ${last.out.slice(0, 110)})`,
    );
  }
  for (let i = 1; i < clis.length; i++)
    console.log(`  ${clis[0]!.label} is ${(medians[i]! / medians[0]!).toFixed(1)}x faster than ${clis[i]!.label}`);
}

async function main(): Promise<void> {
  execFileSync('bash', [path.join(root, 'scripts/build.sh')], { stdio: 'inherit' });
  const { SRLM_STORE_ROOT: _s, TEMPORAL_NAMESPACE: _n, ...base } = process.env;
  const env = { ...base, SRLM_QUIET_STALE: '1' };
  console.log(`bench:cli — ${RUNS} runs per case, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}`);
  await measure('--help', ['--help'], env);
  await measure('no server', ['status', 'x'], { ...env, TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-bench-cli-'));
  const server = await startDevServer({ temporalBin: loadEnvPaths(root).temporal, dbFile: path.join(dir, 'temporal.db'), uiPort: false });
  try {
    const connection = await Connection.connect({ address: server.address });
    await new Client({ connection }).workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: 'srlm-waiting',
      args: [{}],
    });
    await connection.close();
    await measure('no worker', ['status', 'waiting'], { ...env, TEMPORAL_ADDRESS: server.address });
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
