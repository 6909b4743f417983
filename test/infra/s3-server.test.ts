import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { freePort } from '../../infra/dev-server';
import { loadEnvPaths, s3ServerBin, type EnvPaths } from '../../infra/paths';
import { startS3Server, type S3ServerHandle } from '../../infra/s3-server';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';

const ACCESS_KEY = 'srlm-test-access';
const SECRET_KEY = 'srlm-test-secret-0123456789';

function client(endpoint: string, opts: { secretKey?: string; maxAttempts?: number } = {}): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: opts.secretKey ?? SECRET_KEY },
    maxAttempts: opts.maxAttempts,
    // One request per connection (what the fault proxy assumes).
    requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: false }) }),
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('s3ServerBin / loadEnvPaths', () => {
  const base: EnvPaths = { python: '/p', temporal: '/t', cacheDir: '/c', venv: '/v' };

  it('throws, naming bootstrap, when the env file has no s3server', () => {
    expect(() => s3ServerBin(base)).toThrow(/run `bash scripts\/bootstrap\.sh --test`/);
    expect(() => s3ServerBin({ ...base, s3server: '/nonexistent/versitygw' })).toThrow(/does not exist.*bootstrap/);
  });

  it('parses an env file without s3server, and SRLM_S3_SERVER_BIN overrides', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-paths-test-'));
    try {
      fs.mkdirSync(path.join(root, '.srlm'));
      fs.writeFileSync(
        path.join(root, '.srlm', 'env.json'),
        JSON.stringify({ python: '/v/bin/python', temporal: '/v/bin/temporal', cacheDir: '/c', venv: '/v' }),
      );
      expect(loadEnvPaths(root, {}).s3server).toBeUndefined();
      expect(loadEnvPaths(root, { SRLM_S3_SERVER_BIN: '/x/versitygw' }).s3server).toBe('/x/versitygw');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('startS3Server (versitygw)', () => {
  let bin: string;
  let dir: string;
  let server: S3ServerHandle;
  let s3: S3Client;
  const Bucket = 'srlm-test';

  beforeAll(async () => {
    bin = s3ServerBin(loadEnvPaths());
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-s3-server-test-'));
    server = await startS3Server({ bin, dir: path.join(dir, 'data'), accessKey: ACCESS_KEY, secretKey: SECRET_KEY });
    s3 = client(server.endpoint);
  });
  afterAll(async () => {
    s3?.destroy();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers on a free port, with the secret off its command line', async () => {
    expect(server.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${server.endpoint}/`);
    expect(res.status).toBe(403); // unsigned
    expect(await res.text()).toContain('<Code>AccessDenied</Code>');
    const cmdline = fs.readFileSync(`/proc/${server.pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('posix');
    expect(cmdline.join(' ')).not.toContain(SECRET_KEY);
  });

  it('CreateBucket, PutObject with metadata, GetObject, HeadObject, ListObjectsV2', async () => {
    await s3.send(new CreateBucketCommand({ Bucket }));
    expect(fs.statSync(path.join(server.dir, Bucket)).isDirectory()).toBe(true);
    const put = await s3.send(
      new PutObjectCommand({
        Bucket,
        Key: 'runs/r1/a.json',
        Body: '{"a":1}',
        ContentType: 'application/json',
        Metadata: { sha256: 'abc123' },
      }),
    );
    expect(put.ETag).toMatch(/^"[0-9a-f]{32}"$/);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'runs/r1/b.bin', Body: Buffer.alloc(1000, 1) }));
    await s3.send(new PutObjectCommand({ Bucket, Key: 'runs/r2/c.bin', Body: 'c' }));

    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'runs/r1/a.json' }));
    expect(await got.Body!.transformToString()).toBe('{"a":1}');
    expect(got.Metadata).toEqual({ sha256: 'abc123' });
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'runs/r1/a.json' }));
    expect(head).toMatchObject({ ContentLength: 7, ContentType: 'application/json', Metadata: { sha256: 'abc123' } });

    const list = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'runs/r1/' }));
    expect(list.Contents?.map((c) => [c.Key, c.Size])).toEqual([
      ['runs/r1/a.json', 7],
      ['runs/r1/b.bin', 1000],
    ]);
    const dirs = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'runs/', Delimiter: '/' }));
    expect(dirs.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['runs/r1/', 'runs/r2/']);

    await expect(s3.send(new GetObjectCommand({ Bucket, Key: 'missing' }))).rejects.toMatchObject({ name: 'NoSuchKey' });
    await expect(s3.send(new HeadObjectCommand({ Bucket, Key: 'missing' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });

  it('treats a directory made with mkdir as a bucket', async () => {
    fs.mkdirSync(path.join(server.dir, 'made-by-mkdir'));
    const buckets = await s3.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((b) => b.Name)).toContain('made-by-mkdir');
    await s3.send(new PutObjectCommand({ Bucket: 'made-by-mkdir', Key: 'k', Body: 'v' }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'made-by-mkdir', Key: 'k' }));
    expect(await got.Body!.transformToString()).toBe('v');
  });

  it('multipart upload: ListParts, ListMultipartUploads, invisible until completed, metadata kept; abort', async () => {
    const Key = 'mp/model.bin';
    const part1 = Buffer.alloc(5 * 1024 * 1024, 1); // parts other than the last must be >= 5 MiB
    const part2 = Buffer.from('tail');
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket, Key, Metadata: { sha256: 'mp-digest' }, ContentType: 'application/octet-stream' }),
    );
    expect(UploadId).toBeTruthy();
    const e1 = (await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: part1 }))).ETag!;
    const e2 = (await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: part2 }))).ETag!;

    const parts = await s3.send(new ListPartsCommand({ Bucket, Key, UploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag])).toEqual([
      [1, part1.length, e1],
      [2, part2.length, e2],
    ]);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'mp/' }));
    expect(uploads.Uploads?.map((u) => [u.Key, u.UploadId])).toEqual([[Key, UploadId]]);

    // not visible before completion
    await expect(s3.send(new HeadObjectCommand({ Bucket, Key }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'mp/' }));
    expect(listed.Contents ?? []).toEqual([]);

    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: {
          Parts: [
            { ETag: e1, PartNumber: 1 },
            { ETag: e2, PartNumber: 2 },
          ],
        },
      }),
    );
    expect(done.ETag).toMatch(/-2"$/);
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
    expect(head).toMatchObject({ ContentLength: part1.length + part2.length, Metadata: { sha256: 'mp-digest' } });
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads ?? []).toEqual([]);

    const other = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: 'mp/aborted' }));
    await s3.send(new UploadPartCommand({ Bucket, Key: 'mp/aborted', UploadId: other.UploadId, PartNumber: 1, Body: 'x' }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'mp/aborted', UploadId: other.UploadId }));
    await expect(s3.send(new ListPartsCommand({ Bucket, Key: 'mp/aborted', UploadId: other.UploadId }))).rejects.toMatchObject({
      name: 'NoSuchUpload',
    });
  });

  it('rejects a wrong secret', async () => {
    const bad = client(server.endpoint, { secretKey: 'not-the-secret' });
    await expect(bad.send(new ListBucketsCommand({}))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
    bad.destroy();
  });

  describe('behind the fault proxy', () => {
    let proxy: FaultProxy;
    beforeAll(async () => {
      proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('the SDK retries injected 503s and a reset in the middle of an upload', async () => {
      const p = client(proxy.endpoint);
      proxy.inject({ kind: 'status', status: 503, match: /^PUT \/srlm-test\/faults\/one/ }, 2);
      const one = await p.send(new PutObjectCommand({ Bucket, Key: 'faults/one', Body: Buffer.alloc(3_000_000, 5) }));
      expect(one.$metadata.attempts).toBe(3);
      expect(proxy.faultsInjected.status).toBe(2);

      proxy.inject({ kind: 'reset', afterBytes: 200_000 });
      const two = await p.send(new PutObjectCommand({ Bucket, Key: 'faults/two', Body: Buffer.alloc(3_000_000, 6) }));
      expect(two.$metadata.attempts).toBe(2);
      expect(proxy.faultsInjected.reset).toBe(1);
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'faults/two' }));
      expect(head.ContentLength).toBe(3_000_000);
      p.destroy();
    });

    it('without retries, a reset upload fails and leaves no object', async () => {
      const p = client(proxy.endpoint, { maxAttempts: 1 });
      proxy.inject({ kind: 'reset', afterBytes: 200_000 });
      await expect(p.send(new PutObjectCommand({ Bucket, Key: 'faults/three', Body: Buffer.alloc(3_000_000, 7) }))).rejects.toThrow(
        /ECONNRESET|socket hang up|EPIPE/,
      );
      await expect(s3.send(new HeadObjectCommand({ Bucket, Key: 'faults/three' }))).rejects.toMatchObject({
        $metadata: { httpStatusCode: 404 },
      });
      p.destroy();
    });
  });
});

