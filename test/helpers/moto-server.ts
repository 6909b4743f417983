/**
 * moto's AWS mock server (`python -m moto.server`, from the test tools venv bootstrap builds)
 * on a free port, plus a recording proxy in front of it for the SageMaker API.
 *
 * What moto 5.2.5 does and does not do with training jobs (read from moto/sagemaker/models.py
 * and checked against the running server): CreateTrainingJob stores the request and the job is
 * `Completed` at once, with ModelArtifacts `<S3OutputPath>/<name>/output/model.tar.gz`; a second
 * CreateTrainingJob of the same name silently replaces the first (no ResourceInUse);
 * StopTrainingJob is not implemented (HTTP 500). So the proxy records every SageMaker call, and
 * a test can (a) hold a job "running" by rewriting the status fields of moto's
 * DescribeTrainingJob answers — the rest of each answer stays moto's — and (b) have
 * StopTrainingJob answered by the proxy. Both are named fakes layered over the real server.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { freePort } from '../../infra/dev-server';

const repo = path.resolve(__dirname, '../..');

/** The test tools venv's python (moto, kubernetes-validate): env SRLM_TOOLS_PYTHON, else .srlm/env.json's toolsPython. */
export function toolsPython(): string {
  const fromEnv = process.env.SRLM_TOOLS_PYTHON;
  if (fromEnv) return fromEnv;
  const file = path.join(repo, '.srlm', 'env.json');
  const env = JSON.parse(fs.readFileSync(file, 'utf8')) as { toolsPython?: string };
  if (!env.toolsPython || !fs.existsSync(env.toolsPython))
    throw new Error(`${file} names no test tools python: run \`bash scripts/bootstrap.sh\``);
  return env.toolsPython;
}

export interface MotoServer {
  url: string;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<MotoServer> {
  const port = await freePort();
  const child: ChildProcess = spawn(toolsPython(), ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto server exited ${child.exitCode}: ${stderr}`);
    const ok = await fetch(`${url}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto server did not answer on ${url} within 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** One SageMaker call seen by the proxy: the operation (X-Amz-Target's last part) and its JSON body. */
export interface RecordedCall {
  op: string;
  body: Record<string, unknown>;
}

/** A training job status the proxy shows instead of moto's `Completed` (fake, see above). */
export interface HeldStatus {
  TrainingJobStatus: string;
  SecondaryStatus: string;
  FailureReason?: string;
  FinalMetricDataList?: { MetricName: string; Value: number; Timestamp: number }[];
}

export interface SageMakerProxy {
  url: string;
  calls: RecordedCall[];
  ops(op: string): RecordedCall[];
  /** job name -> status shown by DescribeTrainingJob while set */
  hold: Map<string, HeldStatus>;
  /** called after moto accepted a CreateTrainingJob (a test's stand-in for the training container) */
  onCreate?: (request: Record<string, unknown>) => void;
  close(): Promise<void>;
}

/** A recording HTTP proxy to moto for the SageMaker JSON API. */
export async function startSageMakerProxy(motoUrl: string): Promise<SageMakerProxy> {
  const calls: RecordedCall[] = [];
  const hold = new Map<string, HeldStatus>();
  const target = new URL(motoUrl);
  const proxy: SageMakerProxy = {
    url: '',
    calls,
    ops: (op) => calls.filter((c) => c.op === op),
    hold,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const op =
        String(req.headers['x-amz-target'] ?? '')
          .split('.')
          .pop() ?? '';
      let body: Record<string, unknown> = {};
      try {
        body = raw.length ? (JSON.parse(raw.toString()) as Record<string, unknown>) : {};
      } catch {
        // not JSON: not a SageMaker call
      }
      if (op) calls.push({ op, body });
      const name = typeof body.TrainingJobName === 'string' ? body.TrainingJobName : '';
      if (op === 'StopTrainingJob') {
        // moto does not implement it: answer as SageMaker does (empty 200) and show the job stopping
        const held = hold.get(name);
        if (held) hold.set(name, { ...held, TrainingJobStatus: 'Stopping', SecondaryStatus: 'Stopping' });
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end('{}');
        return;
      }
      const up = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          const out: Buffer[] = [];
          upRes.on('data', (c: Buffer) => out.push(c));
          upRes.on('end', () => {
            let payload = Buffer.concat(out);
            if (op === 'CreateTrainingJob' && upRes.statusCode === 200) proxy.onCreate?.(body);
            const held = hold.get(name);
            if (op === 'DescribeTrainingJob' && held && upRes.statusCode === 200) {
              const d = JSON.parse(payload.toString()) as Record<string, unknown>;
              delete d.FailureReason;
              payload = Buffer.from(JSON.stringify({ ...d, ...held }));
            }
            const { 'transfer-encoding': _te, ...upHeaders } = upRes.headers;
            const headers = { ...upHeaders, 'content-length': String(payload.length) };
            res.writeHead(upRes.statusCode ?? 502, headers);
            res.end(payload);
          });
        },
      );
      up.on('error', (err) => {
        res.writeHead(502);
        res.end(String(err));
      });
      up.end(raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  proxy.url = `http://127.0.0.1:${port}`;
  return proxy;
}
