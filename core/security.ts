/**
 * What a run config may make a worker do with the worker's own secrets (docs/security.md).
 * A config names the environment variable holding an API key (`apiKeyEnv`); without these
 * rules anyone who may submit a config or a schedule could name AWS_SECRET_ACCESS_KEY and a URL
 * of their own, and the worker would send that secret there as a Bearer token.
 *
 * - Only names matching the allowlist may be read: OPENAI_API_KEY and SRLM_*_API_KEY, plus the
 *   patterns in the worker's SRLM_ALLOWED_KEY_ENVS (comma-separated, `*` matches any run of
 *   letters, digits and underscores). The allowlist lives in the worker's environment, never in
 *   a config.
 * - A key is sent only over https, or plain http to a loopback host (127.0.0.0/8, ::1,
 *   localhost), and never to a URL carrying userinfo (`https://user:pass@host`).
 *
 * Pure: the caller passes the environment it trusts.
 */

/** The environment variable that extends the allowlist of key variable names, on the worker. */
export const ALLOWED_KEY_ENVS_VAR = 'SRLM_ALLOWED_KEY_ENVS';
export const DEFAULT_KEY_ENV_PATTERNS: readonly string[] = ['OPENAI_API_KEY', 'SRLM_*_API_KEY'];

function patternRegex(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[^A-Za-z0-9_]/g, (c) => `\\${c}`))
    .join('[A-Za-z0-9_]*');
  return new RegExp(`^${body}$`);
}

/** The allowlist patterns in force: the defaults plus the worker's SRLM_ALLOWED_KEY_ENVS. */
export function keyEnvPatterns(env: Record<string, string | undefined> = {}): string[] {
  const extra = (env[ALLOWED_KEY_ENVS_VAR] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  return [...DEFAULT_KEY_ENV_PATTERNS, ...extra];
}

/** Why `name` may not be read as an API key, or null when it may. */
export function keyEnvProblem(name: string, env: Record<string, string | undefined> = {}): string | null {
  const patterns = keyEnvPatterns(env);
  if (patterns.some((p) => patternRegex(p).test(name))) return null;
  return `"${name}" is not an allowed API key variable (allowed: ${patterns.join(', ')}); name the key SRLM_<NAME>_API_KEY on the worker, or extend the worker's ${ALLOWED_KEY_ENVS_VAR} (never the config)`;
}

/** True for 127.0.0.0/8, ::1 and localhost: addresses that do not leave the host. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return Boolean(m && m.slice(1).every((o) => Number(o) <= 255));
}

/**
 * Why an API key may not be sent to `url`, or null when it may: not a URL, userinfo in it, or
 * plain http to a host other than loopback.
 */
export function keyDestinationProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  const userinfo = userinfoProblem(url);
  if (userinfo) return userinfo;
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:' && isLoopbackHost(u.hostname)) return null;
  if (u.protocol === 'http:')
    return `an API key is sent only over https (plain http only to a loopback host: 127.0.0.1, ::1, localhost), and ${u.hostname} is not loopback; use https://${u.host}${u.pathname}, or drop apiKeyEnv`;
  return `must be an http(s) URL, got ${u.protocol}`;
}

/** Why `url` is refused even without a key (it carries user:password@), or null. */
export function userinfoProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  return u.username || u.password
    ? 'must not carry user:password@ (credentials in a URL end up in logs and histories); a key comes from apiKeyEnv'
    : null;
}
