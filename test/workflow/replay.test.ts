/**
 * Determinism guard: every recorded history in test/histories replays against the current
 * workflow code. A workflow change that would break running executions (a reordered or new
 * command without `patched()`) fails here. See test/helpers/histories.ts for recording.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { installQuietRuntime, workflowBundle } from '../../workers';
import { HISTORIES_DIR } from '../helpers/histories';

const files = fs.existsSync(HISTORIES_DIR)
  ? fs
      .readdirSync(HISTORIES_DIR)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];

describe('replaying recorded histories', () => {
  it('has the fixtures: a completed run and its iterations, a failed run, a cancelled run, a paused one, an iteration on a fleet', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'run-completed.json',
        'iteration-completed.json',
        'run-failed-store-error.json',
        'run-cancelled.json',
        'run-resumed.json',
        'run-paused-resumed.json',
        'iteration-paused-resumed.json',
        'run-search-attributes.json',
        'iteration-search-attributes.json',
        'run-scheduled-promoted.json',
        'run-evaluated.json',
        'iteration-fleet.json',
        'iteration-fleet-evaluated.json',
      ]),
    );
  });

  for (const file of files) {
    it(`replays ${file}`, async () => {
      installQuietRuntime();
      const history = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, path.basename(file, '.json'));
    });
  }
});
