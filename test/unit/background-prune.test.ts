import { describe, expect, it } from 'vitest';
import { BackgroundPrune } from '../../lib/retention/background.js';

const timing = { firstMs: 20, spreadMs: 0, everyMs: 40 };
const quiet = { warn: () => undefined, error: () => undefined };
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('background pruning', () => {
  it('runs while a worker runs, again and again, stops with the last worker, and lets a pass in flight finish first', async () => {
    let passes = 0;
    let inFlight = false;
    let sawStop = false;
    const background = new BackgroundPrune(
      async ({ stopped }) => {
        passes++;
        inFlight = true;
        await wait(30);
        sawStop ||= stopped();
        inFlight = false;
        return { runs: 0, events: 0, audit: 0 };
      },
      quiet,
      true,
      timing,
    );
    background.workers(1);
    expect(passes).toBe(0);
    await wait(200);
    expect(passes).toBeGreaterThanOrEqual(2);
    background.workers(2); // a second worker changes nothing
    while (!inFlight) await wait(2);
    await background.stop();
    expect(inFlight).toBe(false); // stop() waited for it
    expect(sawStop).toBe(true); // and the pass was told to stop between batches
    const after = passes;
    await wait(150);
    expect(passes).toBe(after);
  });

  it('never runs with retention off, and survives a failing pass', async () => {
    let passes = 0;
    const off = new BackgroundPrune(async () => ((passes += 1), null), quiet, false, timing);
    off.workers(1);
    await wait(100);
    expect(passes).toBe(0);
    await off.stop();
    const warnings: string[] = [];
    const failing = new BackgroundPrune(
      async () => {
        passes++;
        throw new Error('database gone');
      },
      { warn: (message: string) => void warnings.push(message), error: () => undefined },
      true,
      timing,
    );
    failing.workers(1);
    await wait(200);
    await failing.stop();
    expect(passes).toBeGreaterThanOrEqual(2);
    expect(warnings[0]).toMatch(/Pruning old runs and events failed; the next pass tries again/);
  });
});
