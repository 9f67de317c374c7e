import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await setupDatabase('smoke');
});
afterAll(async () => {
  await ctx.cleanup();
});

describe('smoke', () => {
  it('runs a 3-step workflow to completion', async () => {
    const flow = ctx.flow();
    const calls: string[] = [];
    const wf = flow.workflow('three', async ({ input, step }: { input: { n: number }; step: any }) => {
      const a = await step.run('a', () => { calls.push('a'); return input.n + 1; });
      const b = await step.run('b', () => { calls.push('b'); return a * 2; });
      const c = await step.run('c', () => { calls.push('c'); return b + 3; });
      return { c };
    });
    const worker = flow.worker({ concurrency: 5, pollInterval: 200 });
    await worker.start();
    const run = await wf.start({ n: 1 });
    await expect(run.result()).resolves.toEqual({ c: 7 });
    expect(calls).toEqual(['a', 'b', 'c']);
    const info = await flow.getRun(run.runId);
    expect(info?.status).toBe('completed');
    const timeline = await flow.timeline(run.runId);
    expect(timeline?.steps.map((s) => [s.step.name, s.step.status, s.step.result])).toEqual([
      ['a', 'succeeded', 2],
      ['b', 'succeeded', 4],
      ['c', 'succeeded', 7],
    ]);
    await worker.stop();
  });
});
