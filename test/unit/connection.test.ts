import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { temporalSettings } from '../../infra/connection';

describe('temporalSettings (read like the temporal CLI reads them)', () => {
  const noFile = { TEMPORAL_CONFIG_FILE: path.join(os.tmpdir(), 'srlm-no-such-temporal.toml') };

  it('defaults to localhost:7233 and namespace default', () => {
    const s = temporalSettings({ ...noFile });
    expect(s.address).toBe('localhost:7233');
    expect(s.namespace).toBe('default');
    expect(s.secured).toBe(false);
  });

  it('takes TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and TEMPORAL_API_KEY (TLS on with an API key)', () => {
    const s = temporalSettings({
      ...noFile,
      TEMPORAL_ADDRESS: 'my-ns.a1b2c.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'my-ns.a1b2c',
      TEMPORAL_API_KEY: 'secret-key',
    });
    expect(s.address).toBe('my-ns.a1b2c.tmprl.cloud:7233');
    expect(s.namespace).toBe('my-ns.a1b2c');
    expect(s.connectionOptions.apiKey).toBe('secret-key');
    expect(s.secured).toBe(true);
  });

  it('reads a TOML profile chosen with TEMPORAL_PROFILE; environment variables override it', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-envconfig-')), 'temporal.toml');
    fs.writeFileSync(
      file,
      '[profile.default]\naddress = "default-host:7233"\n\n[profile.staging]\naddress = "staging-host:7233"\nnamespace = "retraining"\n',
    );
    const s = temporalSettings({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' });
    expect(s.address).toBe('staging-host:7233');
    expect(s.namespace).toBe('retraining');
    expect(temporalSettings({ TEMPORAL_CONFIG_FILE: file }).address).toBe('default-host:7233');
    expect(temporalSettings({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging', TEMPORAL_NAMESPACE: 'other' }).namespace).toBe(
      'other',
    );
  });
});
