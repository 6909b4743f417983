import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';

/** What the plain HTTP server behind the proxy saw of one request. */
interface Seen {
  method: string;
  url: string;
  bytes: number;
  /** The whole body arrived ('end'). */
  complete: boolean;
  /** The connection went away before the body's end. */
  aborted: boolean;
}

interface Answer {
  status?: number;
  headers?: http.IncomingHttpHeaders;
  body?: string;
  error?: NodeJS.ErrnoException;
  ms: number;
}

const agent = new http.Agent({ keepAlive: false });

function request(endpoint: string, method: string, path: string, body?: Buffer): Promise<Answer> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const req = http.request(`${endpoint}${path}`, {
      method,
      agent,
      headers: body ? { 'content-length': String(body.length), 'content-type': 'application/octet-stream' } : {},
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error, ms: Date.now() - t0 }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (error: NodeJS.ErrnoException) => resolve({ error, ms: Date.now() - t0 }));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - t0 }),
      );
    });
    req.end(body);
  });
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('fault proxy', () => {
  let server: http.Server;
  let proxy: FaultProxy;
  const seen: Seen[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const s: Seen = { method: req.method!, url: req.url!, bytes: 0, complete: false, aborted: false };
      seen.push(s);
      req.on('data', (c: Buffer) => (s.bytes += c.length));
      req.on('error', () => undefined);
      req.on('close', () => {
        if (!s.complete) s.aborted = true;
      });
      req.on('end', () => {
        s.complete = true;
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`ok ${req.method} ${req.url} ${s.bytes}`);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = await startFaultProxy({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  });
  afterEach(() => proxy.clear());
  afterAll(async () => {
    await proxy.stop();
    await proxy.stop(); // idempotent
    await new Promise((r) => server.close(r));
  });

  it('forwards requests untouched when no fault is queued', async () => {
    const body = Buffer.alloc(300_000, 7);
    const a = await request(proxy.endpoint, 'PUT', '/plain', body);
    expect(a.error).toBeUndefined();
    expect(a.status).toBe(200);
    expect(a.body).toBe('ok PUT /plain 300000');
  });

  it('status fault: answers 503 SlowDown without reaching the server, then is used up', async () => {
    const before = { seen: seen.length, conns: proxy.connections, status: proxy.faultsInjected.status };
    proxy.inject({ kind: 'status', status: 503 });
    expect(proxy.pending()).toBe(1);
    const body = Buffer.alloc(2_000_000, 1); // larger than the socket buffers: must be read, no EPIPE
    const a = await request(proxy.endpoint, 'PUT', '/bucket/key', body);
    expect(a.error).toBeUndefined();
    expect(a.status).toBe(503);
    expect(a.headers?.connection).toBe('close');
    expect(a.headers?.['content-type']).toBe('application/xml');
    expect(a.body).toMatch(/<Error><Code>SlowDown<\/Code><Message>.+<\/Message><RequestId>FAULTPROXY\d+<\/RequestId>/);
    expect(seen.length).toBe(before.seen);
    expect(proxy.faultsInjected.status).toBe(before.status + 1);
    expect(proxy.connections).toBe(before.conns + 1);
    expect(proxy.pending()).toBe(0);

    // used up: the next request goes through
    const b = await request(proxy.endpoint, 'PUT', '/bucket/key', body);
    expect(b.status).toBe(200);
    expect(seen.length).toBe(before.seen + 1);
  });

  it('status fault: 500 InternalError, `times` repeats, and HEAD gets no body', async () => {
    proxy.inject({ kind: 'status', status: 500 }, 2);
    expect(proxy.pending()).toBe(2);
    const a = await request(proxy.endpoint, 'GET', '/x');
    expect(a.status).toBe(500);
    expect(a.body).toContain('<Code>InternalError</Code>');
    const h = await request(proxy.endpoint, 'HEAD', '/x');
    expect(h.error).toBeUndefined();
    expect(h.status).toBe(500);
    expect(h.body).toBe('');
    expect((await request(proxy.endpoint, 'GET', '/x')).status).toBe(200);
  });

  it('status fault: answers an Expect: 100-continue request before its body', async () => {
    proxy.inject({ kind: 'status', status: 503 });
    const before = seen.length;
    const a = await new Promise<{ status?: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = http.request(`${proxy.endpoint}/expect`, {
        method: 'PUT',
        agent,
        headers: { 'content-length': '5', expect: '100-continue' },
      });
      req.on('continue', () => {
        continued = true;
        req.end('hello');
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, continued }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(a).toEqual({ status: 503, continued: false });
    expect(seen.length).toBe(before);
  });

  it('status fault: reads a chunked body (with trailers) to its end before answering', async () => {
    proxy.inject({ kind: 'status', status: 503 }, 2);
    const before = seen.length;
    const chunkedPut = (trailers: boolean) =>
      new Promise<{ status?: number; error?: Error; sentAll?: boolean }>((resolve) => {
        let sentAll = false;
        const req = http.request(`${proxy.endpoint}/chunked`, {
          method: 'PUT',
          agent,
          headers: trailers ? { trailer: 'x-checksum' } : {},
        });
        req.on('error', (error) => resolve({ error }));
        req.on('finish', () => (sentAll = true));
        req.on('response', (res) => {
          const answeredAfterAll = sentAll; // answered only once the whole body was read
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode, sentAll: answeredAfterAll }));
        });
        // 1.5 MB in 64 KiB writes paced 5 ms apart, with "0\r\n\r\n" in the data
        const piece = Buffer.concat([Buffer.from('0\r\n\r\n'), Buffer.alloc(64 * 1024 - 5, 0x30)]);
        let n = 0;
        const write = () => {
          if (n++ < 24) {
            req.write(piece);
            setTimeout(write, 5);
            return;
          }
          if (trailers) req.addTrailers({ 'x-checksum': 'abc' });
          req.end();
        };
        write();
      });
    expect(await chunkedPut(false)).toEqual({ status: 503, sentAll: true });
    expect(await chunkedPut(true)).toEqual({ status: 503, sentAll: true });
    expect(seen.length).toBe(before);
  });

  it('reset fault: a large upload fails with a connection reset, and the server sees a truncated body', async () => {
    const before = { seen: seen.length, reset: proxy.faultsInjected.reset };
    proxy.inject({ kind: 'reset', afterBytes: 100_000 });
    const body = Buffer.alloc(4_000_000, 2);
    const a = await request(proxy.endpoint, 'POST', '/upload', body);
    expect(a.status).toBeUndefined();
    expect(a.error?.code === 'ECONNRESET' || /socket hang up/.test(a.error?.message ?? '')).toBe(true);
    await waitFor(() => seen.length === before.seen + 1 && seen[before.seen]!.aborted);
    const s = seen[before.seen]!;
    expect(s.url).toBe('/upload');
    expect(s.complete).toBe(false);
    expect(s.bytes).toBeLessThan(100_000); // the headers count towards afterBytes
    expect(proxy.faultsInjected.reset).toBe(before.reset + 1);

    // the next upload goes through whole
    const b = await request(proxy.endpoint, 'POST', '/upload', body);
    expect(b.status).toBe(200);
    expect(b.body).toBe('ok POST /upload 4000000');
  });

  it('reset fault with afterBytes 0 resets before anything reaches the server', async () => {
    const before = seen.length;
    proxy.inject({ kind: 'reset', afterBytes: 0 });
    const a = await request(proxy.endpoint, 'GET', '/nothing');
    expect(a.error).toBeDefined();
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.length).toBe(before);
  });

  it('slow fault: adds at least the delay, and the exchange still completes', async () => {
    const base = await request(proxy.endpoint, 'GET', '/fast');
    expect(base.status).toBe(200);
    proxy.inject({ kind: 'slow', delayMs: 300 });
    const body = Buffer.alloc(1_000_000, 3);
    const a = await request(proxy.endpoint, 'PUT', '/slow', body);
    expect(a.status).toBe(200);
    expect(a.body).toBe('ok PUT /slow 1000000');
    // one delay each way
    expect(a.ms).toBeGreaterThanOrEqual(600);
    expect(proxy.faultsInjected.slow).toBe(1);
  });

  it('match targets only the matching request; the fault waits at the head of the queue', async () => {
    const before = { injected: { ...proxy.faultsInjected }, lines: proxy.requestLines.length };
    proxy.inject({ kind: 'status', status: 503, match: /^PUT .*partNumber=2/ });
    proxy.inject({ kind: 'status', status: 500 }); // behind the first: not applied before it

    const p1 = await request(proxy.endpoint, 'PUT', '/b/k?partNumber=1&uploadId=u', Buffer.from('one'));
    expect(p1.status).toBe(200);
    const g = await request(proxy.endpoint, 'GET', '/b/k?partNumber=2');
    expect(g.status).toBe(200);
    expect(proxy.pending()).toBe(2);
    const p2 = await request(proxy.endpoint, 'PUT', '/b/k?partNumber=2&uploadId=u', Buffer.from('two'));
    expect(p2.status).toBe(503);
    expect(proxy.pending()).toBe(1);
    const next = await request(proxy.endpoint, 'GET', '/anything');
    expect(next.status).toBe(500);
    expect(proxy.pending()).toBe(0);

    expect(proxy.faultsInjected.status).toBe(before.injected.status + 2);
    expect(proxy.faultsInjected.reset).toBe(before.injected.reset);
    expect(proxy.requestLines.slice(before.lines)).toEqual([
      'PUT /b/k?partNumber=1&uploadId=u HTTP/1.1',
      'GET /b/k?partNumber=2 HTTP/1.1',
      'PUT /b/k?partNumber=2&uploadId=u HTTP/1.1',
      'GET /anything HTTP/1.1',
    ]);
  });

  it('clear() drops queued faults', async () => {
    proxy.inject({ kind: 'status', status: 503 }, 3);
    proxy.clear();
    expect(proxy.pending()).toBe(0);
    expect((await request(proxy.endpoint, 'GET', '/after-clear')).status).toBe(200);
  });

  it('counts connections', async () => {
    const before = proxy.connections;
    await Promise.all([1, 2, 3].map((i) => request(proxy.endpoint, 'GET', `/c${i}`)));
    expect(proxy.connections).toBe(before + 3);
    expect(() => proxy.inject({ kind: 'slow', delayMs: 1 }, 0)).toThrow(/positive integer/);
  });
});
