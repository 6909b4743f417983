/**
 * The deployment files of infra/ (docker/, k8s/, compose/), checked without Docker, a cluster
 * or a GPU: hadolint lints the Dockerfiles; kubernetes-validate (the Kubernetes 1.37 API
 * schemas, offline, strict) validates every manifest; compose-spec parses the compose file
 * after interpolation. The rest checks them against the repository: COPY sources, entry
 * commands and flags, pinned versions, names that must match across files.
 */
import { execFile, type ExecFileException } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvPaths, repoRoot } from '../../infra/paths';
import { metricsBindAddress } from '../../workers/index';
import { parseWorkerArgs } from '../../workers/main';
import { checkEntryArgs, EntryError } from '../../backends/train-entry';

const root = repoRoot();
const env = loadEnvPaths(root);
const bin = (name: string): string => path.join(path.dirname(env.python), name); // the venv's bin/
const rel = (...p: string[]): string => path.join(root, ...p);
const read = (...p: string[]): string => fs.readFileSync(rel(...p), 'utf8');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: root, maxBuffer: 64 * 1024 * 1024 }, (err: ExecFileException | null, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const VLLM_VERSION = /^VLLM_VERSION = "([^"]+)"/m.exec(read('compute/srlm_compute/vllm_engine.py'))![1]!;
const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; engines: { node: string } };

// ----------------------------------------------------------------------------------- Dockerfiles

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}
/** Instructions (continuations joined, comments dropped) grouped by stage. */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const out: Instruction[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (!buf && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    if (!buf) start = i + 1;
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      return;
    }
    buf += line;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(buf)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
    buf = '';
  });
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of out) {
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      stages.push({ from: m[1]!, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else if (stages.length) stages.at(-1)!.instructions.push(ins);
    else args.push(ins);
  }
  return { args, stages };
}
const envOf = (stage: Stage): Record<string, string> => {
  const vars: Record<string, string> = {};
  for (const ins of stage.instructions.filter((i) => i.op === 'ENV')) {
    for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)) vars[m[1]!] = m[2]!;
  }
  return vars;
};
const jsonArgs = (stage: Stage, op: string): string[] => JSON.parse(stage.instructions.find((i) => i.op === op)!.args) as string[];

