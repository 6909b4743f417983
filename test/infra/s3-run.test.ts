/**
 * A whole run (FakeCompute, a fake, named so) with its artifacts in S3 on a real
 * S3-compatible server, the worker in its own process with credentials from the AWS
 * environment variables: every stage, model and summary lands in the bucket, `srlm models`
 * reads the lineage from it, and the secret key appears in no workflow history, no log line
 * and no CLI output, not even when the store fails.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunConfigInput } from '../../core/schemas';
import { loadEnvPaths, repoRoot, s3ServerBin } from '../../infra/paths';
import { type S3ServerHandle, startS3Server } from '../../infra/s3-server';
import { iterationWorkflowId, runWorkflowId, TASK_QUEUES, type RunResult } from '../../workflows/contract';
import { testTemporalAddress } from '../helpers/temporal';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';

const run = promisify(execFile);
const repo = path.resolve(__dirname, '../..');
const ACCESS = 'srlmrunaccess';
const SECRET = `SECRET-${randomBytes(12).toString('hex')}`;

describe('a run with its store in S3 (Versity S3 Gateway, worker process with AWS env credentials)', () => {
  let tmp: string;
  let server: S3ServerHandle;
  let worker: WorkerProcess;
  let connection: Connection;
  let client: Client;
  let awsEnv: Record<string, string>;
  const outputs: string[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-s3-run-'));
    server = await startS3Server({ bin: s3ServerBin(loadEnvPaths()), dir: path.join(tmp, 's3'), accessKey: ACCESS, secretKey: SECRET });
    const admin = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
    });
    await admin.send(new CreateBucketCommand({ Bucket: 'srlm-runs' }));
    admin.destroy();
    awsEnv = { AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: server.endpoint };
    worker = spawnWorker(testTemporalAddress(), 'orchestration,generation,training', path.join(tmp, 'work'), {
      ...awsEnv,
      SRLM_LOG: 'json',
    });
    await worker.ready;
    connection = await Connection.connect({ address: testTemporalAddress() });
    client = new Client({ connection });
  }, 120_000);

  afterAll(async () => {
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await connection?.close();
    await server?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const config = (name: string, root: string): RunConfigInput => ({
    run: name,
    seed: { ift: path.join(repo, 'seed/ift.jsonl'), ranked: path.join(repo, 'seed/ranked.jsonl') },
    iterations: 1,
    prompts: { count: 8, requestsPerRound: 8, maxRounds: 4 },
    durability: { shardSize: 4, retryInitialSeconds: 0.2, maximumAttempts: 2, heartbeatTimeoutSeconds: 20, partialFlushSeconds: 0 },
    store: { root },
  });

  const history = async (workflowId: string): Promise<string> => {
    const out = await run(
      loadEnvPaths(repoRoot()).temporal,
      ['workflow', 'show', '--address', testTemporalAddress(), '--workflow-id', workflowId, '--output', 'json'],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    return out.stdout;
  };

  it('runs to completion with every artifact in the bucket', async () => {
    const result = (await client.workflow.execute('srlmRun', {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: runWorkflowId('s3run'),
      args: [{ config: config('s3run', 's3://srlm-runs/team/srlm') }],
      workflowExecutionTimeout: '5 minutes',
    })) as RunResult;
    expect(result.finalModel.modelId).toBe('s3run.m2');
    expect(result.finalModel.uri).toBe('s3://srlm-runs/team/srlm/models/s3run/s3run.m2/manifest.json');
    const admin = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
    });
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await admin.send(new ListObjectsV2Command({ Bucket: 'srlm-runs', Prefix: 'team/srlm/', ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    admin.destroy();
    for (const stage of ['prompts', 'candidates', 'judgments', 'pairs'])
      expect(keys).toContain(`team/srlm/runs/s3run/iter-1/${stage}/manifest.json`);
    expect(keys).toContain('team/srlm/runs/s3run/iter-1/summary.json');
    expect(keys).toContain('team/srlm/models/s3run/s3run.m2/manifest.json');
    expect(keys).toContain('team/srlm/models/s3run/promoted.json');
    // training checkpoints are removed once their model is published
    expect(keys.filter((k) => k.includes('/checkpoints/'))).toEqual([]);

    // `srlm models` reads the lineage straight from the bucket, credentials from the environment
    const models = await run(
      path.join(repo, 'node_modules/.bin/tsx'),
      [path.join(repo, 'cli/srlm.ts'), 'models', '--store', 's3://srlm-runs/team/srlm', '--lineage', 's3run', '--json'],
      {
        cwd: repo,
        env: { ...process.env, ...awsEnv },
      },
    );
    outputs.push(models.stdout, models.stderr);
    const lineage = JSON.parse(models.stdout) as { modelId: string; parent: string | null; promoted?: boolean }[];
    expect(lineage.map((m) => m.modelId)).toEqual(['s3run.m0', 's3run.sft-baseline', 's3run.m1', 's3run.m2']);
    expect(lineage.find((m) => m.modelId === 's3run.m2')?.promoted).toBe(true);
  });

  it('a bucket that does not exist fails the run at once, naming the object, without retries', async () => {
    const err = await client.workflow
      .execute('srlmRun', {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: runWorkflowId('s3missing'),
        args: [{ config: config('s3missing', 's3://srlm-no-such-bucket/x') }],
        workflowExecutionTimeout: '3 minutes',
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const text = await history(runWorkflowId('s3missing'));
    expect(text).toMatch(/s3:\/\/srlm-no-such-bucket\/x\/runs\/s3missing\/[^"]*: NoSuchBucket/);
    // non-retryable: the failing activity ran once
    const failed = (
      JSON.parse(text) as {
        events: {
          eventType: string;
          activityTaskFailedEventAttributes?: { failure?: { applicationFailureInfo?: { type?: string; nonRetryable?: boolean } } };
          activityTaskStartedEventAttributes?: { attempt?: number };
        }[];
      }
    ).events;
    const info = failed.find((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_FAILED')?.activityTaskFailedEventAttributes?.failure
      ?.applicationFailureInfo;
    expect(info).toMatchObject({ type: 'S3NoSuchBucket', nonRetryable: true });
    expect(
      failed
        .filter((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_STARTED')
        .every((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) === 1),
    ).toBe(true);
  });

  it('the secret key is in no history, log line or CLI output', async () => {
    const texts = [
      await history(runWorkflowId('s3run')),
      await history(iterationWorkflowId('s3run', 1)),
      await history(runWorkflowId('s3missing')),
      worker.lines.join('\n'),
      worker.stderr.join(''),
      ...outputs,
    ];
    // the logs are real: JSON lines with the run's stages, and the failure's message
    expect(worker.lines.some((l) => l.includes('"stage":"candidates"'))).toBe(true);
    expect(texts.join('\n')).toContain('NoSuchBucket');
    for (const t of texts) {
      expect(t).not.toContain(SECRET);
      expect(t).not.toContain(SECRET.slice(7, 31)); // nor a fragment of it
    }
  });
});
