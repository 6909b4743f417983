import { describe, expect, it } from 'vitest';
import { isLoopbackHost, keyDestinationProblem, keyEnvProblem } from '../../core/security';

describe('which environment variables a config may name as an API key', () => {
  it('allows OPENAI_API_KEY and SRLM_*_API_KEY, refuses everything else', () => {
    for (const ok of ['OPENAI_API_KEY', 'SRLM_JUDGE_API_KEY', 'SRLM_GPU_1_API_KEY']) expect(keyEnvProblem(ok), ok).toBeNull();
    for (const bad of [
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
      'TEMPORAL_API_KEY',
      'TEMPORAL_TLS_CLIENT_KEY_DATA',
      'HOME',
      'SRLM_API_KEY',
      'OPENAI_API_KEY_2',
      'XSRLM_A_API_KEY',
    ]) {
      expect(keyEnvProblem(bad), bad).toMatch(/not an allowed API key variable.*SRLM_ALLOWED_KEY_ENVS/);
    }
  });
  it("is extended only by the environment given (the worker's SRLM_ALLOWED_KEY_ENVS), with * patterns", () => {
    const env = { SRLM_ALLOWED_KEY_ENVS: 'CORP_*_TOKEN, HF_TOKEN' };
    expect(keyEnvProblem('CORP_LLM_TOKEN', env)).toBeNull();
    expect(keyEnvProblem('HF_TOKEN', env)).toBeNull();
    expect(keyEnvProblem('HF_TOKEN')).not.toBeNull();
    expect(keyEnvProblem('CORP_LLM_SECRET', env)).not.toBeNull();
    // a pattern's other characters are literal, not regex
    expect(keyEnvProblem('AXB', { SRLM_ALLOWED_KEY_ENVS: 'A.B' })).not.toBeNull();
  });
});

describe('where an API key may be sent', () => {
  it('https anywhere, plain http only to loopback, never with userinfo', () => {
    expect(keyDestinationProblem('https://api.example.com/v1')).toBeNull();
    expect(keyDestinationProblem('http://127.0.0.1:8000/v1')).toBeNull();
    expect(keyDestinationProblem('http://127.9.0.3:8000/v1')).toBeNull();
    expect(keyDestinationProblem('http://localhost:8000/v1')).toBeNull();
    expect(keyDestinationProblem('http://[::1]:8000/v1')).toBeNull();
    expect(keyDestinationProblem('http://gpu-1:8000/v1')).toMatch(/only over https.*gpu-1 is not loopback/);
    expect(keyDestinationProblem('http://127.0.0.1.evil.com/v1')).toMatch(/only over https/);
    expect(keyDestinationProblem('http://10.0.0.1/v1')).toMatch(/only over https/);
    expect(keyDestinationProblem('https://user:pass@api.example.com/v1')).toMatch(/user:password@/);
    expect(keyDestinationProblem('http://user@127.0.0.1/v1')).toMatch(/user:password@/);
    expect(keyDestinationProblem('ftp://x/v1')).toMatch(/http\(s\)/);
  });
  it('knows loopback hosts', () => {
    expect(['127.0.0.1', '127.255.255.254', '::1', '[::1]', 'LOCALHOST', 'a.localhost'].every(isLoopbackHost)).toBe(true);
    expect(['128.0.0.1', '127.0.0.256', '0.0.0.0', 'localhost.com', '::2'].some(isLoopbackHost)).toBe(false);
  });
});

describe('where the metrics endpoint listens (SRLM_METRICS_BIND)', () => {
  it('loopback by default; beyond it only with SRLM_METRICS_EXPOSE=1', async () => {
    const { metricsBindAddress } = await import('../../workers/index');
    expect(metricsBindAddress({})).toBeUndefined();
    expect(metricsBindAddress({ SRLM_METRICS_BIND: '9464' })).toBe('127.0.0.1:9464');
    expect(metricsBindAddress({ SRLM_METRICS_BIND: '127.0.0.1:9464' })).toBe('127.0.0.1:9464');
    expect(metricsBindAddress({ SRLM_METRICS_BIND: '[::1]:9464' })).toBe('[::1]:9464');
    expect(() => metricsBindAddress({ SRLM_METRICS_BIND: '0.0.0.0:9464' })).toThrow(/no authentication.*SRLM_METRICS_EXPOSE=1/);
    expect(() => metricsBindAddress({ SRLM_METRICS_BIND: '0.0.0.0:9464', SRLM_METRICS_EXPOSE: 'yes' })).toThrow(/SRLM_METRICS_EXPOSE=1/);
    expect(metricsBindAddress({ SRLM_METRICS_BIND: '0.0.0.0:9464', SRLM_METRICS_EXPOSE: '1' })).toBe('0.0.0.0:9464');
    expect(() => metricsBindAddress({ SRLM_METRICS_BIND: 'abc' })).toThrow(/host:port/);
  });
});
