/**
 * Where the things installed by `scripts/bootstrap.sh` live: the Python venv's interpreter,
 * the Temporal CLI, the S3 test server (versitygw) and the cache directory. Bootstrap records
 * them in `<repo>/.srlm/env.json`; env vars override single entries.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';

const EnvFile = z.object({
  python: z.string().min(1),
  temporal: z.string().min(1),
  cacheDir: z.string().min(1),
  venv: z.string().min(1),
  // Optional so that env files written before bootstrap built the S3 server still parse.
  s3server: z.string().min(1).optional(),
});

export interface EnvPaths {
  /** The venv's python (env SRLM_PYTHON overrides). */
  python: string;
  /** The `temporal` CLI (env SRLM_TEMPORAL_BIN overrides). */
  temporal: string;
  /** Cache root holding venvs and wheels (env SRLM_CACHE_DIR overrides). */
  cacheDir: string;
  /** The venv directory. */
  venv: string;
  /**
   * The S3-compatible test server binary, versitygw (env SRLM_S3_SERVER_BIN overrides);
   * undefined when an older bootstrap wrote the env file. Read it with s3ServerBin().
   */
  s3server?: string;
  /**
   * A python whose environment has vLLM, for `compute.engine.kind: "vllm"` (env SRLM_VLLM_PYTHON
   * overrides): `.srlm/vllm.json`, written by `bash scripts/bootstrap-vllm.sh`; undefined when
   * neither is there.
   */
  vllmPython?: string;
}

let cachedRoot: string | undefined;

/** The directory holding srlm's package.json, found upwards from this file. */
export function repoRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'srlm') {
          cachedRoot = dir;
          return dir;
        }
      } catch {
        // not ours (or unreadable): keep looking upwards
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find srlm's package.json above ${__dirname}`);
    dir = parent;
  }
}

/** Where runs keep their state: `$SRLM_STATE_DIR`, else `<repo>/.srlm/state`. */
export function defaultStateDir(): string {
  const fromEnv = process.env.SRLM_STATE_DIR;
  return fromEnv ? path.resolve(fromEnv) : path.join(repoRoot(), '.srlm', 'state');
}

/** Path of the env file written by bootstrap. */
export function envFilePath(root: string = repoRoot()): string {
  return path.join(root, '.srlm', 'env.json');
}

/**
 * Reads `.srlm/env.json` and applies the overrides SRLM_PYTHON, SRLM_TEMPORAL_BIN,
 * SRLM_S3_SERVER_BIN and SRLM_CACHE_DIR. When SRLM_PYTHON is set the file is optional (as in
 * the container images of infra/docker/); `temporal` then defaults to the one on PATH.
 */
export function loadEnvPaths(root: string = repoRoot(), env: NodeJS.ProcessEnv = process.env): EnvPaths {
  const file = envFilePath(root);
  const overrides = {
    python: env.SRLM_PYTHON || undefined,
    temporal: env.SRLM_TEMPORAL_BIN || undefined,
    cacheDir: env.SRLM_CACHE_DIR || undefined,
    s3server: env.SRLM_S3_SERVER_BIN || undefined,
  };

  let fromFile: z.infer<typeof EnvFile> | undefined;
  if (fs.existsSync(file)) {
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`${file} is not valid JSON (${(err as Error).message}): run \`bash scripts/bootstrap.sh\` again`, { cause: err });
    }
    const parsed = EnvFile.safeParse(raw);
    if (!parsed.success) {
      throw new Error(
        `${file} is malformed (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}): ` +
          'run `bash scripts/bootstrap.sh` again',
      );
    }
    fromFile = parsed.data;
  } else if (!overrides.python) {
    throw new Error(
      `${file} not found: run \`bash scripts/bootstrap.sh\` first ` +
        '(or set SRLM_PYTHON, and SRLM_TEMPORAL_BIN unless `temporal` is on PATH)',
    );
  }

  const python = overrides.python ?? fromFile!.python;
  return {
    python,
    // without the env file (a container image): the `temporal` on PATH, needed only for a dev server
    temporal: overrides.temporal ?? fromFile?.temporal ?? 'temporal',
    cacheDir: path.resolve(overrides.cacheDir ?? fromFile?.cacheDir ?? path.join(os.homedir(), '.cache', 'srlm')),
    venv: fromFile?.venv ?? path.dirname(path.dirname(python)),
    s3server: overrides.s3server ?? fromFile?.s3server,
    vllmPython: env.SRLM_VLLM_PYTHON || vllmPythonFromFile(root),
  };
}

/** `.srlm/vllm.json`'s python (written by scripts/bootstrap-vllm.sh), when that file is there and names one that exists. */
function vllmPythonFromFile(root: string): string | undefined {
  const file = path.join(root, '.srlm', 'vllm.json');
  if (!fs.existsSync(file)) return undefined;
  let python: unknown;
  try {
    python = (JSON.parse(fs.readFileSync(file, 'utf8')) as { python?: unknown }).python;
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}): run \`bash scripts/bootstrap-vllm.sh\` again`, { cause: err });
  }
  if (typeof python !== 'string' || !python) throw new Error(`${file} has no "python": run \`bash scripts/bootstrap-vllm.sh\` again`);
  return fs.existsSync(python) ? python : undefined;
}

/** The versitygw binary from `paths`; throws, saying how to get it, when bootstrap has not built it. */
export function s3ServerBin(paths: EnvPaths): string {
  if (!paths.s3server) {
    throw new Error(
      'the S3 test server (versitygw) is not installed: run `bash scripts/bootstrap.sh --test` ' +
        '(it builds it with Go; or set SRLM_S3_SERVER_BIN)',
    );
  }
  if (!fs.existsSync(paths.s3server)) {
    throw new Error(`the S3 test server ${paths.s3server} does not exist: run \`bash scripts/bootstrap.sh --test\``);
  }
  return paths.s3server;
}

/**
 * The versitygw binary for `srlm run --local-s3`: built on first use (the main job's bootstrap
 * does not build it), saying what and why; throws with the command to run when that fails.
 */
export function ensureS3ServerBin(paths: EnvPaths, log: (line: string) => void): string {
  if (paths.s3server && fs.existsSync(paths.s3server)) return paths.s3server;
  const script = path.join(repoRoot(), 'scripts/build-s3-server.sh');
  log(
    `--local-s3: installing the local S3-compatible server (Versity S3 Gateway), built once with Go into ${paths.cacheDir}/bin (a few minutes the first time)`,
  );
  const r = spawnSync('bash', [script, paths.cacheDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !bin || !fs.existsSync(bin)) {
    throw new Error(
      `--local-s3: could not build the S3-compatible server (exit ${r.status ?? r.signal}); run \`bash ${path.relative(process.cwd(), script) || script} ${paths.cacheDir}\` to see why (it needs Go 1.25+), or set SRLM_S3_SERVER_BIN`,
    );
  }
  return bin;
}
