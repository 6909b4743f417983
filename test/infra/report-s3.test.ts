/**
 * `srlm report` on an s3:// store (Versity S3 Gateway, credentials from the AWS environment
 * variables): the same report as from a directory holding the same objects.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { type CliResult, runCli } from '../helpers/run-cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../store/s3store';
import { loadEnvPaths, s3ServerBin } from '../../infra/paths';
import { type S3ServerHandle, startS3Server } from '../../infra/s3-server';
import { RUN, seedReportStore } from '../helpers/report-fixtures';

const ACCESS = 'srlmreportaccess';
const SECRET = 'srlmreportsecret0123456789';

describe('srlm report on an S3 store', () => {
  let tmp: string;
  let server: S3ServerHandle;
  let client: S3Client;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-report-s3-'));
    server = await startS3Server({ bin: s3ServerBin(loadEnvPaths()), dir: path.join(tmp, 's3'), accessKey: ACCESS, secretKey: SECRET });
    client = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
    });
    await client.send(new CreateBucketCommand({ Bucket: 'reports' }));
    await seedReportStore(new S3Store({ bucket: 'reports', prefix: 'team/srlm', cacheDir: path.join(tmp, 'seed-cache'), client }));
    await seedReportStore(path.join(tmp, 'local'));
  }, 120_000);

  afterAll(async () => {
    client?.destroy();
    await server?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const report = (store: string, out: string): Promise<CliResult> =>
    runCli(['report', RUN, '--store', store, '--out', out, '--json'], {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: ACCESS,
        AWS_SECRET_ACCESS_KEY: SECRET,
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL_S3: server.endpoint,
        SRLM_CACHE_DIR: path.join(tmp, 'cache'),
      },
    });

  it('reads the summaries and manifests from the bucket and writes the report a directory store gives', async () => {
    const s3 = await report('s3://reports/team/srlm', path.join(tmp, 'out-s3'));
    expect(s3.stderr).toBe('');
    expect(s3.code).toBe(0);
    const local = await report(path.join(tmp, 'local'), path.join(tmp, 'out-local'));
    expect(local.code).toBe(0);
    // the same page but for the store's name and the time it was made
    const same = (file: string): string =>
      fs.readFileSync(file, 'utf8').replace(/store \S+ · generated \S+|store \S+; generated \S+/, 'STORE');
    const files = JSON.parse(s3.stdout) as { html: string; md: string };
    expect(fs.readFileSync(files.html, 'utf8')).toContain('store s3://reports/team/srlm');
    expect(same(files.html)).toBe(same(path.join(tmp, 'out-local', 'report.html')));
    expect(same(files.md)).toBe(same(path.join(tmp, 'out-local', 'report.md')));
    expect(same(files.md)).toContain('Promoted model of lineage fixture: m3');
  });

  it('names the run and the bucket when the run has no summaries there', async () => {
    const res = await report('s3://reports/elsewhere', path.join(tmp, 'none'));
    expect(res.code).toBe(1);
    // with --json the error is JSON too
    expect(JSON.parse(res.stderr.trim())).toEqual({
      error: {
        kind: 'invalid-input',
        message: `run "${RUN}" has no iteration summaries in the store s3://reports/elsewhere (looked for s3://reports/elsewhere/runs/${RUN}/iter-*/summary.json)`,
      },
    });
  });
});
