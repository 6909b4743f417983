/**
 * The S3 store against a real S3-compatible server (Versity S3 Gateway, built from the Go
 * module proxy by bootstrap), through a TCP fault proxy that injects 5xx answers, connection
 * resets in the middle of uploads and slow responses.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNewestCheckpoint, publishCheckpoint } from '../../store/checkpoints';
import { IntegrityError } from '../../store/object-cache';
import { S3Store, type S3StoreOptions, s3ClientConfig } from '../../store/s3store';
import { sha256Hex } from '../../store/store';
import { StoreConfig } from '../../core/schemas';
import { loadEnvPaths, s3ServerBin } from '../../infra/paths';
import { type S3ServerHandle, startS3Server } from '../../infra/s3-server';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy';
import { storeContract } from '../helpers/store-contract';
import { localCheckpoint } from '../helpers/checkpoints';

const ACCESS = 'srlmtestaccess';
const SECRET = `srlm-test-secret-${randomBytes(6).toString('hex')}`;
const MiB = 1024 * 1024;

let server: S3ServerHandle;
let proxy: FaultProxy;
let tmp: string;
let admin: S3Client;
let seq = 0;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-s3-'));
  server = await startS3Server({ bin: s3ServerBin(loadEnvPaths()), dir: path.join(tmp, 'data'), accessKey: ACCESS, secretKey: SECRET });
  proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
  admin = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
  });
}, 60_000);

afterAll(async () => {
  admin?.destroy();
  await proxy?.stop();
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A new bucket and a store on it, through the fault proxy. */
async function newStore(over: Partial<S3StoreOptions> & { maxAttempts?: number } = {}): Promise<S3Store> {
  const bucket = `srlm-test-${++seq}`;
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  return storeOn(bucket, over);
}

function storeOn(bucket: string, over: Partial<S3StoreOptions> & { maxAttempts?: number; sdkChecksums?: boolean } = {}): S3Store {
  const client = new S3Client({
    ...s3ClientConfig({ endpoint: proxy.endpoint, maxAttempts: over.maxAttempts ?? 5 }),
    ...(over.sdkChecksums === false ? { responseChecksumValidation: 'WHEN_REQUIRED' as const } : {}),
    credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
  });
  return new S3Store({
    bucket,
    prefix: 'team/srlm',
    cacheDir: path.join(tmp, `cache-${++seq}`),
    client,
    partSize: 5 * MiB,
    concurrency: 4,
    ...over,
  });
}

storeContract('S3Store on Versity S3 Gateway', () => newStore(), { largeFileBytes: 12 * MiB });

