/**
 * bench:store — moving a checkpoint through the S3 store on loopback, against the simplest
 * alternatives, all in one run on one server:
 *
 *   store upload     S3Store.putFile: sha256 pass, multipart parts in parallel, resumable
 *   store download   S3Store.localDir on a host with an empty cache: parallel objects,
 *                    streamed into the content-addressed cache with sha256 verification
 *   single PUT/GET   one PutObject / GetObject of the same bytes (streamed), no parts
 *   lib-storage      @aws-sdk/lib-storage Upload (parallel multipart, not resumable), for reference
 *   disk copy        fs.copyFile of the file (what the local store does)
 *
 * The server is Versity S3 Gateway (posix backend, keep-alive) from bootstrap, on this host's
 * disk. Prints MB/s per way (median of --reps), and the ratios the targets are about.
 *
 *   npm run bench:store -- [--mib 1024] [--reps 3] [--part-mib 16] [--concurrency 8]
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { S3Store, s3ClientConfig } from '../store/s3store';
import { loadEnvPaths, s3ServerBin } from '../infra/paths';
import { startS3Server } from '../infra/s3-server';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const mib = arg('mib', 1024);
  const reps = arg('reps', 3);
  const partMiB = arg('part-mib', 16);
  const concurrency = arg('concurrency', 8);
  const bytes = mib * 1024 * 1024;
  const tmp = await fs.mkdtemp(path.join(process.env.SRLM_BENCH_DIR ?? os.tmpdir(), 'srlm-bench-store-'));
  const access = 'benchaccess';
  const secret = randomBytes(16).toString('hex');
  const server = await startS3Server({
    bin: s3ServerBin(loadEnvPaths()),
    dir: path.join(tmp, 's3'),
    accessKey: access,
    secretKey: secret,
    keepAlive: true,
  });
  const credentials = { accessKeyId: access, secretAccessKey: secret };
  // every way below shares the store's client settings (retries, checksums: see s3ClientConfig)
  const client = new S3Client({ ...s3ClientConfig({ endpoint: server.endpoint }), credentials });
  try {
    await client.send(new CreateBucketCommand({ Bucket: 'bench' }));
    const src = path.join(tmp, 'model.safetensors');
    const fh = await fs.open(src, 'w');
    const chunk = Buffer.alloc(16 * 1024 * 1024);
    for (let off = 0; off < bytes; off += chunk.length) {
      randomFillSync(chunk);
      await fh.write(chunk, 0, Math.min(chunk.length, bytes - off));
    }
    await fh.close();
    console.log(
      `bench:store: ${mib} MiB file, ${reps} reps, parts of ${partMiB} MiB, ${concurrency} in flight; server ${server.endpoint} (Versity S3 Gateway, posix backend on ${tmp}); ${os.cpus().length} CPUs`,
    );

    const times: Record<string, number[]> = {};
    const time = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      const t0 = process.hrtime.bigint();
      await fn();
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      (times[name] ??= []).push(s);
      console.log(`  ${name.padEnd(16)} ${(bytes / 1e6 / s).toFixed(0).padStart(6)} MB/s  (${s.toFixed(2)} s)`);
    };

    for (let r = 1; r <= reps; r++) {
      console.log(`rep ${r}/${reps}`);
      const key = `rep-${r}`;
      const store = new S3Store({
        bucket: 'bench',
        prefix: key,
        client,
        cacheDir: path.join(tmp, `cache-up-${r}`),
        partSize: partMiB * 1024 * 1024,
        concurrency,
      });
      await time('disk copy', async () => {
        await fs.copyFile(src, path.join(tmp, `copy-${r}`));
      });
      await fs.rm(path.join(tmp, `copy-${r}`));
      await time('store upload', () => store.putFile('ckpt/model.safetensors', src));
      const reader = new S3Store({
        bucket: 'bench',
        prefix: key,
        client,
        cacheDir: path.join(tmp, `cache-down-${r}`),
        partSize: partMiB * 1024 * 1024,
        concurrency,
      });
      await time('store download', () => reader.localDir('ckpt'));
      await fs.rm(path.join(tmp, `cache-up-${r}`), { recursive: true, force: true });
      await fs.rm(path.join(tmp, `cache-down-${r}`), { recursive: true, force: true });
      await time('single PUT', () =>
        client.send(new PutObjectCommand({ Bucket: 'bench', Key: `${key}/single`, Body: createReadStream(src), ContentLength: bytes })),
      );
      await time('single GET', async () => {
        const res = await client.send(new GetObjectCommand({ Bucket: 'bench', Key: `${key}/single` }));
        await pipeline(res.Body as Readable, createWriteStream(path.join(tmp, `get-${r}`)));
      });
      await fs.rm(path.join(tmp, `get-${r}`));
      await time('lib-storage', () =>
        new Upload({
          client,
          params: { Bucket: 'bench', Key: `${key}/libstorage`, Body: createReadStream(src) },
          queueSize: concurrency,
          partSize: partMiB * 1024 * 1024,
        }).done(),
      );
      for (const k of ['single', 'libstorage', 'ckpt/model.safetensors'])
        await client.send(new DeleteObjectCommand({ Bucket: 'bench', Key: `${key}/${k}` }));
    }

    const mbps = (name: string): number => bytes / 1e6 / median(times[name]!);
    console.log(`\nmedians over ${reps} reps (${mib} MiB):`);
    for (const name of Object.keys(times)) console.log(`  ${name.padEnd(16)} ${mbps(name).toFixed(0).padStart(6)} MB/s`);
    console.log('\nratios:');
    console.log(`  store upload   / disk copy   ${(mbps('store upload') / mbps('disk copy')).toFixed(2)}   (target >= 0.70)`);
    console.log(`  store download / disk copy   ${(mbps('store download') / mbps('disk copy')).toFixed(2)}   (target >= 0.70)`);
    console.log(`  store upload   / single PUT  ${(mbps('store upload') / mbps('single PUT')).toFixed(2)}   (target > 1)`);
    console.log(`  store download / single GET  ${(mbps('store download') / mbps('single GET')).toFixed(2)}   (target > 1)`);
    console.log(`  store upload   / lib-storage ${(mbps('store upload') / mbps('lib-storage')).toFixed(2)}`);
  } finally {
    client.destroy();
    await server.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
