/**
 * workers/index.ts `gated`: the activities of a worker's two generation queues (the shared one
 * and its own) share its compute slots. In the SDK's mock activity context (no server needed).
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { gated } from '../../workers';

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

function probe() {
  let running = 0;
  let most = 0;
  const releases: (() => void)[] = [];
  const acts = {
    async work(name: string): Promise<string> {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((r) => releases.push(r));
      running--;
      return name;
    },
  };
  return { acts, running: () => running, most: () => most, finishOne: () => releases.shift()?.() };
}

describe('gated activities', () => {
  it('runs at most n at once; the others wait their turn, in order, heartbeating', async () => {
    const p = probe();
    const g = gated(p.acts, 2);
    const envs = [0, 1, 2, 3].map(() => new MockActivityEnvironment());
    const beats: number[] = [0, 0, 0, 0];
    envs.forEach((e, i) => e.on('heartbeat', () => beats[i]!++));
    const results = envs.map((e, i) => e.run(g.work, `a${i}`));
    await tick(20);
    expect(p.running()).toBe(2);
    await tick(1100);
    expect(beats[2]).toBeGreaterThan(0); // waiting ones keep heartbeating
    expect(beats[0]).toBe(0); // running ones heartbeat on their own
    p.finishOne();
    await tick(20);
    expect(p.running()).toBe(2);
    for (let k = 0; k < 3; k++) {
      p.finishOne();
      await tick(20);
    }
    expect(await Promise.all(results)).toEqual(['a0', 'a1', 'a2', 'a3']);
    expect(p.most()).toBe(2);
  });

  it('an activity cancelled while waiting leaves the line and takes no slot', async () => {
    const p = probe();
    const g = gated(p.acts, 1);
    const first = new MockActivityEnvironment();
    const waiting = new MockActivityEnvironment();
    const third = new MockActivityEnvironment();
    const r1 = first.run(g.work, 'first');
    await tick();
    const r2 = waiting.run(g.work, 'cancelled').catch((e: unknown) => e);
    const r3 = third.run(g.work, 'third');
    await tick();
    waiting.cancel();
    expect(await r2).toBeInstanceOf(Error);
    p.finishOne();
    await tick(20);
    // the slot went to the third, not to the cancelled one
    expect(p.running()).toBe(1);
    p.finishOne();
    expect(await Promise.all([r1, r3])).toEqual(['first', 'third']);
    // and it is free again
    const r4 = new MockActivityEnvironment().run(g.work, 'fourth');
    await tick();
    expect(p.running()).toBe(1);
    p.finishOne();
    expect(await r4).toBe('fourth');
  });
});