describe('S3Store faults and integrity (real server, fault proxy)', () => {
  it('retries 503 SlowDown and 500 answers until the write and read go through', async () => {
    const store = await newStore();
    const before = proxy.faultsInjected.status;
    proxy.inject({ kind: 'status', status: 503, match: /^PUT / }, 2);
    proxy.inject({ kind: 'status', status: 500, match: /^GET / }, 1);
    await store.putBytes('runs/r/a.jsonl', 'line\n');
    expect((await store.getBytes('runs/r/a.jsonl')).toString()).toBe('line\n');
    expect(proxy.faultsInjected.status - before).toBe(3);
    expect(proxy.pending()).toBe(0);
  });

  it('a connection reset in the middle of a part upload is retried; the object is whole', async () => {
    const store = await newStore();
    const file = path.join(tmp, 'reset.bin');
    const bytes = randomBytes(12 * MiB);
    fs.writeFileSync(file, bytes);
    const before = proxy.faultsInjected.reset;
    proxy.inject({ kind: 'reset', afterBytes: 2 * MiB, match: /^PUT .*partNumber=2/ }, 1);
    await store.putFile('models/l/m/model.safetensors', file);
    expect(proxy.faultsInjected.reset - before).toBe(1);
    expect(store.stats).toMatchObject({ partRetries: 1, partsUploaded: 3 });
    expect(sha256Hex(await store.getBytes('models/l/m/model.safetensors'))).toBe(sha256Hex(bytes));
  });

  it('slow responses only slow it down', async () => {
    const store = await newStore();
    proxy.inject({ kind: 'slow', delayMs: 300 }, 2);
    const t0 = Date.now();
    await store.putBytes('s/1', 'slow');
    expect((await store.getBytes('s/1')).toString()).toBe('slow');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
  });

  it('an upload that fails for good leaves no visible object; the next attempt resumes it, sending only the missing part', async () => {
    const store = await newStore({ maxAttempts: 2 });
    const file = path.join(tmp, 'resume.bin');
    const bytes = randomBytes(14 * MiB); // parts of 5, 5, 4 MiB
    fs.writeFileSync(file, bytes);
    proxy.inject({ kind: 'reset', afterBytes: 1 * MiB, match: /^PUT .*partNumber=3/ }, 2);
    await expect(store.putFile('ckpt/step-50/model.safetensors', file)).rejects.toThrow(`${store.rootUri}/ckpt/step-50/model.safetensors`);
    expect(proxy.pending()).toBe(0);
    expect(await store.exists('ckpt/step-50/model.safetensors')).toBe(false);
    expect(await store.list('ckpt')).toEqual([]);
    const open = await admin.send(new ListMultipartUploadsCommand({ Bucket: store.bucket }));
    expect(open.Uploads?.length).toBe(1);
    // another process (a new store object, a new cache) picks it up
    const again = storeOn(store.bucket);
    await again.putFile('ckpt/step-50/model.safetensors', file);
    expect(again.stats).toMatchObject({ partsReused: 2, partsUploaded: 1 });
    expect(sha256Hex(await again.getBytes('ckpt/step-50/model.safetensors'))).toBe(sha256Hex(bytes));
    expect((await admin.send(new ListMultipartUploadsCommand({ Bucket: store.bucket }))).Uploads ?? []).toEqual([]);
  });

  it('bytes that do not match the recorded sha256 are read again, then fail naming the object', async () => {
    const store = await newStore();
    await store.putBytes('runs/r/iter-1/judgments/shard-00000.jsonl', 'true bytes\n');
    // flip the stored bytes behind the server's back (the posix backend keeps objects as files)
    const onDisk = path.join(server.dir, store.bucket, 'team/srlm/runs/r/iter-1/judgments/shard-00000.jsonl');
    fs.writeFileSync(onDisk, 'fake bytes\n');
    const err = await store.getBytes('runs/r/iter-1/judgments/shard-00000.jsonl').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    // the SDK's CRC check or srlm's sha256 check catches it, whichever runs first
    expect((err as Error).message).toMatch(
      new RegExp(`^artifact ${store.rootUri}/runs/r/iter-1/judgments/shard-00000\\.jsonl: (sha256|the bytes read do not match)`),
    );
    expect((err as Error).message).toContain('(3 reads)');
    expect(store.stats.integrityRetries).toBe(2);
    await expect(store.localDir('runs/r/iter-1/judgments')).rejects.toThrow(/shard-00000\.jsonl: .*\(3 reads\)/);
  });

  it("without the SDK's response checksums (servers that keep none), the recorded sha256 still catches corruption", async () => {
    const store = await newStore();
    const file = path.join(tmp, 'multi.bin');
    fs.writeFileSync(file, randomBytes(7 * MiB));
    await store.putFile('models/l/m9/model.safetensors', file);
    const onDisk = path.join(server.dir, store.bucket, 'team/srlm/models/l/m9/model.safetensors');
    const fd = fs.openSync(onDisk, 'r+');
    fs.writeSync(fd, Buffer.from('corrupted'), 0, 9, 6 * MiB);
    fs.closeSync(fd);
    await expect(store.getBytes('models/l/m9/model.safetensors')).rejects.toThrow(
      new RegExp(
        `^artifact ${store.rootUri}/models/l/m9/model\\.safetensors: (sha256 of the bytes read is [0-9a-f]{64}, the object's recorded sha256 is [0-9a-f]{64}|the bytes read do not match).*\\(3 reads\\)`,
      ),
    );
    const reader = storeOn(store.bucket, { sdkChecksums: false });
    await expect(reader.getBytes('models/l/m9/model.safetensors')).rejects.toThrow(
      /model\.safetensors: sha256 of the bytes read is .*\(3 reads\)/,
    );
    await expect(reader.localDir('models/l/m9')).rejects.toThrow(/model\.safetensors: sha256 of the bytes read is .*\(3 reads\)/);
    expect(fs.existsSync(reader.cache.objectPath(sha256Hex(fs.readFileSync(file))))).toBe(false);
  });

  it('training checkpoints go through S3: the newest complete one is found, a torn one (an object lost) is skipped', async () => {
    const store = await newStore();
    const prefix = 'runs/r/train/m1/checkpoints/job1';
    expect(await publishCheckpoint(store, prefix, localCheckpoint(tmp, 5))).toBe(5);
    expect(await publishCheckpoint(store, prefix, localCheckpoint(tmp, 10))).toBe(10);
    const scan = await findNewestCheckpoint(store, prefix);
    expect(scan.newest?.step).toBe(10);
    expect(fs.readFileSync(path.join(scan.newest!.dir, 'optimizer.pt'), 'utf8')).toBe('adam at 10');
    await store.delete(`${prefix}/step-000010/optimizer.pt`);
    const after = await findNewestCheckpoint(store, prefix);
    expect(after.newest?.step).toBe(5);
    expect(after.torn).toEqual([{ prefix: `${prefix}/step-000010`, reason: 'optimizer.pt is missing' }]);
  });

  it('a checkpoint scan reads metadata only: of four checkpoints, three torn, only the resumed one is downloaded', async () => {
    const writer = await newStore();
    const prefix = 'runs/r/train/m1/checkpoints/job2';
    const fileBytes = 2 * MiB;
    for (const step of [5, 10, 15, 20]) {
      const d = path.join(tmp, `big-${step}`);
      fs.mkdirSync(d, { recursive: true });
      const files = ['model.safetensors', 'optimizer.pt'].map((name) => {
        const data = randomBytes(fileBytes);
        fs.writeFileSync(path.join(d, name), data);
        return { path: name, sha256: sha256Hex(data), bytes: data.length };
      });
      fs.writeFileSync(path.join(d, 'manifest.json'), JSON.stringify({ kind: 'train-checkpoint', step, mode: 'dpo', files }));
      await publishCheckpoint(writer, prefix, d);
    }
    // torn: an object lost, an object replaced by other bytes (its recorded sha256 changes with it), a truncated one
    await writer.delete(`${prefix}/step-000020/optimizer.pt`);
    await writer.putBytes(`${prefix}/step-000015/model.safetensors`, randomBytes(fileBytes));
    await writer.putBytes(`${prefix}/step-000010/optimizer.pt`, randomBytes(fileBytes - 1));
    // another host, nothing cached
    const reader = storeOn(writer.bucket);
    const scan = await findNewestCheckpoint(reader, prefix);
    expect(scan.newest?.step).toBe(5);
    expect(scan.torn.map((t) => t.reason)).toEqual([
      'optimizer.pt is missing',
      expect.stringMatching(/^model\.safetensors sha256 [0-9a-f]{12}… \(recorded by the store\) differs from the manifest's/),
      `optimizer.pt has ${fileBytes - 1} bytes, manifest says ${fileBytes}`,
    ]);
    const manifests = (await reader.list(prefix)).filter((k) => k.endsWith('manifest.json'));
    let manifestBytes = 0;
    for (const k of manifests) manifestBytes += (await writer.getBytes(k)).length;
    // read: the four manifests, and step 5's directory (its two files, verified against their sha256 as they arrive, and its manifest)
    const resumedManifest = (await writer.getBytes(`${prefix}/step-000005/manifest.json`)).length;
    expect(reader.stats.bytesDownloaded).toBe(manifestBytes + 2 * fileBytes + resumedManifest);
    expect(sha256Hex(fs.readFileSync(path.join(scan.newest!.dir, 'optimizer.pt')))).toBe(
      JSON.parse(fs.readFileSync(path.join(tmp, 'big-5', 'manifest.json'), 'utf8')).files[1].sha256,
    );
    console.log(
      `checkpoint scan: bytes downloaded to scan 4 checkpoints (3 torn) of ${2 * fileBytes} bytes each: ${reader.stats.bytesDownloaded} (the resumed checkpoint's ${2 * fileBytes + resumedManifest} + manifests ${manifestBytes}); of the torn ones' files: 0`,
    );
  });

  it('the content-addressed cache: a host that holds a file by sha256 downloads it no more', async () => {
    const writer = await newStore();
    const dir = path.join(tmp, 'model-src');
    fs.mkdirSync(dir, { recursive: true });
    const weights = randomBytes(6 * MiB);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"layers": 2}');
    for (const f of ['model.safetensors', 'config.json']) await writer.putFile(`models/l/m2/${f}`, path.join(dir, f));
    // the writer's own host already holds what it uploaded
    await writer.localDir('models/l/m2');
    expect(writer.stats).toMatchObject({ objectsDownloaded: 0, objectsFromCache: 2 });
    // another host: downloads once, then reads from its cache; the directory is the same
    const reader = storeOn(writer.bucket);
    const first = await reader.localDir('models/l/m2');
    expect(reader.stats).toMatchObject({ objectsDownloaded: 2, objectsFromCache: 0 });
    const second = await reader.localDir('models/l/m2');
    expect(second).toBe(first);
    expect(reader.stats).toMatchObject({ objectsDownloaded: 2, objectsFromCache: 2 });
    expect(sha256Hex(fs.readFileSync(path.join(second, 'model.safetensors')))).toBe(sha256Hex(weights));
    // a changed object is a different tree: nothing stale is served
    await writer.putBytes('models/l/m2/config.json', '{"layers": 3}');
    const third = await reader.localDir('models/l/m2');
    expect(third).not.toBe(first);
    expect(fs.readFileSync(path.join(third, 'config.json'), 'utf8')).toBe('{"layers": 3}');
    expect(reader.stats.objectsDownloaded).toBe(3);
  });

  it('wrong credentials fail at once, non-retryably, without the secret in the message', async () => {
    const store = await newStore();
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const bad = new S3Store({
      bucket: store.bucket,
      prefix: 'x',
      cacheDir: path.join(tmp, 'cache-bad'),
      client: new S3Client({
        ...s3ClientConfig({ endpoint: proxy.endpoint }),
        credentials: { accessKeyId: ACCESS, secretAccessKey: wrong },
      }),
    });
    const before = proxy.connections;
    const err = (await bad.putBytes('k', 'v').catch((e: unknown) => e)) as ApplicationFailure;
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err.type).toBe('S3SignatureDoesNotMatch');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`${bad.rootUri}/k`);
    expect(err.message).not.toContain(wrong);
    expect(proxy.connections - before).toBe(1); // the SDK did not retry it either
  });

  it('passes server-side encryption settings on every write', async () => {
    const seen: Record<string, string>[] = [];
    const store = await newStore({ sse: 'aws:kms', kmsKeyId: 'arn:aws:kms:us-east-1:111122223333:key/srlm-test' });
    store.client.middlewareStack.add(
      (next) => async (args) => {
        const req = args.request as { method?: string; headers?: Record<string, string> };
        if (req.method === 'PUT' || req.method === 'POST') seen.push({ ...req.headers });
        return next(args);
      },
      { step: 'finalizeRequest', name: 'captureSse' },
    );
    const file = path.join(tmp, 'sse.bin');
    fs.writeFileSync(file, randomBytes(6 * MiB));
    await store.putBytes('e/small', 'x').catch(() => undefined);
    await store.putFile('e/large', file).catch(() => undefined);
    const writes = seen.filter((h) => !('x-amz-copy-source' in h));
    const withSse = writes.filter(
      (h) =>
        h['x-amz-server-side-encryption'] === 'aws:kms' &&
        h['x-amz-server-side-encryption-aws-kms-key-id'] === 'arn:aws:kms:us-east-1:111122223333:key/srlm-test',
    );
    // PutObject and CreateMultipartUpload carry it (UploadPart and Complete need not)
    expect(withSse.length).toBeGreaterThanOrEqual(2);
  });
});

