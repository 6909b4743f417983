/**
 * A TCP proxy (node:net) to put between an HTTP/S3 client and a server, injecting faults into
 * chosen connections: an HTTP error status instead of the server's answer, a connection reset
 * in the middle of the request body, or added latency.
 *
 * Faults apply per *connection*, and are chosen by the connection's *first request line*
 * ("PUT /bucket/key?partNumber=2&uploadId=... HTTP/1.1"). Use an HTTP agent with keepAlive off
 * so that every request has its own connection (e.g. for the AWS SDK v3:
 * `requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: false }) })`);
 * with keep-alive, later requests on a connection are not looked at and share the first one's
 * fate. versitygw answers `Connection: close` anyway unless started with keepAlive.
 *
 * Queue: `inject()` appends faults. Each new connection is compared with the fault at the head
 * of the queue only: when it matches (no `match`, or `match` tests true on the request line)
 * that fault is applied and consumed; otherwise the connection is forwarded untouched and the
 * fault stays queued. Faults are thus applied in order.
 */
import * as net from 'node:net';

export type Fault =
  /**
   * Answer with this status and an S3-style XML error (500 InternalError, 503 SlowDown),
   * `Connection: close`, without connecting to the server. The answer is sent once the request's
   * body has arrived (per Content-Length, or up to the end of a chunked body) and been discarded,
   * so that the client is not cut off while still writing (EPIPE) before it reads the answer. A
   * request with `Expect: 100-continue` (the AWS SDK sends it for bodies over 2 MB) is answered
   * right after its headers: the client then sends no body. One without a body, right away.
   */
  | { kind: 'status'; status: 500 | 503; match?: RegExp }
  /**
   * Forward, but once `afterBytes` bytes of the request (client -> server, headers included)
   * have been forwarded, reset both connections (RST, `socket.resetAndDestroy()`): the client
   * sees ECONNRESET / "socket hang up", the server a truncated request.
   */
  | { kind: 'reset'; afterBytes: number; match?: RegExp }
  /**
   * Forward, delivering every chunk in both directions `delayMs` after it arrived (latency, in
   * order; not a bandwidth limit). A request/response exchange takes at least 2 x delayMs longer.
   */
  | { kind: 'slow'; delayMs: number; match?: RegExp };

