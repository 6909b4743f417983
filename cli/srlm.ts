/**
 * srlm — durable self-rewarding training on Temporal.
 *
 *   srlm run --config configs/demo.json     embedded: start what is missing, run, watch
 *   srlm start --config run.json            start a run on an existing cluster
 *   srlm status <run>                       progress of a run
 *   srlm pause <run>                        pause between stages
 *   srlm resume <run> [--config run.json]   lift a pause, or start a new execution of a failed/cancelled/terminated run
 *   srlm watch <run>                        follow a running run with live progress
 *   srlm cancel <run>                       cancel a run; waits until its compute has stopped
 *   srlm models [--lineage L] [--json]      the model lineage recorded in the artifact store
 *   srlm report <run> [--out DIR]           the run's iteration summaries as one HTML page and Markdown
 *   srlm validate -c <config> [--json]      check a config and its files without starting anything
 *   srlm plan <config> [--json]             memory, tokens and GPU-hours per stage; exit 1 if it cannot fit
 */
import { Command, InvalidArgumentError } from 'commander';
import { terminalSafe } from '../core/terminal';
import { LOCAL_S3_STORE } from './defaults';

// the commands' code, loaded when one runs: --help needs none of it
type Commands = typeof import('./commands');
const commands = (): Promise<Commands> => import('./commands');
type CommandName = { [K in keyof Commands]: K extends `cmd${string}` ? K : never }[keyof Commands];
function lazy<K extends CommandName>(name: K): (...args: Parameters<Commands[K]>) => Promise<void> {
  return async (...args) => {
    const fn = (await commands())[name] as (...a: Parameters<Commands[K]>) => Promise<void>;
    await fn(...args);
  };
}

/** A --interval value: seconds, a positive number up to a day. */
function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !(n > 0) || n > 86400)
    throw new InvalidArgumentError(`must be a number of seconds above 0 and at most 86400, got "${value}"`);
  return n;
}

const program = new Command()
  .name('srlm')
  .description('Durable self-rewarding training for language models (Yuan et al. 2024) on Temporal');

program
  .command('run')
  .description('run on the embedded stack: start a Temporal dev server and workers if none answer, start (or resume) the run, watch it')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--run <name>', 'override the run name in the config')
  .option('--state-dir <dir>', 'state directory (Temporal database, artifacts, work files)', undefined)
  .option(
    '--store <dir|s3-uri>',
    "artifact store, replacing the config's store.root: a directory or s3://bucket/prefix (endpoint and credentials the AWS way)",
  )
  .option(
    '--local-s3',
    `also start a local S3-compatible server (Versity S3 Gateway, built by bootstrap) in the state directory and keep the artifacts there (default store ${LOCAL_S3_STORE})`,
  )
  .action(lazy('cmdRun'));

program
  .command('validate')
  .description('check a run config and every file it names without starting anything (no Temporal server needed)')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--run <name>', 'override the run name in the config')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdValidate'));

program
  .command('start')
  .description('start a run on an existing Temporal cluster (workers run elsewhere)')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--run <name>', 'override the run name in the config')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdStart'));

program
  .command('status')
  .description("show a run's progress")
  .argument('<run>', 'run name')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdStatus'));

program
  .command('pause')
  .description('pause a running run: the running stage finishes, the next one waits for `srlm resume`')
  .argument('<run>', 'run name')
  .option('--reason <text>', 'why (shown by status and the progress query)')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdPause'));

program
  .command('resume')
  .description(
    'continue a run: lift a pause, or start a new execution of a run that failed, was cancelled or terminated (reusing every completed artifact)',
  )
  .argument('<run>', 'run name')
  .option('-c, --config <file>', 'continue under this (fixed) config instead of the one the run had')
  .option('--rename', 'with --config: use it even though it names another run (the run keeps its name)')
  .option('--watch', 'watch the resumed run until it ends')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdResume'));

program
  .command('watch')
  .description(
    'follow a running run: stage changes, live progress of its activities (done/total, shards, tok/s, loss, checkpoints), iteration summaries',
  )
  .argument('<run>', 'run name')
  .option('--interval <seconds>', 'seconds between progress lines', parseSeconds, 5)
  .action(lazy('cmdWatch'));

program
  .command('cancel')
  .description('cancel a run: its compute processes are stopped, published artifacts stay')
  .argument('<run>', 'run name')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdCancel'));

