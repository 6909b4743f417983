/**
 * The lint rules the project relies on (eslint.config.mjs), applied to source text: workflow
 * code imports values only from @temporalio/workflow and other workflow modules (a Node
 * built-in, zod or activity code would break replay or the workflow bundle), and no promise is
 * left floating. `npm run lint` applies them to the tree; this proves the config catches them.
 */
import * as path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
// the import rules need no type information: checked without it, they need no TypeScript program
const untyped = new ESLint({
  cwd: root,
  overrideConfig: {
    languageOptions: { parserOptions: { projectService: false } },
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
});
const typed = new ESLint({ cwd: root });

/** "<line>:<rule>" of each problem ESLint finds in `text`, linted as if it were `file`. */
async function problems(file: string, text: string, eslint = untyped): Promise<string[]> {
  const [result] = await eslint.lintText(text, { filePath: path.join(root, file) });
  return result!.messages.map((m) => `${m.line}:${m.ruleId}`);
}

const imports = [
  "import * as fs from 'node:fs';",
  "import { z } from 'zod';",
  "import { createActivities } from '../activities';",
  "import { condition } from '@temporalio/workflow';",
  "import { TASK_QUEUES } from './contract';",
  "import type { RunConfig } from '../core/schemas';",
  "import { type ArtifactStore } from '../store/store';",
  'export const used = [fs, z, createActivities, condition, TASK_QUEUES];',
  'export type Used = [RunConfig, ArtifactStore];',
].join('\n');

describe('lint rules (eslint.config.mjs)', () => {
  it('workflow code: value imports of a Node built-in, zod or activity code are errors; @temporalio/workflow, workflow modules and types (`import type`, `{ type X }`) pass', async () => {
    expect(await problems('workflows/index.ts', imports)).toEqual([
      '1:@typescript-eslint/no-restricted-imports',
      '2:@typescript-eslint/no-restricted-imports',
      '3:@typescript-eslint/no-restricted-imports',
    ]);
  });

  it('activity code may import them', async () => {
    expect(await problems('activities/run.ts', imports.replace('./contract', '../workflows/contract'))).toEqual([]);
  });

  it('imports point one way: core imports no other layer, the store imports no activity code, nothing outside test/ imports tests', async () => {
    const text = (from: string) => `import { x } from '${from}';\nexport const y = x;\n`;
    expect(await problems('core/ids.ts', text('../store/keys'))).toEqual(['1:@typescript-eslint/no-restricted-imports']);
    expect(await problems('store/keys.ts', text('../activities/common'))).toEqual(['1:@typescript-eslint/no-restricted-imports']);
    expect(await problems('bench/store.ts', text('../test/helpers/stages'))).toEqual(['1:@typescript-eslint/no-restricted-imports']);
    expect(await problems('backends/compute.ts', text('../store/keys'))).toEqual([]);
  });

  it('a floating promise is an error anywhere', async () => {
    const text =
      'async function later(): Promise<number> {\n  return 1;\n}\nexport function now(): void {\n  later();\n  void later();\n}\n';
    expect(await problems('activities/run.ts', text, typed)).toEqual(['5:@typescript-eslint/no-floating-promises']);
  });
});
