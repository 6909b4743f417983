/**
 * Where the Temporal server is, read the way Temporal's own tools read it
 * (@temporalio/envconfig): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the
 * TEMPORAL_TLS_* variables, and the TOML profile file (TEMPORAL_CONFIG_FILE, default
 * ~/.config/temporalio/temporal.toml; profile TEMPORAL_PROFILE, default "default").
 * One environment thus configures the workers, the srlm CLI and the temporal CLI alike.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';

export const DEFAULT_ADDRESS = 'localhost:7233';

export interface TemporalSettings {
  address: string;
  namespace: string;
  /** for NativeConnection.connect (workers) and Connection.connect (clients) */
  connectionOptions: NativeConnectionOptions & { address: string };
  /** true when an API key or TLS is configured: a remote cluster (Temporal Cloud), never an embedded dev server */
  secured: boolean;
}

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  let cfg;
  try {
    cfg = loadClientConnectConfig({ overrideEnvVars: vars });
  } catch (err) {
    throw new Error(`Temporal connection settings: ${(err as Error).message}`, { cause: err });
  }
  const address = cfg.connectionOptions.address ?? DEFAULT_ADDRESS;
  const connectionOptions = { ...cfg.connectionOptions, address };
  return {
    address,
    namespace: cfg.namespace ?? 'default',
    connectionOptions,
    secured: Boolean(connectionOptions.apiKey) || Boolean(connectionOptions.tls),
  };
}
