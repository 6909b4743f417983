/**
 * Workflow code runs in Temporal's deterministic sandbox: it may import @temporalio/workflow,
 * other workflow modules, and types. A value import of anything else (a Node built-in, zod,
 * an activity module) would break replay or bundling, so this guard reads the sources.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = path.resolve(__dirname, '../../workflows');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'));

function valueImports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)'/gm)) {
    const [, , typeOnly, clause, from] = m;
    if (typeOnly) continue;
    // `import { type A, type B } from` is type-only too
    const names = clause!.replace(/[{}]/g, '').split(',').map((s) => s.trim()).filter(Boolean);
    if (names.length > 0 && names.every((n) => n.startsWith('type '))) continue;
    out.push(from!);
  }
  return out;
}

describe('workflow sources', () => {
  it('exist', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const file of files) {
    it(`${file} imports only @temporalio/workflow and workflow modules as values`, () => {
      const imports = valueImports(fs.readFileSync(path.join(dir, file), 'utf8'));
      const bad = imports.filter((m) => m !== '@temporalio/workflow' && !/^\.\/[\w-]+$/.test(m));
      expect(bad).toEqual([]);
    });
  }
  it('the guard catches a value import of a Node built-in', () => {
    expect(valueImports("import * as fs from 'node:fs';\nimport type { X } from '../core/x';")).toEqual(['node:fs']);
  });
});
