/**
 * FAKE Kubernetes API server for tests: no real cluster can run here, so this node HTTP server
 * answers just the REST paths @kubernetes/client-node calls for the Kubernetes training backend
 * (read/create/delete batch/v1 Jobs, create/delete v1 Services), keeps the objects in memory,
 * and records every request. It does not schedule pods, run controllers or collect garbage: a
 * test moves a Job through its states with `setJobStatus`, as the Job controller would.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export interface K8sRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
}

type Obj = { metadata: { name: string; namespace?: string; uid?: string; [k: string]: unknown }; status?: unknown; [k: string]: unknown };

export interface FakeK8sApi {
  url: string;
  requests: K8sRequest[];
  /** namespace/name -> object */
  jobs: Map<string, Obj>;
  services: Map<string, Obj>;
  setJobStatus(namespace: string, name: string, status: Record<string, unknown>): void;
  /** a KubeConfig pointing client-node at this server (plain HTTP, no credentials) */
  kubeConfig(): KubeConfig;
  close(): Promise<void>;
}

const ROUTES: { re: RegExp; kind: 'jobs' | 'services' }[] = [
  { re: /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs(?:\/([^/]+))?$/, kind: 'jobs' },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/services(?:\/([^/]+))?$/, kind: 'services' },
];

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: code < 400 ? 'Success' : 'Failure', reason, message, code };
}

export async function startFakeK8sApi(): Promise<FakeK8sApi> {
  const requests: K8sRequest[] = [];
  const store = { jobs: new Map<string, Obj>(), services: new Map<string, Obj>() };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const raw = Buffer.concat(chunks).toString();
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      const method = req.method ?? 'GET';
      requests.push({ method, path: url.pathname, query: Object.fromEntries(url.searchParams), body });
      const send = (code: number, obj: unknown): void => {
        const text = JSON.stringify(obj);
        res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      const route = ROUTES.map((r) => ({ m: r.re.exec(url.pathname), kind: r.kind })).find((r) => r.m);
      if (!route) return send(404, status(404, 'NotFound', `the fake API does not serve ${method} ${url.pathname}`));
      const [, ns, name] = route.m!;
      const objects = store[route.kind];
      const what = route.kind === 'jobs' ? 'jobs.batch' : 'services';
      if (!name && method === 'POST') {
        const obj = body as Obj;
        const key = `${ns}/${obj?.metadata?.name}`;
        if (!obj?.metadata?.name) return send(422, status(422, 'Invalid', 'metadata.name: Required value'));
        if (objects.has(key)) return send(409, status(409, 'AlreadyExists', `${what} "${obj.metadata.name}" already exists`));
        const created: Obj = {
          ...obj,
          metadata: { ...obj.metadata, namespace: ns, uid: randomUUID(), creationTimestamp: new Date().toISOString() },
          status: {},
        };
        objects.set(key, created);
        return send(201, created);
      }
      if (!name) return send(405, status(405, 'MethodNotAllowed', `${method} on a collection`));
      const key = `${ns}/${name}`;
      const obj = objects.get(key);
      if (!obj) return send(404, status(404, 'NotFound', `${what} "${name}" not found`));
      if (method === 'GET') return send(200, obj);
      if (method === 'DELETE') {
        objects.delete(key);
        return send(200, status(200, '', ''));
      }
      return send(405, status(405, 'MethodNotAllowed', `${method} ${url.pathname}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    requests,
    jobs: store.jobs,
    services: store.services,
    setJobStatus(namespace, name, s) {
      const job = store.jobs.get(`${namespace}/${name}`);
      if (!job) throw new Error(`fake k8s: no job ${namespace}/${name}`);
      job.status = s;
    },
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
        users: [{ name: 'fake' }],
        contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
        currentContext: 'fake',
      });
      return kc;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
