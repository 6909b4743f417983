import { describe, expect, it } from 'vitest';
import { describeLeaks, findLeaks, type LeakItem, lineOfRecord, normaliseForLeakage } from '../../core/leakage';

const item = (kind: string, id: string, text: string, file = `${kind}.jsonl`): LeakItem => ({ kind, id, text, file });

describe('normaliseForLeakage', () => {
  it('folds case, Unicode forms and whitespace', () => {
    expect(normaliseForLeakage('  Ｗｈａｔ  is\u00a0DNA?\n')).toBe('what is dna?');
  });
});

describe('findLeaks', () => {
  const training = [item('ift', 'i1', 'What is DNA?'), item('ranked', 'r9', 'Name three rivers.')];

  it('finds a held-out record sharing a normalised prompt, or an id, with training data', () => {
    const heldOut = [item('eval', 'e1', 'what  is\tDNA?'), item('eval', 'r9', 'Something new.'), item('eval', 'e3', 'What is RNA?')];
    const leaks = findLeaks(training, heldOut);
    expect(leaks.map((l) => [l.heldOut.id, l.training.id, l.by])).toEqual([
      ['e1', 'i1', 'text'],
      ['r9', 'r9', 'id'],
    ]);
  });

  it('finds nothing when the sets are disjoint', () => {
    expect(findLeaks(training, [item('eval', 'e1', 'What is a gene?')])).toEqual([]);
  });
});

describe('lineOfRecord and describeLeaks', () => {
  const file = ['{"id": "a", "prompt": "One?"}', '', '{"id": "b", "prompt": "Say \\"hi\\"."}', '{"message_id": "m7", "text": "x"}'].join(
    '\n',
  );

  it('finds a record by its id, its prompt as JSON writes it, or an OASST message id', () => {
    expect(lineOfRecord(file, { id: 'a', text: 'One?' })).toBe(1);
    expect(lineOfRecord(file, { id: 'zzz', text: 'Say "hi".' })).toBe(3);
    expect(lineOfRecord(file, { id: 'oasst-m7', text: 'nope' })).toBe(4);
    expect(lineOfRecord(file, { id: 'q', text: 'absent' })).toBe(0);
  });

  it('names both records with file:line', () => {
    const leaks = findLeaks(
      [item('seed IFT example', 'i1', 'What is DNA?', 'ift.jsonl')],
      [item('evaluation prompt', 'eval-3', 'what is dna?', 'eval.jsonl')],
    );
    expect(describeLeaks(leaks, (x) => `${x.file}:${x.id === 'i1' ? 5 : 3}`)).toBe(
      '  evaluation prompt "eval-3" (eval.jsonl:3) shares the prompt "what is dna?" with seed IFT example "i1" (ift.jsonl:5)',
    );
  });
});
