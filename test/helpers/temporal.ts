/**
 * The Temporal dev server that test/global-setup.ts starts once per test run.
 * Tests always use this server, never one named by TEMPORAL_ADDRESS.
 */
import { inject } from 'vitest';

// The ProvidedContext keys are declared in test/global-setup.ts.

/** host:port of the test run's Temporal dev server (headless, namespace `default`). */
export function testTemporalAddress(): string {
  const address = inject('temporalAddress') || process.env.SRLM_TEST_TEMPORAL_ADDRESS || '';
  if (!address) {
    const why = inject('temporalSetupError') || 'test/global-setup.ts did not run';
    throw new Error(`no Temporal dev server for tests: ${why}`);
  }
  return address;
}
