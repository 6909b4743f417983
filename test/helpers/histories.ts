/**
 * Workflow histories as replay fixtures (test/histories/*.json), exported in the Temporal
 * CLI's JSON format (`temporal workflow show --output json`). Tests that run real workflows
 * call recordHistory(); with SRLM_RECORD_HISTORIES=1 it writes a fixture that does not exist
 * yet (old fixtures stay: they are what guards running executions), with =all it overwrites
 * every one; otherwise it does nothing. test/workflow/replay.test.ts replays every fixture against the current
 * workflow code, so a change that breaks determinism fails `npm test`.
 *
 * New fixtures: `npm run histories:record`. Overwriting old ones (SRLM_RECORD_HISTORIES=all)
 * only after a deliberate, versioned change whose old executions have all finished.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { loadEnvPaths, repoRoot } from '../../infra/paths';

export const HISTORIES_DIR = path.resolve(__dirname, '../histories');

export async function recordHistory(address: string, name: string, workflowId: string, runId?: string): Promise<void> {
  const mode = process.env.SRLM_RECORD_HISTORIES;
  if (mode !== '1' && mode !== 'all') return;
  if (mode === '1' && fs.existsSync(path.join(HISTORIES_DIR, `${name}.json`))) return;
  const args = [
    'workflow',
    'show',
    '--address',
    address,
    '--workflow-id',
    workflowId,
    '--output',
    'json',
    ...(runId ? ['--run-id', runId] : []),
  ];
  const { stdout } = await promisify(execFile)(loadEnvPaths(repoRoot()).temporal, args, { maxBuffer: 64 * 1024 * 1024 });
  JSON.parse(stdout); // must be one JSON document
  fs.mkdirSync(HISTORIES_DIR, { recursive: true });
  fs.writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), stdout.endsWith('\n') ? stdout : stdout + '\n');
}