program
  .command('models')
  .description('list the models in the artifact store: parent, method, training data, metrics')
  .option('--lineage <name>', 'only this lineage')
  .option(
    '--store <dir|s3-uri>',
    'artifact store: a directory or s3://bucket/prefix (default $SRLM_STORE_ROOT or <state dir>/artifacts; S3 endpoint and credentials the AWS way, e.g. AWS_ENDPOINT_URL_S3, AWS_PROFILE)',
  )
  .option('--state-dir <dir>', 'state directory of the embedded stack')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdModels'));

program
  .command('report')
  .description(
    "a run's iteration summaries as one self-contained HTML page with charts (judge scores, head-to-head, judge quality, lengths, drops, reward-hacking watch, gate) and as Markdown tables",
  )
  .argument('<run>', 'run name')
  .option(
    '--store <dir|s3-uri>',
    'artifact store: a directory or s3://bucket/prefix (default $SRLM_STORE_ROOT or <state dir>/artifacts; S3 endpoint and credentials the AWS way)',
  )
  .option('--state-dir <dir>', 'state directory of the embedded stack')
  .option('--out <dir>', 'where report.html and report.md go (default <state dir>/reports/<run>)')
  .option('--json', 'print {"html": path, "md": path}')
  .action(lazy('cmdReport'));

program
  .command('plan')
  .description(
    'what the run will need and cost, per stage: memory per GPU for training (sharding, precision, checkpointing, DPO reference) and sampling (tensor parallel, KV cache), tokens, checkpoint size, GPU-hours; exits 1 naming the numbers when it cannot fit (see docs/paper-scale.md)',
  )
  .argument('<config>', 'run config (JSON)')
  .option('--json', 'the plan as JSON')
  .action(lazy('cmdPlan'));

const schedule = program
  .command('schedule')
  .description('recurring retraining with Temporal Schedules (overlap Skip, catch-up window, pause on failure)');

schedule
  .command('create')
  .description(
    'create a schedule that starts a run of this config; with "baseModel": {"promoted": "<lineage>"} each run starts from the last promoted model',
  )
  .argument('<name>', 'schedule name; runs are named <name>-<time>')
  .requiredOption('-c, --config <file>', 'run config (JSON)')
  .option('--cron <expr...>', 'cron expression(s) in UTC, e.g. "0 3 * * 1"')
  .option('--every <interval>', 'a fixed interval instead, e.g. 24h')
  .option('--catchup-window <duration>', 'how late a missed run may still start (default 1 hour)')
  .option('--paused', 'create it paused')
  .option('--note <text>', 'a note shown by describe')
  .action(lazy('cmdScheduleCreate'));

schedule.command('list').description("list srlm's schedules").option('--json', 'machine-readable output').action(lazy('cmdScheduleList'));

schedule
  .command('describe')
  .description('spec, state, next and recent runs of a schedule')
  .argument('<name>', 'schedule name')
  .option('--json', 'machine-readable output')
  .action(lazy('cmdScheduleDescribe'));

for (const [cmd, what] of [
  ['pause', 'pause a schedule (no new runs start)'],
  ['unpause', 'unpause a schedule'],
] as const) {
  schedule
    .command(cmd)
    .description(what)
    .argument('<name>', 'schedule name')
    .option('--note <text>', 'why')
    .action(async (name: string, opts: { note?: string }) => (await commands()).cmdSchedulePause(cmd, name, opts));
}

schedule
  .command('trigger')
  .description('start a run of the schedule now (skipped if one is running)')
  .argument('<name>', 'schedule name')
  .action(lazy('cmdScheduleTrigger'));

schedule
  .command('backfill')
  .description('take the runs the schedule would have started in a past time range')
  .argument('<name>', 'schedule name')
  .requiredOption('--from <time>', 'start (ISO 8601)')
  .requiredOption('--to <time>', 'end (ISO 8601)')
  .action(lazy('cmdScheduleBackfill'));

schedule
  .command('delete')
  .description('delete a schedule (its runs and models stay)')
  .argument('<name>', 'schedule name')
  .action(lazy('cmdScheduleDelete'));

const jsonWanted = process.argv.slice(2).includes('--json');
if (jsonWanted) {
  // commander's own usage errors (unknown option, missing argument) as JSON too
  program.configureOutput({
    writeErr: (text) =>
      process.stderr.write(
        text.startsWith('error: ')
          ? `${terminalSafe(JSON.stringify({ error: { kind: 'usage', message: text.slice(7).trim() } }))}\n`
          : text,
      ),
  });
  for (const sub of program.commands) sub.configureOutput(program.configureOutput());
  for (const sub of schedule.commands) sub.configureOutput(program.configureOutput());
}

program.parseAsync(process.argv).catch(async (err: unknown) => {
  (await commands()).reportError(err, jsonWanted);
  process.exit(1);
});
