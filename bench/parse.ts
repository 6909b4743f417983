/**
 * bench:parse — the judge verdict parser's throughput (MB/s) on realistic judgments and on
 * adversarial texts of megabytes built to make a backtracking parser quadratic, measured side
 * by side in one run; and the time ratio between an adversarial input and one 4 times longer
 * (about 4 when parsing is linear, about 16 when quadratic). The old regular-expression parser
 * took 2.7 s for "Score:" + 20,000 spaces + "x" and 47 s for 80,000 (quadratic).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseJudgeScore } from '../core/rubric';

const RUNS = 5;
const MB = 1 << 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median seconds to parse every text once. */
function time(texts: readonly string[]): number {
  const seconds: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (const t of texts) parseJudgeScore(t);
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(seconds);
}

const bytes = (texts: readonly string[]): number => texts.reduce((n, t) => n + Buffer.byteLength(t), 0);

const fixture = fs
  .readFileSync(path.join(__dirname, '..', 'test', 'fixtures', 'judge-outputs.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => (JSON.parse(l) as { text: string }).text);
const normal: string[] = [];
while (bytes(normal) < 4 * MB) normal.push(...fixture);

/** Adversarial texts of about `size` characters. */
const adversarial: Record<string, (size: number) => string> = {
  'spaces after "Score:"': (n) => `Score:${' '.repeat(n)}`,
  'spaces after "Score:" then a word': (n) => `Score:${' '.repeat(n)}x`,
  'NBSPs after "Score: 4"': (n) => `Score: 4${'\u00a0'.repeat(n)}!`,
  '"Score:" repeated on one line': (n) => 'Score:'.repeat(n / 6),
  '"Score:" lines with no number': (n) => 'Score:\n'.repeat(n / 7),
  'sentences ending in "Score: 4"': (n) => 'It is fine. Score: 4 '.repeat(n / 21),
  'unclosed quotes': (n) => '"Score: 5 '.repeat(n / 10),
  'emphasis marks': (n) => `**Score${'*'.repeat(n)}: 4`,
  'digits after "Score:"': (n) => `Score: ${'4'.repeat(n)}`,
  'an unterminated echo': (n) => `[[BEGIN RESPONSE]]\n${'Score: 5\n'.repeat(n / 9)}`,
};

const normalSeconds = time(normal);
const normalRate = bytes(normal) / MB / normalSeconds;
console.log(`normal: ${normal.length} judgments, ${(bytes(normal) / MB).toFixed(1)} MB, ${normalRate.toFixed(1)} MB/s (median of ${RUNS})`);
/** The stated bound: any 4 MB adversarial text parses within this (a quadratic parser takes minutes). */
const TARGET_SECONDS = 4;
let worst = Infinity;
let slowest = 0;
for (const [name, make] of Object.entries(adversarial)) {
  const small = make(MB);
  const large = make(4 * MB);
  const tSmall = time([small]);
  const tLarge = time([large]);
  const rate = bytes([large]) / MB / tLarge;
  worst = Math.min(worst, rate);
  slowest = Math.max(slowest, tLarge);
  console.log(
    `adversarial, ${name}: ${(bytes([large]) / MB).toFixed(1)} MB at ${rate.toFixed(1)} MB/s; 4x input took ${(tLarge / tSmall).toFixed(1)}x the time`,
  );
}
console.log(`ratio normal/worst adversarial throughput: ${(normalRate / worst).toFixed(2)}`);
console.log(
  `slowest adversarial parse: ${slowest.toFixed(2)} s (target: under ${TARGET_SECONDS} s) ${slowest < TARGET_SECONDS ? 'ok' : 'OVER TARGET'}`,
);
