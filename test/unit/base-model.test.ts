import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunConfig } from '../../core/schemas';
import { baseModelPathProblem } from '../../inputs/base-model';

const config = (baseModel: unknown) => RunConfig.parse({ run: 'bm', seed: { ift: 'ift.jsonl' }, baseModel });

describe('the base model check (CLI and prepareRun)', () => {
  it('a directory without config.json is named as not a Hugging Face model directory; one with it, or a packaged model, passes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-bm-'));
    expect(baseModelPathProblem(config({ path: dir }))).toBe(
      `"baseModel.path": ${dir} is not a Hugging Face model directory (no config.json)`,
    );
    fs.writeFileSync(path.join(dir, 'config.json'), '{}');
    expect(baseModelPathProblem(config({ path: dir }))).toBeNull();
    expect(baseModelPathProblem(config({ packaged: 'smollm2-135m-instruct' }))).toBeNull();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