export type FaultKind = Fault['kind'];

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`, to give the client instead of the server's endpoint. */
  endpoint: string;
  host: string;
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Faults applied so far, per kind. */
  readonly faultsInjected: Readonly<Record<FaultKind, number>>;
  /** Request line of every connection so far (the first line the client sent), in order. */
  readonly requestLines: readonly string[];
  /** Queues `fault` for the next `times` matching connections. */
  inject(fault: Fault, times?: number): void;
  /** Faults still queued (counting repeats). */
  pending(): number;
  /** Drops all queued faults. */
  clear(): void;
  /** Stops listening and destroys all open connections. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
/** Give up looking for the end of the request line / headers after this many bytes. */
const MAX_HEAD = 64 * 1024;

const S3_ERRORS: Record<number, { reason: string; code: string; message: string }> = {
  500: { reason: 'Internal Server Error', code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  503: { reason: 'Service Unavailable', code: 'SlowDown', message: 'Please reduce your request rate.' },
};

function reset(sock: net.Socket): void {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') {
    try {
      sock.resetAndDestroy();
      return;
    } catch {
      // not connected yet: plain destroy below
    }
  }
  sock.destroy();
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const queue: { fault: Fault; remaining: number }[] = [];
  const faultsInjected: Record<FaultKind, number> = { status: 0, reset: 0, slow: 0 };
  const requestLines: string[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let requestIds = 0;

  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    // Errors (resets, EPIPE) are expected here; the owning handler cleans up on 'close'.
    s.on('error', () => undefined);
  };

  /** The head fault when it applies to this request line (and consumes it). */
  const take = (requestLine: string | undefined): Fault | undefined => {
    const head = queue[0];
    if (!head || requestLine === undefined) return undefined;
    if (head.fault.match) {
      head.fault.match.lastIndex = 0; // a /g or /y regexp keeps state between tests
      if (!head.fault.match.test(requestLine)) return undefined;
    }
    if (--head.remaining <= 0) queue.shift();
    faultsInjected[head.fault.kind]++;
    return head.fault;
  };

  const forward = (client: net.Socket, first: Buffer, fault?: Fault) => {
    // Both sockets are half-open capable: each side's end is passed on to the other explicitly
    // (after the delay, in slow mode), so no data still in flight is lost at a close.
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    track(upstream);
    const delayMs = fault?.kind === 'slow' ? fault.delayMs : 0;
    const deliver = (fn: () => void) => (delayMs > 0 ? setTimeout(fn, delayMs) : fn());
    let clientEnded = false;
    let upstreamEnded = false;
    let cut = false;

    /** Writes to `to` with backpressure on `from`. */
    const writer = (from: net.Socket, to: net.Socket) => {
      let waiting = false;
      return (chunk: Buffer) => {
        if (!to.writable) return;
        if (!to.write(chunk) && !waiting) {
          waiting = true;
          from.pause();
          to.once('drain', () => {
            waiting = false;
            if (!cut) from.resume();
          });
        }
      };
    };
    const toUpstream = writer(client, upstream);
    const toClient = writer(upstream, client);

    // client -> server
    if (fault?.kind === 'reset') {
      let budget = Math.max(0, fault.afterBytes);
      const send = (chunk: Buffer) => {
        if (cut) return;
        if (chunk.length < budget) {
          budget -= chunk.length;
          toUpstream(chunk);
          return;
        }
        // This chunk reaches the limit: forward its first `budget` bytes, then reset both ends.
        cut = true;
        client.pause();
        const kill = () => {
          reset(upstream);
          reset(client);
        };
        const part = chunk.subarray(0, budget);
        // Let the partial data reach the server before the RST (which drops unsent data).
        if (part.length && upstream.writable) upstream.write(part, () => setTimeout(kill, 20));
        else kill();
      };
      client.pause();
      upstream.once('connect', () => {
        send(first);
        client.on('data', send);
        if (!cut) client.resume();
      });
    } else {
      if (first.length) deliver(() => toUpstream(first));
      client.on('data', (chunk: Buffer) => deliver(() => toUpstream(chunk)));
    }
    client.once('end', () => {
      clientEnded = true;
      deliver(() => upstream.writable && upstream.end());
    });
    // server -> client
    upstream.on('data', (chunk: Buffer) => deliver(() => toClient(chunk)));
    upstream.once('end', () => {
      upstreamEnded = true;
      deliver(() => client.writable && client.end());
    });
    // A side that closes without having ended (error, reset, destroyed) takes the other one along.
    upstream.once('close', () => {
      if (upstreamEnded) return;
      if (cut) reset(client);
      else client.destroy();
    });
    client.once('close', () => {
      if (clientEnded && upstreamEnded) return;
      if (cut) reset(upstream);
      else upstream.destroy();
    });
  };

  const answerStatus = (client: net.Socket, fault: Extract<Fault, { kind: 'status' }>, head: Buffer) => {
    // Wait for the whole header block, then for the body (discarded), then answer.
    let buf: Buffer = head;
    let headerEnd = -1;
    let body: 'none' | 'length' | 'chunked' = 'none';
    let left = 0; // bytes of the body (length) or of the current chunk's data (chunked)
    let chunkState: 'size' | 'data' | 'trailer' = 'size';
    let line = '';
    let method = '';
    let answered = false;

    const answer = () => {
      if (answered) return;
      answered = true;
      client.removeListener('data', onData);
      const e = S3_ERRORS[fault.status] ?? { reason: 'Error', code: 'InternalError', message: 'Injected fault' };
      const requestId = `FAULTPROXY${(++requestIds).toString().padStart(6, '0')}`;
      const xml =
        '<?xml version="1.0" encoding="UTF-8"?>\n' +
        `<Error><Code>${e.code}</Code><Message>${e.message}</Message><RequestId>${requestId}</RequestId>` +
        '<HostId>fault-proxy</HostId></Error>';
      const headers =
        `HTTP/1.1 ${fault.status} ${e.reason}\r\n` +
        'Content-Type: application/xml\r\n' +
        `Content-Length: ${Buffer.byteLength(xml)}\r\n` +
        `x-amz-request-id: ${requestId}\r\n` +
        'Server: fault-proxy\r\n' +
        'Connection: close\r\n' +
        '\r\n';
      client.end(method === 'HEAD' ? headers : headers + xml);
      // Keep reading (and dropping) whatever else the client sends until it closes its side.
      client.on('data', () => undefined);
      client.once('end', () => client.destroy());
      setTimeout(() => client.destroy(), 5_000).unref();
    };

    /**
     * Reads through a chunked body (RFC 9112 7.1: size lines, data, last chunk, trailers);
     * true once it has ended. The AWS SDK sends streams of unknown length this way (with
     * `content-encoding: aws-chunked` inside, whose own trailers are just data here).
     */
    const chunked = (b: Buffer): boolean => {
      let i = 0;
      while (i < b.length) {
        if (chunkState === 'data') {
          const n = Math.min(left, b.length - i);
          i += n;
          left -= n;
          if (left === 0) chunkState = 'size'; // its CRLF reads as an empty size line
          continue;
        }
        const nl = b.indexOf(10, i);
        if (nl < 0) {
          line += b.toString('latin1', i);
          return line.length > MAX_HEAD; // garbage: give up and answer
        }
        const l = (line + b.toString('latin1', i, nl)).replace(/\r$/, '');
        line = '';
        i = nl + 1;
        if (chunkState === 'trailer') {
          if (l === '') return true;
        } else if (l !== '') {
          const size = parseInt(l.split(';')[0]!.trim(), 16);
          if (!Number.isFinite(size)) return true;
          if (size === 0) chunkState = 'trailer';
          else {
            chunkState = 'data';
            left = size;
          }
        }
      }
      return false;
    };

    const onData = (chunk?: Buffer) => {
      if (chunk) buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (headerEnd < 0) {
        headerEnd = buf.indexOf('\r\n\r\n');
        if (headerEnd < 0) {
          if (buf.length > MAX_HEAD) answer();
          return;
        }
        const lines = buf.subarray(0, headerEnd).toString('latin1').split('\r\n');
        method = lines[0]?.split(' ')[0] ?? '';
        const header = (name: string) =>
          lines
            .slice(1)
            .find((l) => l.toLowerCase().startsWith(`${name}:`))
            ?.slice(name.length + 1)
            .trim()
            .toLowerCase();
        // The client waits for "100 Continue" before sending the body: answer now instead.
        if (header('expect') === '100-continue') return answer();
        if (header('transfer-encoding')?.includes('chunked')) body = 'chunked';
        else if (header('content-length') !== undefined) {
          body = 'length';
          left = Number(header('content-length')) || 0;
        }
        buf = buf.subarray(headerEnd + 4);
      }
      const rest = buf;
      buf = Buffer.alloc(0);
      if (body === 'chunked') {
        if (chunked(rest)) answer();
        return;
      }
      left = Math.max(0, left - rest.length);
      if (left === 0) answer();
    };
    client.on('data', onData);
    client.once('end', answer);
    onData();
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    track(client);
    let head: Buffer = Buffer.alloc(0);
    const onFirst = (chunk: Buffer) => {
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      const eol = head.indexOf('\r\n');
      if (eol < 0 && head.length <= MAX_HEAD) return;
      start(eol < 0 ? undefined : head.subarray(0, eol).toString('latin1'));
    };
    const onEarlyEnd = () => start(undefined);
    const start = (requestLine: string | undefined) => {
      client.removeListener('data', onFirst);
      client.removeListener('end', onEarlyEnd);
      client.pause();
      if (requestLine !== undefined) requestLines.push(requestLine);
      const fault = take(requestLine);
      if (fault?.kind === 'status') {
        answerStatus(client, fault, head);
        client.resume();
        return;
      }
      if (requestLine === undefined && client.readableEnded) {
        // The client closed its side before sending a whole request line: nothing to serve.
        client.destroy();
        return;
      }
      forward(client, head, fault);
      if (fault?.kind !== 'reset') client.resume();
    };
    client.on('data', onFirst);
    client.once('end', onEarlyEnd);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;

  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://${HOST}:${addr.port}`,
    host: HOST,
    port: addr.port,
    get connections() {
      return connections;
    },
    faultsInjected,
    requestLines,
    inject(fault: Fault, times = 1) {
      if (!Number.isInteger(times) || times < 1) throw new Error(`inject: times must be a positive integer, got ${times}`);
      queue.push({ fault, remaining: times });
    },
    pending: () => queue.reduce((n, q) => n + q.remaining, 0),
    clear() {
      queue.length = 0;
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return stopping;
    },
  };
}