/** Top-level names excluded by .dockerignore (the patterns this repo uses: plain paths). */
const dockerignored = read('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const ignored = (p: string): boolean => dockerignored.some((pat) => !pat.includes('*') && (p === pat || p.startsWith(`${pat}/`)));

function imageTagOk(image: string): boolean {
  const tag = image.includes(':') ? image.slice(image.lastIndexOf(':') + 1) : '';
  return /\d/.test(tag) && tag !== 'latest';
}

const WORKER_IMAGES = ['infra/docker/worker.Dockerfile', 'infra/docker/compute.Dockerfile'];
const TRAIN_IMAGE = 'infra/docker/train.Dockerfile';
const DOCKERFILES = [...WORKER_IMAGES, TRAIN_IMAGE];

/** Whether a repository path is in the image: under some COPY source of `stage` (not --from). */
function copiedInto(stage: Stage, file: string): boolean {
  return stage.instructions
    .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
    .some((i) =>
      i.args
        .split(/\s+/)
        .filter((p) => !p.startsWith('--'))
        .slice(0, -1)
        .some((src) => file === src || file.startsWith(`${src.replace(/\/$/, '')}/`)),
    );
}

describe('Dockerfiles', () => {
  it('pass hadolint (infra/docker/.hadolint.yaml), which does reject a bad one', async () => {
    const ok = await run(bin('hadolint'), ['--config', rel('infra/docker/.hadolint.yaml'), ...DOCKERFILES.map((f) => rel(f))]);
    expect(ok.stderr + ok.stdout).not.toMatch(/DL\d{4} (error|warning)|SC\d{4} (error|warning)/);
    expect(ok.code).toBe(0);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-hadolint-'));
    try {
      fs.writeFileSync(path.join(tmp, 'Dockerfile'), 'FROM node:latest\nRUN cd /app && npm install\n');
      const bad = await run(bin('hadolint'), ['--config', rel('infra/docker/.hadolint.yaml'), path.join(tmp, 'Dockerfile')]);
      expect(bad.code).not.toBe(0);
      expect(bad.stdout).toMatch(/DL3007|DL3003/); // latest tag / cd in RUN
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  for (const file of DOCKERFILES) {
    describe(file, () => {
      const { args, stages } = parseDockerfile(read(file));
      const final = stages.at(-1)!;

      it('is multi-stage with pinned bases; --from names a stage', () => {
        expect(stages.length).toBeGreaterThanOrEqual(2);
        for (const s of stages) expect(imageTagOk(s.from), `${file}: FROM ${s.from}`).toBe(true);
        const names = new Set(stages.map((s) => s.name).filter(Boolean));
        for (const s of stages) {
          for (const ins of s.instructions.filter((i) => i.op === 'COPY' && i.args.includes('--from='))) {
            expect(names.has(/--from=(\S+)/.exec(ins.args)![1]!), `${file}:${ins.line}`).toBe(true);
          }
        }
        for (const a of args) expect(a.op).toBe('ARG');
      });

      it('copies only files that exist in the repository and are in the build context', () => {
        let copies = 0;
        for (const s of stages) {
          for (const ins of s.instructions.filter((i) => (i.op === 'COPY' || i.op === 'ADD') && !i.args.includes('--from='))) {
            expect(ins.op, `${file}:${ins.line}: use COPY`).toBe('COPY');
            const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'));
            for (const src of parts.slice(0, -1)) {
              copies++;
              expect(fs.existsSync(rel(src)), `${file}:${ins.line}: COPY source ${src} does not exist`).toBe(true);
              expect(ignored(src), `${file}:${ins.line}: COPY source ${src} is excluded by .dockerignore`).toBe(false);
            }
          }
        }
        expect(copies).toBeGreaterThan(5);
        if (file === TRAIN_IMAGE) return; // its entrypoint's imports: checked below, file by file
        // what the worker imports at run time is in the image
        const copied = final.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
        for (const dir of ['activities', 'core', 'workflows', 'workers', 'infra'])
          expect(copied.some((a) => a.startsWith(`${dir} `))).toBe(true);
      });

      if (file === TRAIN_IMAGE) return;
      it('runs workers/main.ts with flags and environment it accepts, as a non-root user', () => {
        const [entry, script] = jsonArgs(final, 'ENTRYPOINT');
        expect(entry).toBe('node_modules/.bin/tsx');
        expect(script).toBe('workers/main.ts');
        expect(fs.existsSync(rel(script!))).toBe(true);
        expect(pkg.dependencies.tsx).toBeDefined(); // installed with --omit=dev
        const cmd = jsonArgs(final, 'CMD');
        const vars = envOf(final);
        // the image's metrics endpoint stays on loopback unless a deployment exposes it
        expect(metricsBindAddress(vars)).toMatch(/^127\.0\.0\.1:/);
        const fromFlags = parseWorkerArgs(cmd, {});
        expect(fromFlags.queues.join(',')).toBe(parseWorkerArgs([], vars).queues.join(','));
        const user = final.instructions.filter((i) => i.op === 'USER').at(-1)!.args;
        expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/); // numeric, so runAsNonRoot can check it
        for (const s of stages.filter((x) => x.from.startsWith('node:'))) {
          const [major, minor] = s.from.slice('node:'.length).split(/[.-]/).map(Number);
          expect(major).toBe(20); // package.json engines: >=20.3
          expect(major! > 20 || minor! >= 3).toBe(true);
        }
        expect(pkg.engines.node).toBe('>=20.3');
      });
    });
  }

  it('train image: runs backends/train-entry.ts (as SageMaker and Kubernetes start it) with every file it imports, compute/ and its venv', async () => {
    const text = read(TRAIN_IMAGE);
    const { stages } = parseDockerfile(text);
    const final = stages.at(-1)!;
    expect(jsonArgs(final, 'ENTRYPOINT')).toEqual(['node_modules/.bin/tsx', 'backends/train-entry.ts']);
    expect(final.instructions.some((i) => i.op === 'CMD')).toBe(false);
    // SageMaker runs `<image> train`, a Kubernetes pod passes nothing; anything else is refused
    checkEntryArgs(['train']);
    checkEntryArgs([]);
    expect(() => checkEntryArgs(['serve'])).toThrow(EntryError);
    // root: SageMaker's /opt/ml mounts belong to root
    expect(final.instructions.some((i) => i.op === 'USER')).toBe(false);
    // every repository file the entrypoint loads (esbuild's import graph) is copied
    const esbuild = await import('esbuild');
    const graph = await esbuild.build({
      entryPoints: [rel('backends/train-entry.ts')],
      absWorkingDir: root,
      bundle: true,
      platform: 'node',
      packages: 'external',
      write: false,
      metafile: true,
      logLevel: 'error',
    });
    const sources = Object.keys(graph.metafile.inputs);
    expect(sources).toEqual(expect.arrayContaining(['backends/train-entry.ts', 'store/s3store.ts', 'store/checkpoints.ts']));
    for (const src of sources)
      expect(copiedInto(final, src), `${TRAIN_IMAGE}: ${src} is imported by the entrypoint but not copied`).toBe(true);
    expect(copiedInto(final, 'compute/srlm_compute/launch.py')).toBe(true);
    expect(pkg.dependencies['@aws-sdk/client-s3']).toBeDefined(); // installed with --omit=dev
    // the environment the entrypoint reads points where the Dockerfile puts things
    const vars = envOf(final);
    expect(text).toMatch(
      /COPY compute\/requirements\.txt \/tmp\/requirements\.txt[\s\S]*pip install --no-input -r \/tmp\/requirements\.txt/,
    );
    expect(text).toContain(`python -m venv ${path.dirname(path.dirname(vars.SRLM_PYTHON!))}`);
    const workdir = final.instructions.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
    expect(vars.SRLM_COMPUTE_DIR).toBe(`${workdir}/compute`);
    expect(final.instructions.some((i) => i.op === 'COPY' && i.args === 'compute ./compute')).toBe(true);
    for (const key of ['SRLM_TRAIN_WORK_DIR', 'SRLM_CACHE_DIR'])
      expect(text, key).toMatch(new RegExp(`mkdir -p [^\\n]*${vars[key]}(\\s|$)`));
    expect(stages[0]!.from).toBe(parseDockerfile(read('infra/docker/compute.Dockerfile')).stages[0]!.from);
    expect(final.from).toBe(parseDockerfile(read('infra/docker/compute.Dockerfile')).stages.at(-1)!.from);
  });

  it('compute image: requirements, vLLM pinned as compute/ expects, interpreters where the venvs are made', () => {
    const text = read('infra/docker/compute.Dockerfile');
    const { args, stages } = parseDockerfile(text);
    expect(args.map((a) => a.args)).toContain(`VLLM_VERSION=${VLLM_VERSION}`);
    expect(text).toContain('"vllm==${VLLM_VERSION}"');
    expect(text).toMatch(
      /COPY compute\/requirements\.txt \/tmp\/requirements\.txt[\s\S]*pip install --no-input -r \/tmp\/requirements\.txt/,
    );
    const vars = envOf(stages.at(-1)!);
    for (const key of ['SRLM_PYTHON', 'SRLM_VLLM_PYTHON']) {
      const venv = path.dirname(path.dirname(vars[key]!));
      expect(text, `${key}=${vars[key]}`).toContain(`python -m venv ${venv}`);
    }
    expect(stages[0]!.from).toMatch(/^python:3\.11\.\d+-/);
    expect(stages.at(-1)!.from).toMatch(/^nvidia\/cuda:\d+\.\d+\.\d+-/);
    expect(parseWorkerArgs([], vars).queues).toEqual(['generation', 'training']);
  });
});

// ----------------------------------------------------------------------------------- Kubernetes

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const K8S = rel('infra/k8s');
const k8sFiles = (fs.readdirSync(K8S, { recursive: true }) as string[])
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => path.join(K8S, f))
  .sort();
const manifestFiles = k8sFiles.filter((f) => path.basename(f) !== 'kustomization.yaml');
let docs: [string, Doc][] = [];

async function loadYaml(files: string[]): Promise<[string, Doc][]> {
  const r = await run(env.python, [rel('test/infra/deploy_check.py'), 'yaml', ...files]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as [string, Doc][];
}
const byKind = (kind: string): Doc[] => docs.filter(([, d]) => d.kind === kind).map(([, d]) => d);
const workloads = (): Doc[] => docs.map(([, d]) => d).filter((d) => ['Deployment', 'StatefulSet', 'Job'].includes(d.kind));
const podSpec = (w: Doc): Doc => w.spec.template.spec;
const containersOf = (w: Doc): Doc[] => [...(podSpec(w).initContainers ?? []), ...podSpec(w).containers];
const deployment = (name: string): Doc => byKind('Deployment').find((d) => d.metadata.name === name)!;
const envValue = (c: Doc, name: string): string | undefined => (c.env as Doc[] | undefined)?.find((e) => e.name === name)?.value;

describe('Kubernetes manifests (infra/k8s)', () => {
  beforeAll(async () => {
    docs = await loadYaml(manifestFiles);
  });

  it('are valid against the Kubernetes 1.37 API schemas (kubernetes-validate --strict)', async () => {
    const r = await run(bin('kubernetes-validate'), ['--strict', '--kubernetes-version', '1.37.0', ...manifestFiles]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const passed = r.stdout.split('\n').filter((l) => l.includes(' passed for resource '));
    expect(passed.length).toBe(docs.length);
    expect(docs.length).toBeGreaterThanOrEqual(15);
  });

  it('the validator does reject an unknown field and a wrong type', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-k8s-'));
    try {
      const src = fs.readFileSync(rel('infra/k8s/base/generation-worker.yaml'), 'utf8');
      fs.writeFileSync(path.join(tmp, 'a.yaml'), src.replace('terminationGracePeriodSeconds: 60', 'terminationGracePeriodSecond: 60'));
      fs.writeFileSync(path.join(tmp, 'b.yaml'), src.replace('replicas: 2', 'replicas: two'));
      for (const f of ['a.yaml', 'b.yaml']) {
        const r = await run(bin('kubernetes-validate'), ['--strict', '--quiet', path.join(tmp, f)]);
        expect(r.code, f).not.toBe(0);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('kustomizations list every manifest once, and the overlay names images and objects that exist', async () => {
    const kfiles = k8sFiles.filter((f) => path.basename(f) === 'kustomization.yaml');
    const listed = new Set<string>();
    for (const [file, k] of await loadYaml(kfiles)) {
      for (const r of k.resources as string[]) {
        const target = path.resolve(path.dirname(file), r);
        expect(fs.existsSync(target), `${file}: ${r}`).toBe(true);
        if (target.endsWith('.yaml')) {
          expect(listed.has(target), `${target} listed twice`).toBe(false);
          listed.add(target);
        }
      }
      for (const img of (k.images ?? []) as Doc[]) {
        const used = workloads().flatMap((w) => containersOf(w).map((c) => c.image as string));
        expect(
          used.some((u) => u.startsWith(`${img.name}:`)),
          `${file}: image ${img.name}`,
        ).toBe(true);
      }
      for (const rep of (k.replicas ?? []) as Doc[]) expect(deployment(rep.name), `${file}: replicas of ${rep.name}`).toBeDefined();
    }
    expect([...listed].sort()).toEqual(manifestFiles);
  });

  it('hold no secrets; every Secret they read is optional or one docs/deployment.md tells how to create', () => {
    expect(byKind('Secret')).toEqual([]);
    const readme = read('docs/deployment.md');
    for (const w of workloads()) {
      for (const c of containersOf(w)) {
        const refs = [
          ...((c.envFrom ?? []) as Doc[]).filter((e) => e.secretRef).map((e) => e.secretRef as Doc),
          ...((c.env ?? []) as Doc[]).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom.secretKeyRef as Doc),
        ];
        for (const ref of refs)
          expect(readme, `${w.metadata.name}: secret ${ref.name}`).toContain(`kubectl -n srlm create secret generic ${ref.name}`);
        for (const ref of ((c.envFrom ?? []) as Doc[]).filter((e) => e.configMapRef)) {
          expect(byKind('ConfigMap').map((m) => m.metadata.name)).toContain(ref.configMapRef.name);
        }
      }
    }
  });

  it('pin every image; selectors match their pods; services reach a named port', () => {
    for (const w of workloads()) {
      for (const c of containersOf(w)) expect(imageTagOk(c.image), `${w.metadata.name}: ${c.image}`).toBe(true);
      if (w.kind !== 'Job') {
        for (const [k, v] of Object.entries(w.spec.selector.matchLabels as Record<string, string>))
          expect(w.spec.template.metadata.labels[k]).toBe(v);
      }
    }
    for (const svc of byKind('Service')) {
      const pods = workloads().filter((w) =>
        Object.entries(svc.spec.selector as Record<string, string>).every(([k, v]) => w.spec.template.metadata.labels[k] === v),
      );
      expect(pods.length, `service ${svc.metadata.name}`).toBe(1);
      const ports = containersOf(pods[0]!).flatMap((c) => (c.ports ?? []) as Doc[]);
      for (const p of svc.spec.ports as Doc[]) {
        expect(
          ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
          `${svc.metadata.name}:${p.targetPort}`,
        ).toBe(true);
      }
    }
  });

  it('run the workers with queues, flags and images that fit their hosts', () => {
    const expected: Record<string, { image: string; queues: string[]; gpu: boolean }> = {
      'srlm-orchestration-worker': { image: 'srlm-worker:', queues: ['orchestration'], gpu: false },
      'srlm-generation-worker': { image: 'srlm-compute:', queues: ['generation'], gpu: true },
      'srlm-training-worker': { image: 'srlm-compute:', queues: ['training'], gpu: true },
    };
    for (const [name, want] of Object.entries(expected)) {
      const d = deployment(name);
      const c = podSpec(d).containers[0] as Doc;
      expect(c.image.startsWith(want.image), name).toBe(true);
      const flags = parseWorkerArgs(c.args as string[], {});
      expect(flags.queues).toEqual(want.queues);
      expect(parseWorkerArgs([], { SRLM_QUEUES: envValue(c, 'SRLM_QUEUES')! }).queues).toEqual(want.queues);
      // a scraped pod serves metrics beyond loopback, which the worker allows only when told to
      expect(d.spec.template.metadata.annotations['prometheus.io/scrape'], name).toBe('true');
      const metricsEnv = { SRLM_METRICS_BIND: envValue(c, 'SRLM_METRICS_BIND'), SRLM_METRICS_EXPOSE: envValue(c, 'SRLM_METRICS_EXPOSE') };
      expect(metricsBindAddress(metricsEnv), name).toBe(`0.0.0.0:${d.spec.template.metadata.annotations['prometheus.io/port']}`);
      expect(() => metricsBindAddress({ SRLM_METRICS_BIND: metricsEnv.SRLM_METRICS_BIND }), name).toThrow(/SRLM_METRICS_EXPOSE=1/);
      expect(podSpec(d).securityContext.runAsNonRoot).toBe(true);
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
      const gpus = Number(c.resources.limits?.['nvidia.com/gpu'] ?? 0);
      expect(gpus > 0, name).toBe(want.gpu);
      if (want.gpu) {
        // one worker per GPU host: required anti-affinity on the host name against its own pods
        const anti = podSpec(d).affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution as Doc[];
        expect(
          anti.some(
            (t) =>
              t.topologyKey === 'kubernetes.io/hostname' &&
              Object.entries(t.labelSelector.matchLabels as Record<string, string>).every(
                ([k, v]) => d.spec.template.metadata.labels[k] === v,
              ),
          ),
        ).toBe(true);
        expect(podSpec(d).tolerations.some((t: Doc) => t.key === 'nvidia.com/gpu')).toBe(true);
        expect(envValue(c, 'SRLM_PYTHON')).toBe('/opt/srlm/venv/bin/python');
        expect(Number(envValue(c, 'SRLM_COMPUTE_CONCURRENCY'))).toBe(flags.computeConcurrency);
      }
    }
    expect(envValue(podSpec(deployment('srlm-generation-worker')).containers[0], 'SRLM_VLLM_PYTHON')).toBe(
      '/opt/srlm/vllm-venv/bin/python',
    );
  });

  it('point the workers at the Temporal frontend Service and run vLLM and Temporal at the pinned versions', () => {
    const cfg = byKind('ConfigMap').find((m) => m.metadata.name === 'srlm-config')!.data as Record<string, string>;
    const fe = byKind('Service').find((s) => s.metadata.name === 'temporal-frontend')!;
    expect(cfg.TEMPORAL_ADDRESS).toBe(`temporal-frontend.srlm.svc.cluster.local:${fe.spec.ports[0].port}`);
    expect(cfg.SRLM_STORE_ROOT).toMatch(/^s3:\/\//);
    const vllm = podSpec(deployment('srlm-vllm')).containers[0] as Doc;
    expect(vllm.image).toBe(`vllm/vllm-openai:v${VLLM_VERSION}`);
    expect(vllm.command).toEqual(['vllm', 'serve']);
    expect(vllm.args[0]).toBe('/models/current');
    const serverTag = (podSpec(deployment('temporal')).containers[0] as Doc).image.split(':')[1];
    for (const w of workloads().filter((x) => x.kind === 'Job'))
      expect((podSpec(w).containers[0] as Doc).image).toBe(`temporalio/admin-tools:${serverTag}`);
  });
});

// ----------------------------------------------------------------------------------- compose

describe('compose file (infra/compose)', () => {
  let config: Doc;
  let variables: string[];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-compose-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  beforeAll(async () => {
    if (!docs.length) docs = await loadYaml(manifestFiles);
    const r = await run(env.python, [
      rel('test/infra/deploy_check.py'),
      'compose',
      rel('infra/compose/compose.yaml'),
      rel('infra/compose/.env.example'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    ({ config, variables } = JSON.parse(r.stdout) as { config: Doc; variables: string[] });
  });

  it('is a valid Compose file (compose-spec), which does reject broken ones', async () => {
    expect(Object.keys(config.services as Doc).length).toBeGreaterThanOrEqual(8);
    const src = read('infra/compose/compose.yaml');
    const cases = {
      'key.yaml': src.replace('    shm_size: 16gb\n    deploy:', '    shm_sise: 16gb\n    deploy:'),
      'cond.yaml': src.replace('condition: service_completed_successfully', 'condition: service_finished'),
    };
    for (const [name, text] of Object.entries(cases)) {
      expect(text).not.toBe(src);
      fs.writeFileSync(path.join(tmp, name), text);
      const r = await run(env.python, [
        rel('test/infra/deploy_check.py'),
        'compose',
        path.join(tmp, name),
        rel('infra/compose/.env.example'),
      ]);
      expect(r.code, name).toBe(1);
      expect(r.stderr).toContain('not a valid Compose file');
    }
  });

  it('documents exactly the variables it reads in .env.example', () => {
    const documented = read('infra/compose/.env.example')
      .split('\n')
      .filter((l) => /^[A-Z][A-Z0-9_]*=/.test(l))
      .map((l) => l.split('=')[0]);
    expect([...documented].sort()).toEqual(variables);
  });

  it('depends on services that exist, builds from the repository, runs the workers as the images do', () => {
    const services = config.services as Record<string, Doc>;
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys((s.depends_on ?? {}) as Doc)) expect(services[dep], `${name} -> ${dep}`).toBeDefined();
      expect(imageTagOk(s.image), `${name}: ${s.image}`).toBe(true);
      if (s.build) {
        expect(path.resolve(rel('infra/compose'), s.build.context)).toBe(root);
        expect(fs.existsSync(rel(s.build.dockerfile))).toBe(true);
      }
    }
    const want: Record<string, string[]> = { 'orchestration-worker': ['orchestration'], 'compute-worker': ['generation', 'training'] };
    for (const [name, queues] of Object.entries(want)) {
      const s = services[name]!;
      expect(parseWorkerArgs(s.command as string[], {}).queues).toEqual(queues);
      expect(parseWorkerArgs([], s.environment as Record<string, string>).queues).toEqual(queues);
      expect(s.environment.TEMPORAL_ADDRESS).toBe('temporal:7233');
    }
    expect(services['compute-worker']!.deploy.resources.reservations.devices[0].capabilities).toEqual(['gpu']);
    // the same pinned versions as the Kubernetes manifests
    const k8sImages = new Set(workloads().flatMap((w) => containersOf(w).map((c) => c.image as string)));
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'vllm']) expect(k8sImages.has(services[name]!.image), name).toBe(true);
    expect(services.vllm!.image).toBe(`vllm/vllm-openai:v${VLLM_VERSION}`);
    // the S3 server the tests run (scripts/build-s3-server.sh)
    expect(services.s3!.image).toBe(`versity/versitygw:${/^VGW_VERSION=(\S+)/m.exec(read('scripts/build-s3-server.sh'))![1]}`);
  });
});
