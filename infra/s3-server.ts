/**
 * A real S3-compatible server for tests: the Versity S3 Gateway (`versitygw`, built by
 * `scripts/build-s3-server.sh` from bootstrap; see `s3ServerBin(loadEnvPaths())`) run as a child
 * process with its posix backend, which keeps each bucket as a directory under `dir` and each
 * object as a file (object metadata in user xattrs, so `dir` must be on a filesystem with user
 * xattrs, e.g. ext4/xfs/btrfs, or give `sidecarDir`).
 *
 * Buckets: both CreateBucket (through the S3 API) and a plain `mkdir <dir>/<bucket>` work;
 * versitygw lists any directory directly under `dir` as a bucket. CreateBucket also records
 * the owner and ACL in the directory's xattrs; a bucket made with mkdir has neither, which is fine
 * for the single root account these tests use (versitygw runs in single-account mode). Prefer
 * CreateBucket (it validates the name the way S3 does).
 *
 * versitygw answers `Connection: close` on every response unless `keepAlive` is set (its
 * `--keep-alive` flag), so by default each request uses its own TCP connection whatever the
 * client's agent does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, portIsFree, supervise, tail } from './dev-server';

export interface S3ServerOptions {
  /** The versitygw binary (see `s3ServerBin(loadEnvPaths())`). */
  bin: string;
  /** Root directory of the posix backend (one subdirectory per bucket); created when missing. */
  dir: string;
  /** Root account credentials (given to versitygw by environment, not on its command line). */
  accessKey: string;
  secretKey: string;
  /** Port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Region the server signs for. Default `us-east-1`. */
  region?: string;
  /** Where versitygw's stdout/stderr go (appended; one line per request). Default `<dir>.log`. */
  logFile?: string;
  /** No line per request in the log (versitygw `--quiet`), e.g. for a long-lived server. Default false. */
  quiet?: boolean;
  /** Keep connections alive (versitygw `--keep-alive`). Default false: `Connection: close`. */
  keepAlive?: boolean;
  /** Keep object metadata in this directory (outside `dir`) instead of xattrs (`--sidecar`). */
  sidecarDir?: string;
  /** How long to wait for the server to answer HTTP. Default 20 s. */
  startTimeoutMs?: number;
  /** Send SIGTERM to the server when this Node process exits without calling stop(). Default true. */
  stopOnExit?: boolean;
}

export interface S3ServerHandle {
  /** `http://127.0.0.1:<port>`: use with `forcePathStyle: true`. */
  endpoint: string;
  port: number;
  region: string;
  pid: number;
  dir: string;
  logFile: string;
  /** SIGTERM, SIGKILL after 5 s; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether anything answers HTTP at `url` (any status counts). Never throws. */
async function answersHttp(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

/**
 * Environment for versitygw: ours, less everything versitygw reads as configuration (VGW_*,
 * ROOT_*, and its aliases LOGFILE and WEBHOOK), plus the credentials and region.
 */
function serverEnv(opts: S3ServerOptions, region: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(VGW_|ROOT_)/.test(k) || k === 'LOGFILE' || k === 'WEBHOOK') continue;
    env[k] = v;
  }
  env.ROOT_ACCESS_KEY = opts.accessKey;
  env.ROOT_SECRET_KEY = opts.secretKey;
  env.VGW_REGION = region;
  return env;
}

/** Starts versitygw's posix backend on `opts.dir` and resolves once it answers HTTP. */
export async function startS3Server(opts: S3ServerOptions): Promise<S3ServerHandle> {
  if (!fs.existsSync(opts.bin)) {
    throw new Error(`S3 server (versitygw) not found at ${opts.bin}: run \`bash scripts/bootstrap.sh\``);
  }
  if (!opts.accessKey || !opts.secretKey) throw new Error('startS3Server: accessKey and secretKey are required');
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const logFile = path.resolve(opts.logFile ?? `${dir}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const region = opts.region ?? 'us-east-1';
  if (opts.port !== undefined && !(await portIsFree(opts.port))) {
    throw new Error(`cannot start the S3 server: port ${HOST}:${opts.port} is in use`);
  }
  const port = opts.port ?? (await freePort());
  const endpoint = `http://${HOST}:${port}`;

  // Credentials and region go by environment (ROOT_ACCESS_KEY, ROOT_SECRET_KEY, VGW_REGION),
  // so the secret is not visible in `ps`.
  const args = ['--port', `${HOST}:${port}`];
  if (opts.keepAlive) args.push('--keep-alive');
  if (opts.quiet) args.push('--quiet');
  args.push('posix');
  if (opts.sidecarDir) {
    fs.mkdirSync(opts.sidecarDir, { recursive: true });
    args.push('--sidecar', path.resolve(opts.sidecarDir));
  }
  args.push(dir);

  const logFd = fs.openSync(logFile, 'a');
  fs.writeSync(logFd, `\n--- ${new Date().toISOString()} ${opts.bin} ${args.join(' ')}\n`);
  let child: ChildProcess;
  try {
    child = spawn(opts.bin, args, {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: serverEnv(opts, region),
      cwd: dir,
    });
  } finally {
    fs.closeSync(logFd);
  }

  const sup = supervise(child, { graceMs: 5_000, stopOnExit: opts.stopOnExit !== false });
  const { exited, stop } = sup;

  const exitedEarly = (when: string) => {
    sup.detach();
    let hint = '';
    if (/xattr/i.test(tail(logFile))) {
      hint = ` (${dir} must be on a filesystem with user xattrs, or pass sidecarDir)`;
    }
    return new Error(`versitygw exited (${sup.exitInfo()}) ${when}${hint}; last lines of ${logFile}:\n${tail(logFile)}`);
  };

  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (sup.exitInfo() !== undefined) throw exitedEarly(`before answering on ${endpoint}`);
    if (await answersHttp(`${endpoint}/`, 1000)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`versitygw did not answer on ${endpoint} within ${timeoutMs} ms; last lines of ${logFile}:\n${tail(logFile)}`);
    }
    await Promise.race([sleep(100), exited]);
  }
  // Something else answering on the port would also pass the probe: our child must be alive.
  await Promise.race([sleep(200), exited]);
  if (sup.exitInfo() !== undefined) throw exitedEarly('right after start');

  return { endpoint, port, region, pid: child.pid!, dir, logFile, stop };
}
