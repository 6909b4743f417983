import { describe, expect, it } from 'vitest';
import { DROP_REASONS, InstructionFilter, normalizeInstruction } from '../../core/filters';

const SEEDS = ['Give three tips for staying healthy during the winter.', 'Explain how a bicycle gear system works.'];

function reasonFor(instruction: string, seeds = SEEDS): string {
  const d = new InstructionFilter(seeds).consider(instruction);
  return d.kept ? 'kept' : d.reason;
}

describe('InstructionFilter', () => {
  it('keeps an ordinary new instruction, whitespace-normalized', () => {
    const d = new InstructionFilter(SEEDS).consider('  Suggest a name for a bakery\n that sells only   sourdough bread. ');
    expect(d).toEqual({ kept: true, instruction: 'Suggest a name for a bakery that sells only sourdough bread.' });
  });

  it('drops instructions of 3 words or fewer as too_short (4 words pass)', () => {
    expect(reasonFor('Summarize this article.')).toBe('too_short');
    expect(reasonFor('   ')).toBe('too_short');
    expect(reasonFor('Summarize this news article.')).toBe('kept');
  });

  it('drops instructions of more than 150 words as too_long (150 pass)', () => {
    const words = (n: number) => Array.from({ length: n }, (_, k) => `word${k}`).join(' ');
    expect(reasonFor(`Please consider ${words(149)}`)).toBe('too_long');
    expect(reasonFor(`Please consider ${words(148)}`)).toBe('kept');
  });

  it.each([
    'Describe the image below in two sentences.',
    'Look at these pictures and pick the funniest one.',
    'Draw a cat using ASCII characters only.',
    'Plot the population of France since 1900.',
    'Read the attached file and summarize it.',
    'Use the map to find the shortest route home.',
    'Explain the trends in the GRAPHS shown here.',
    'Go to the website and tell me the price.',
  ])('drops "%s" as unsupported_media', (instruction) => {
    expect(reasonFor(instruction)).toBe('unsupported_media');
  });

  it('matches media words only as whole words ("drawer", "profile", "mapping" pass)', () => {
    expect(reasonFor('Suggest ways to organise a kitchen drawer.')).toBe('kept');
    expect(reasonFor('Write a short dating profile for a retired sailor.')).toBe('kept');
    expect(reasonFor('Explain what a mapping between two sets is.')).toBe('kept');
  });

  it('drops instructions starting with "Write a program" as write_a_program', () => {
    expect(reasonFor('Write a program that reverses a linked list.')).toBe('write_a_program');
    expect(reasonFor('write a  program to sort numbers in Python')).toBe('write_a_program');
    expect(reasonFor('Explain how to write a program that sorts numbers.')).toBe('kept');
  });

  it('drops instructions starting with punctuation as starts_with_punctuation', () => {
    expect(reasonFor('"Tell me a joke about penguins and ice."')).toBe('starts_with_punctuation');
    expect(reasonFor('- Name three rivers in Africa please.')).toBe('starts_with_punctuation');
  });

  it('drops instructions starting with a non-ASCII character as non_ascii_start', () => {
    expect(reasonFor('¿Cuál es la capital de Francia hoy?')).toBe('non_ascii_start');
    expect(reasonFor('请用三句话介绍 the Great Wall of China please.')).toBe('non_ascii_start');
  });

  it('drops an exact (whitespace-normalized) copy of a seed as duplicate', () => {
    expect(reasonFor('Explain  how a bicycle gear\nsystem works.')).toBe('duplicate');
  });

  it('drops an exact copy of an instruction kept earlier as duplicate', () => {
    const filter = new InstructionFilter(SEEDS);
    expect(filter.consider('Suggest a name for a sourdough bakery.').kept).toBe(true);
    expect(filter.consider('Suggest a name for a sourdough bakery.')).toEqual({ kept: false, reason: 'duplicate' });
  });

  it('drops an instruction with ROUGE-L above the threshold against a seed as similar_to_existing', () => {
    const d = new InstructionFilter(SEEDS).consider('Give three tips for staying healthy during the summer.');
    expect(d).toMatchObject({ kept: false, reason: 'similar_to_existing', similarTo: SEEDS[0] });
    if (!d.kept) expect(d.rougeL).toBeGreaterThan(0.7);
  });

  it('drops an instruction similar to one kept earlier, and keeps it under a higher threshold', () => {
    const strict = new InstructionFilter(SEEDS);
    strict.consider('Write a haiku about autumn leaves falling.');
    expect(strict.consider('Write a haiku about autumn leaves.')).toMatchObject({ reason: 'similar_to_existing' });
    // 2·5/(6+5) ≈ 0.909
    const lax = new InstructionFilter(SEEDS, 0.95);
    lax.consider('Write a haiku about autumn leaves falling.');
    expect(lax.consider('Write a haiku about autumn leaves.').kept).toBe(true);
  });

  it('does not drop at exactly the threshold: only ROUGE-L strictly above it', () => {
    // "a b c d" vs "a b x y": LCS 2, F = 0.5
    const filter = new InstructionFilter(['alpha beta gamma delta'], 0.5);
    expect(filter.consider('alpha beta epsilon zeta').kept).toBe(true);
  });

  it('counts every decision by reason, all reasons present', () => {
    const filter = new InstructionFilter(SEEDS);
    filter.consider('Too short.');
    filter.consider('Describe this picture in detail for me.');
    filter.consider('Name four famous composers of the Baroque period.');
    const counts = filter.counts();
    expect(Object.keys(counts).sort()).toEqual(['kept', ...DROP_REASONS].sort());
    expect(counts).toMatchObject({ kept: 1, too_short: 1, unsupported_media: 1, similar_to_existing: 0 });
  });

  it('rejects a threshold outside (0, 1]', () => {
    expect(() => new InstructionFilter([], 0)).toThrow(/threshold/);
    expect(() => new InstructionFilter([], 1.5)).toThrow(/threshold/);
  });
});

describe('normalizeInstruction', () => {
  it('collapses runs of whitespace and trims', () => {
    expect(normalizeInstruction('\n  a\t b \r\n c  ')).toBe('a b c');
  });
});
