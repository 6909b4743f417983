/**
 * The embedded stack: a Temporal server (started only when none answers at the address)
 * plus in-process workers for every task queue.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { ProgressReporter } from '../activities/progress';
import { type DevServerHandle, isTemporalReachable, startDevServer } from '../infra/dev-server';
import { ensureS3ServerBin, loadEnvPaths } from '../infra/paths';
import { type S3ServerHandle, startS3Server } from '../infra/s3-server';
import { ALL_QUEUES, createWorkers, defaultDeps, installQuietRuntime } from '../workers';

export interface EmbeddedStack {
  address: string;
  namespace: string;
  client: Client;
  workers: Worker[];
  startedServer: DevServerHandle | null;
  /** the local S3 server, when asked for */
  s3: S3ServerHandle | null;
  close(): Promise<void>;
}

export interface StackOptions {
  address: string;
  namespace: string;
  stateDir: string;
  reporter?: ProgressReporter;
  log?: (line: string) => void;
  uiPort?: number;
  /** start a local S3-compatible server (Versity Gateway) holding this bucket, for an s3:// store */
  localS3?: { bucket: string };
}

/**
 * Starts the local S3 server on `<state>/s3/data` with credentials generated once and kept in
 * `<state>/s3/credentials.json` (mode 0600), makes the bucket, and points this process's AWS
 * settings at it (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION),
 * which the in-process workers' default credential chain then reads. The secret is never printed.
 */
async function startLocalS3(stateDir: string, bucket: string, log: (l: string) => void): Promise<S3ServerHandle> {
  const dir = path.join(stateDir, 's3');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const credFile = path.join(dir, 'credentials.json');
  if (!fs.existsSync(credFile)) {
    const creds = { accessKeyId: `srlm${randomBytes(8).toString('hex')}`, secretAccessKey: randomBytes(24).toString('base64url') };
    fs.writeFileSync(credFile, JSON.stringify(creds, null, 2) + '\n', { mode: 0o600 });
  }
  const creds = JSON.parse(fs.readFileSync(credFile, 'utf8')) as { accessKeyId: string; secretAccessKey: string };
  const server = await startS3Server({
    bin: ensureS3ServerBin(loadEnvPaths(), log),
    dir: path.join(dir, 'data'),
    accessKey: creds.accessKeyId,
    secretKey: creds.secretAccessKey,
    logFile: path.join(dir, 'server.log'),
  });
  process.env.AWS_ENDPOINT_URL_S3 = server.endpoint;
  process.env.AWS_ACCESS_KEY_ID = creds.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = creds.secretAccessKey;
  process.env.AWS_REGION ??= server.region;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  const s3 = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true });
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket })).catch(() => s3.send(new CreateBucketCommand({ Bucket: bucket })));
  } finally {
    s3.destroy();
  }
  log(
    `Local S3 server (Versity S3 Gateway) at ${server.endpoint}, bucket ${bucket}, data in ${path.join(dir, 'data')}; credentials in ${credFile}`,
  );
  return server;
}

export async function startEmbeddedStack(opts: StackOptions): Promise<EmbeddedStack> {
  const log = opts.log ?? ((l: string) => console.log(l));
  fs.mkdirSync(opts.stateDir, { recursive: true });
  installQuietRuntime();
  let server: DevServerHandle | null = null;
  if (!(await isTemporalReachable(opts.address))) {
    const env = loadEnvPaths();
    const port = Number(opts.address.split(':').pop() ?? 7233);
    log(`No Temporal server at ${opts.address}: starting the dev server (state in ${opts.stateDir})`);
    server = await startDevServer({
      temporalBin: env.temporal,
      dbFile: path.join(opts.stateDir, 'temporal.db'),
      port,
      uiPort: opts.uiPort ?? 8233,
      namespace: opts.namespace,
      logFile: path.join(opts.stateDir, 'temporal-server.log'),
    });
    log(`Temporal dev server up at ${server.address}${server.uiUrl ? `, Web UI ${server.uiUrl}` : ''}`);
  } else {
    log(`Using the Temporal server at ${opts.address}`);
  }
  const s3 = opts.localS3 ? await startLocalS3(opts.stateDir, opts.localS3.bucket, log) : null;
  const address = server?.address ?? opts.address;
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, namespace: opts.namespace });
  const nativeConnection = await NativeConnection.connect({ address });
  const deps = defaultDeps({ stateDir: opts.stateDir, ...(opts.reporter ? { reporter: opts.reporter } : {}) });
  const workers = await createWorkers({
    connection: nativeConnection,
    namespace: opts.namespace,
    queues: ALL_QUEUES,
    deps,
  });
  return {
    address,
    namespace: opts.namespace,
    client,
    workers,
    startedServer: server,
    s3,
    async close() {
      // resident model servers (compute.resident) end with the stack
      await deps.residents?.stopAll();
      await connection.close();
      await nativeConnection.close();
      if (server) await server.stop();
      if (s3) await s3.stop();
    },
  };
}
