/**
 * Errors that say what to do, in seconds: no Temporal server at the address, no worker on the
 * task queue (against the real dev server, in a namespace of its own where no worker polls),
 * --json errors as JSON, and arguments and stores refused before anything connects.
 * Time to each error is a benchmark figure (bench/cli.ts), not asserted here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli';
import { RUN, seedReportStore } from '../helpers/report-fixtures';
import { testTemporalAddress } from '../helpers/temporal';
import { freePort } from '../../infra/dev-server';
import { TASK_QUEUES } from '../../workflows/contract';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-errors-'));
const { SRLM_STORE_ROOT: _s, SRLM_STATE_DIR: _d, TEMPORAL_NAMESPACE: _n, ...baseEnv } = process.env;
// a port free a moment ago: nothing listens there (127.0.0.1:1 is not safe on a shared machine)
let noServer: NodeJS.ProcessEnv = baseEnv;
let noServerAddress = '';
beforeAll(async () => {
  noServerAddress = `127.0.0.1:${await freePort()}`;
  noServer = { ...baseEnv, TEMPORAL_ADDRESS: noServerAddress };
});

describe('with no Temporal server', () => {
  it('names the address tried and how to start a server', async () => {
    const res = await runCli(['status', 'some-run'], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      `error: no Temporal server answers at ${noServerAddress} (namespace default; ECONNREFUSED). Start one: \`npm start\``,
    );
    expect(res.stderr).toContain('or `temporal server start-dev`');
  });

  it('--json: the error is one JSON object with the same exit code', async () => {
    const res = await runCli(['status', 'some-run', '--json'], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    const out = JSON.parse(res.stderr) as { error: { kind: string; message: string } };
    expect(out.error.kind).toBe('no-server');
    expect(out.error.message).toContain(noServerAddress);
    // a usage error too
    const usage = await runCli(['status', '--json'], { env: noServer });
    expect(usage.code).toBe(1);
    expect(JSON.parse(usage.stderr)).toMatchObject({
      error: { kind: 'usage', message: expect.stringMatching(/missing required argument 'run'/) },
    });
  });

  it('checks the config file before connecting', async () => {
    const cfg = path.join(tmp, 'bad.json');
    fs.writeFileSync(cfg, JSON.stringify({ run: 'x', seed: { ift: 'missing.jsonl' } }));
    const res = await runCli(['start', '-c', cfg], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/"seed\.ift": .*missing\.jsonl does not exist/);
    expect(res.stderr).not.toMatch(/Temporal server/);
  });
});

describe('bad arguments and stores are refused before anything connects', () => {
  it('watch --interval abc', async () => {
    const res = await runCli(['watch', 'r', '--interval', 'abc'], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/--interval <seconds>' argument 'abc' is invalid\. must be a number of seconds above 0/);
  });

  it('a --store that does not exist, for models and report', async () => {
    const missing = path.join(tmp, 'no-such-store');
    for (const args of [
      ['models', '--store', missing],
      ['report', 'r', '--store', missing],
    ]) {
      const res = await runCli(args, { env: noServer });
      expect(res.code, args[0]).toBe(1);
      expect(res.stderr).toBe(
        `error: --store ${missing}: ${missing} does not exist; name the store a run wrote (--store, SRLM_STORE_ROOT or --state-dir)\n`,
      );
    }
  });

  it('a file:// store is the directory it names; another scheme is refused', async () => {
    const root = path.join(tmp, 'file-store');
    await seedReportStore(root);
    const res = await runCli(['report', RUN, '--store', pathToFileURL(root).href, '--out', path.join(tmp, 'file-out'), '--json'], {
      env: noServer,
    });
    expect(res.code).toBe(0);
    expect(fs.existsSync(path.join(tmp, 'file-out', 'report.html'))).toBe(true);
    const gs = await runCli(['models', '--store', 'gs://bucket/x'], { env: noServer });
    expect(gs.stderr).toMatch(/only a directory, file:\/\/\/absolute\/path or s3:\/\/bucket\/prefix is a store/);
  });

  it('a discriminated union names its field and the allowed values', async () => {
    const cfg = path.join(tmp, 'engine.json');
    fs.writeFileSync(cfg, JSON.stringify({ run: 'x', seed: { ift: 'ift.jsonl' }, compute: { engine: { kind: 'tgi' } } }));
    const res = await runCli(['start', '-c', cfg], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('"compute.engine.kind": must be one of "local", "openai", "vllm"');
    expect(res.stderr).not.toMatch(/more than one allowed form/);
  });
});

describe('with a server but no worker on the task queue (real dev server)', () => {
  const namespace = `srlm-no-worker-${process.pid}`;
  let env: NodeJS.ProcessEnv;
  let connection: Connection;
  beforeAll(async () => {
    const address = testTemporalAddress();
    env = { ...baseEnv, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace };
    connection = await Connection.connect({ address });
    await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
    const client = new Client({ connection, namespace });
    // a new namespace takes a few seconds to be usable
    for (let i = 0; ; i++) {
      try {
        await client.workflow.start('srlmRun', { taskQueue: TASK_QUEUES.orchestration, workflowId: 'srlm-waiting', args: [{}] });
        break;
      } catch (err) {
        if (i > 60) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }, 60_000);
  afterAll(async () => connection?.close());

  it('status names the queue and the command that starts a worker', async () => {
    const res = await runCli(['status', 'waiting'], { env });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      `error: no worker polls task queue srlm-orchestration at ${env.TEMPORAL_ADDRESS}, so run "waiting" cannot answer its progress query. Start one: \`npx tsx workers/main.ts --queues orchestration\``,
    );
    const json = await runCli(['status', 'waiting', '--json'], { env });
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { kind: 'no-worker' } });
  });

  it('cancel says at once that no worker will stop the run, and refuses a run that already ended', async () => {
    const res = await runCli(['cancel', 'waiting'], { env });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('error: cancellation of run "waiting" is recorded, but no worker polls task queue srlm-orchestration');
    await new Client({ connection, namespace }).workflow.getHandle('srlm-waiting').terminate('test');
    const ended = await runCli(['cancel', 'waiting', '--json'], { env });
    expect(ended.code).toBe(1);
    expect(JSON.parse(ended.stderr)).toEqual({
      error: { kind: 'invalid-input', message: 'run "waiting" already ended (terminated); nothing to cancel' },
    });
  });

  it('a scheduled run is found by the name srlm prints (the time with dashes)', async () => {
    const client = new Client({ connection, namespace });
    // the workflow ID a Schedule gives a run: srlm-<schedule>-<time>, with colons
    await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: 'srlm-nightly-2026-12-06T03:00:00Z',
      args: [{}],
    });
    const res = await runCli(['status', 'nightly-2026-12-06T03-00-00Z'], { env });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no worker polls task queue srlm-orchestration');
    const cancelled = await runCli(['cancel', 'nightly-2026-12-06T03-00-00Z'], { env });
    expect(cancelled.stderr).toContain('cancellation of run "nightly-2026-12-06T03-00-00Z" is recorded');
    const history = await client.workflow.getHandle('srlm-nightly-2026-12-06T03:00:00Z').fetchHistory();
    expect(history.events?.some((e) => e.workflowExecutionCancelRequestedEventAttributes)).toBe(true);
  });

  it('resume keeps a scheduled run scheduled, and refuses a config naming another run unless --rename', async () => {
    const client = new Client({ connection, namespace });
    const config = { run: 'resumable', seed: { ift: 'ift.jsonl' } };
    await client.workflow.start('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: 'srlm-resumable',
      args: [{ config, scheduled: true }],
    });
    await client.workflow.getHandle('srlm-resumable').terminate('test');
    const res = await runCli(['resume', 'resumable', '--json'], { env });
    expect(res.code).toBe(0);
    const out = JSON.parse(res.stdout) as { runId: string };
    const history = await client.workflow.getHandle('srlm-resumable', out.runId).fetchHistory();
    const input = defaultPayloadConverter.fromPayload<{ scheduled?: boolean }>(
      history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!,
    );
    expect(input.scheduled).toBe(true);
    await client.workflow.getHandle('srlm-resumable').terminate('test');

    const dir = fs.mkdtempSync(path.join(tmp, 'rename-'));
    const line = (i: number) => JSON.stringify({ id: `i${i}`, prompt: `Explain topic ${i}.`, response: `Topic ${i}.` });
    fs.writeFileSync(path.join(dir, 'ift.jsonl'), Array.from({ length: 10 }, (_, i) => line(i)).join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'other.json'), JSON.stringify({ run: 'other', seed: { ift: 'ift.jsonl' } }));
    const refused = await runCli(['resume', 'resumable', '-c', path.join(dir, 'other.json')], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('the config names run "other", not "resumable": a resumed run keeps its name; pass --rename');
    const renamed = await runCli(['resume', 'resumable', '-c', path.join(dir, 'other.json'), '--rename', '--json'], { env });
    expect(renamed.code).toBe(0);
    expect(JSON.parse(renamed.stdout)).toMatchObject({ run: 'resumable', configChanged: true });
  });

  it('a run that does not exist is named as such', async () => {
    const res = await runCli(['status', 'nobody'], { env });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: no run "nobody" \(workflow srlm-nobody\) in namespace srlm-no-worker-\d+/);
  });
});
