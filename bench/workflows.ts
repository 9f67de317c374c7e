import { performance } from 'node:perf_hooks';
import type { DurableFlow, WorkflowContext } from '../lib/index.js';

/** When the step after a wait started (for event → resume), by key. */
export const resumedAt = new Map<number, number>();

/** The workflows every durable-flow figure uses: 3 steps each returning a small value; and a waiter. */
export function defineBenchWorkflows(flow: DurableFlow) {
  const three = flow.workflow('three', async ({ step, input }: WorkflowContext<{ n: number }>) => {
    const a = await step.run('a', () => input.n + 1);
    const b = await step.run('b', () => a + 1);
    return step.run('c', () => b + 1);
  });
  const waiter = flow.workflow('waiter', async ({ step, input }: WorkflowContext<{ k: number }>) => {
    await step.run('before', () => 1);
    await step.waitForEvent('go', { match: { k: input.k } });
    await step.run('after', () => {
      resumedAt.set(input.k, performance.now());
    });
  });
  return { three, waiter };
}
