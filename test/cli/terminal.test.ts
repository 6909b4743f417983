/**
 * Strings from run data and configs reach the terminal with their control characters escaped:
 * an ANSI escape in a run name, a config key or a data file's record id is shown, not obeyed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { terminalSafe } from '../../core/terminal';
import { runCli } from '../helpers/run-cli';

const ESC = '\u001b';
const CLEAR = `${ESC}[2J${ESC}]0;pwned\u0007`;

describe('terminalSafe', () => {
  it('escapes C0/C1 controls, DEL and bidi overrides; keeps newlines, tabs and other text', () => {
    expect(terminalSafe(`a${ESC}[31mred\r\u009b\u007f\u202eb\n\tç 日本`)).toBe('a\\u001b[31mred\\u000d\\u009b\\u007f\\u202eb\n\tç 日本');
    // JSON output stays JSON
    const json = terminalSafe(JSON.stringify({ run: `x\u009by` }));
    expect(JSON.parse(json)).toEqual({ run: 'x\u009by' });
  });
});

describe('the CLI escapes what it prints from run data and configs', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-terminal-'));
  // nothing is started: these fail on their input before any connection
  const noServer = { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:9' };

  it('a run name with an ANSI escape (srlm report)', async () => {
    const res = await runCli(['report', `evil${CLEAR}`, '--store', tmp], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).not.toContain(ESC);
    expect(res.stderr).not.toContain('\u0007');
    expect(res.stderr).toContain('evil\\u001b[2J\\u001b]0;pwned\\u0007');
  });

  it('a config key and a seed record id with ANSI escapes (srlm run)', async () => {
    const cfg = path.join(tmp, 'run.json');
    fs.writeFileSync(cfg, JSON.stringify({ run: 'x', seed: { ift: 'ift.jsonl' }, [`k${CLEAR}`]: 1 }));
    let res = await runCli(['run', '--config', cfg, '--state-dir', path.join(tmp, 'state')], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).not.toContain(ESC);
    expect(res.stderr).toContain('k\\u001b[2J');
    const line = (id: string) => JSON.stringify({ id, prompt: 'Say hello.', response: 'Hello.' });
    fs.writeFileSync(path.join(tmp, 'ift.jsonl'), [line(`dup${CLEAR}`), line(`dup${CLEAR}`)].join('\n') + '\n');
    fs.writeFileSync(cfg, JSON.stringify({ run: 'x', seed: { ift: 'ift.jsonl' } }));
    res = await runCli(['run', '--config', cfg, '--state-dir', path.join(tmp, 'state')], { env: noServer });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/ift\.jsonl:2: duplicate record id "dup\\u001b\[2J/);
    expect(res.stderr).not.toContain(ESC);
  });
});