describe('startS3Server lifecycle', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-s3-lifecycle-test-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stop() leaves no process behind, frees the port, and is idempotent', async () => {
    const port = await freePort();
    const s = await startS3Server({
      bin: s3ServerBin(loadEnvPaths()),
      dir: path.join(dir, 'stop'),
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
      port,
    });
    expect(s.endpoint).toBe(`http://127.0.0.1:${port}`);
    expect(alive(s.pid)).toBe(true);
    await s.stop();
    expect(alive(s.pid)).toBe(false);
    await expect(fetch(`${s.endpoint}/`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    await s.stop();
    const log = fs.readFileSync(s.logFile, 'utf8');
    expect(log).toContain('VersityGW');
    expect(log).toMatch(/\| GET \| \/ \|/); // the readiness probe's request line

    const q = await startS3Server({
      bin: s3ServerBin(loadEnvPaths()),
      dir: path.join(dir, 'quiet'),
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
      quiet: true,
    });
    await q.stop();
    expect(fs.readFileSync(q.logFile, 'utf8')).not.toMatch(/\| GET \|/);
  });

  it('refuses a busy port, and reports a server that exits at once with its log', async () => {
    const s = await startS3Server({
      bin: s3ServerBin(loadEnvPaths()),
      dir: path.join(dir, 'busy'),
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
    });
    try {
      await expect(
        startS3Server({ bin: s3ServerBin(loadEnvPaths()), dir: path.join(dir, 'busy2'), accessKey: 'a', secretKey: 'b', port: s.port }),
      ).rejects.toThrow(/port .* is in use/);
    } finally {
      await s.stop();
    }
    const script = path.join(dir, 'fails.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "cannot start: broken on purpose" >&2\nexit 3\n', { mode: 0o755 });
    await expect(startS3Server({ bin: script, dir: path.join(dir, 'fails'), accessKey: 'a', secretKey: 'b' })).rejects.toThrow(
      /exited \(code 3\)[\s\S]*broken on purpose/,
    );
  });
});