describe('s3:// store settings in the run config', () => {
  const parse = (store: unknown) => StoreConfig.safeParse(store);
  it('accepts s3://bucket/prefix with S3 options', () => {
    const r = parse({ root: 's3://my-bucket/team/srlm', s3: { endpoint: 'http://127.0.0.1:7070', sse: 'aws:kms', kmsKeyId: 'k' } });
    expect(r.success).toBe(true);
  });
  it('refuses credentials in the URI without repeating them, bad buckets and unsafe prefixes', () => {
    const creds = parse({ root: 's3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/x' });
    expect(creds.success).toBe(false);
    expect(JSON.stringify(creds.error!.issues)).not.toContain('wJalrXUtnFEMI');
    expect(creds.error!.issues[0]!.message).toMatch(/credentials/);
    expect(parse({ root: 's3://Bad_Bucket/x' }).error!.issues[0]!.message).toMatch(/invalid bucket/);
    expect(parse({ root: 's3://bucket/a/../b' }).error!.issues[0]!.message).toMatch(/"\.\." segment/);
    expect(parse({ root: '/local/dir', s3: { region: 'eu-west-1' } }).error!.issues[0]!.path).toEqual(['s3']);
    expect(parse({ root: 's3://bucket/x', s3: { kmsKeyId: 'k' } }).error!.issues[0]!.path).toEqual(['s3', 'kmsKeyId']);
  });
});
