import { describe, expect, it } from 'vitest';
import { formatConfigError, parseJsonl, RecordError, toJsonl } from '../../core/jsonl';
import { IftExample, RankedSet, RunConfig } from '../../core/schemas';

function recordError(fn: () => unknown): RecordError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RecordError) return err;
    throw err;
  }
  throw new Error('expected a RecordError');
}

const FILE = 'seed/ift.jsonl';
const ok = (id: string) => JSON.stringify({ id, prompt: 'Say hi.', response: 'Hi!' });

describe('parseJsonl', () => {
  it('parses one record per line, skipping blank lines and tolerating CRLF', () => {
    const text = `${ok('a')}\r\n\n   \n${ok('b')}\n`;
    expect(parseJsonl(text, IftExample, FILE).map((r) => r.id)).toEqual(['a', 'b']);
  });

  it('names file, line and field for a value of the wrong type', () => {
    const lines = Array.from({ length: 11 }, (_, k) => ok(`r${k}`));
    lines.push(JSON.stringify({ id: 'x', prompt: 'Say hi.', response: 42 }));
    const err = recordError(() => parseJsonl(lines.join('\n'), IftExample, FILE));
    expect(err.message).toBe('seed/ift.jsonl:12: field "response": expected string, received number');
    expect([err.file, err.line, err.field]).toEqual([FILE, 12, 'response']);
  });

  it('counts blank lines when numbering lines', () => {
    const err = recordError(() => parseJsonl(`${ok('a')}\n\n{"id":"b","prompt":"p"}`, IftExample, FILE));
    expect(err.message).toBe('seed/ift.jsonl:3: field "response": missing (expected string)');
  });

  it('reports malformed JSON with the parser message', () => {
    const err = recordError(() => parseJsonl(`${ok('a')}\n${ok('b')}\n{"id": "c",`, IftExample, FILE));
    expect(err.message).toMatch(/^seed\/ift\.jsonl:3: malformed JSON \(.+\)$/);
    expect(err.field).toBeUndefined();
  });

  it('reports an empty file', () => {
    expect(recordError(() => parseJsonl('', IftExample, FILE)).message).toBe('seed/ift.jsonl: file is empty');
    expect(recordError(() => parseJsonl('\n  \n\n', IftExample, FILE)).message).toBe('seed/ift.jsonl: file is empty');
  });

  it('names nested fields with their array index', () => {
    const line = JSON.stringify({
      id: 's',
      prompt: 'p',
      replies: [
        { text: 'a', rank: 0 },
        { text: 'b', rank: -1 },
      ],
    });
    const err = recordError(() => parseJsonl(line, RankedSet, 'seed/ranked.jsonl'));
    expect(err.message).toBe('seed/ranked.jsonl:1: field "replies[1].rank": must be >= 0');
    expect(err.field).toBe('replies[1].rank');
  });

  it("shows a schema author's own message as written", () => {
    const line = JSON.stringify({
      id: 's',
      prompt: 'p',
      replies: [
        { text: 'a', rank: 0 },
        { text: 'b', rank: 0 },
      ],
    });
    expect(recordError(() => parseJsonl(line, RankedSet, 'r.jsonl')).message).toBe(
      'r.jsonl:1: field "replies": reply ranks must be distinct',
    );
  });

  it('names an unknown key', () => {
    const line = JSON.stringify({ id: 'a', prompt: 'p', response: 'r', extra: 1 });
    const err = recordError(() => parseJsonl(line, IftExample, FILE));
    expect(err.message).toBe('seed/ift.jsonl:1: unknown key "extra"');
    expect(err.field).toBe('extra');
  });

  it('reports a line that is not an object', () => {
    expect(recordError(() => parseJsonl('null', IftExample, FILE)).message).toBe('seed/ift.jsonl:1: expected object, received null');
  });

  it('says how many more problems a line has', () => {
    expect(recordError(() => parseJsonl('{}', IftExample, FILE)).message).toBe(
      'seed/ift.jsonl:1: field "id": missing (expected string) (and 2 more problems)',
    );
  });
});

describe('toJsonl', () => {
  it('writes one JSON document per line with a trailing newline, and round-trips', () => {
    const records = [
      { id: 'a', prompt: 'line\nbreak', response: 'r' },
      { id: 'b', prompt: 'p', response: 'r' },
    ];
    const text = toJsonl(records);
    expect(text.split('\n')).toHaveLength(3);
    expect(text.endsWith('\n')).toBe(true);
    expect(parseJsonl(text, IftExample, 'x')).toEqual(records);
  });

  it('writes nothing for no records', () => {
    expect(toJsonl([])).toBe('');
  });
});

describe('formatConfigError', () => {
  const errorsFor = (input: unknown) => {
    const r = RunConfig.safeParse(input);
    if (r.success) throw new Error('expected the config to be invalid');
    return formatConfigError(r.error, 'configs/demo.json').split('\n');
  };

  it('names the key path of a value out of range', () => {
    expect(errorsFor({ run: 'demo', seed: { ift: 'x' }, candidates: { n: 0 } })).toEqual([
      'configs/demo.json: "candidates.n": must be > 0',
    ]);
  });

  it('names an unknown key and where it is', () => {
    expect(errorsFor({ run: 'demo', seed: { ift: 'x' }, judge: { foo: 1 } })).toEqual(['configs/demo.json: unknown key "foo" at "judge"']);
    expect(errorsFor({ run: 'demo', seed: { ift: 'x' }, bogus: true })).toEqual(['configs/demo.json: unknown key "bogus"']);
  });

  it('lists every problem on its own line', () => {
    const lines = errorsFor({
      run: 'demo',
      seed: { ift: 'x' },
      dpo: { lr: -1 },
      prompts: { sampling: { temperature: 0.6, topP: 2, maxNewTokens: 1.5 } },
    });
    expect(lines).toEqual([
      'configs/demo.json: "prompts.sampling.topP": must be <= 1',
      'configs/demo.json: "prompts.sampling.maxNewTokens": expected an integer, received number',
      'configs/demo.json: "dpo.lr": must be > 0',
    ]);
  });

  it("explains a value that matches none of a union's forms", () => {
    const [line] = errorsFor({ run: 'demo', seed: { ift: 'x' }, baseModel: { packaged: 'gpt-9' } });
    expect(line).toMatch(
      /^configs\/demo\.json: "baseModel": matches none of the allowed forms \(closest: .*"baseModel\.packaged": must be one of "smollm2-135m-instruct", "gemma3-270m"/,
    );
  });

  it('shows custom messages and missing keys', () => {
    expect(errorsFor({ seed: {} })).toEqual([
      'configs/demo.json: "run": missing (expected string)',
      'configs/demo.json: "seed": needs `ift` (a JSONL file of instruction examples) or `oasst` (an OASST trees export)',
    ]);
  });
});
