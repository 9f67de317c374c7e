import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { recordEntry } from './history.js';

const stepMs = () => Math.floor(Math.random() * Number(process.env.STEP_MS ?? 20));
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The workflows of the chaos suite. Every step body records its entry (history checker) first, then
 * takes a few random milliseconds, so that faults land inside bodies as well as between them.
 */
export function registerChaosWorkflows(flow: DurableFlow, say: (line: string) => void = () => undefined) {
  const enter = async (runId: string, step: string, attempt: number) => {
    await recordEntry(flow.pool, runId, step, attempt);
    say(`ENTER ${runId} ${step} ${attempt}`);
  };

  /** Three steps, a short durable sleep between the second and the third; returns n + 3. */
  const pipeline = flow.workflow('pipeline', async ({ step, runId, input }: WorkflowContext<{ n: number; napMs?: number }>) => {
    const a = await step.run('a', async ({ attempt }) => {
      await enter(runId, 'a', attempt);
      await pause(stepMs());
      return input.n + 1;
    });
    const b = await step.run('b', async ({ attempt }) => {
      await enter(runId, 'b', attempt);
      await pause(stepMs());
      return a + 1;
    });
    if (input.napMs) await step.sleep('nap', input.napMs);
    return step.run('c', async ({ attempt }) => {
      await enter(runId, 'c', attempt);
      await pause(stepMs());
      return b + 1;
    });
  });

  /** A step, a wait for `chaos.go` with its key, a step; returns the event's note. */
  const waiter = flow.workflow('waiter', async ({ step, runId, input }: WorkflowContext<{ k: number }>) => {
    await step.run('before', async ({ attempt }) => {
      await enter(runId, 'before', attempt);
    });
    const event = await step.waitForEvent<{ k: number; note: string }>('chaos.go', { match: { k: input.k }, timeout: '10 minutes' });
    return step.run('after', async ({ attempt }) => {
      await enter(runId, 'after', attempt);
      return event.note;
    });
  });

  /** A step that holds its pool connection for `holdMs` (pool exhaustion). */
  const hog = flow.workflow('hog', async ({ step, runId, input }: WorkflowContext<{ holdMs: number }>) => {
    return step.run('hold', async ({ attempt }) => {
      await enter(runId, 'hold', attempt);
      await flow.pool.query('SELECT pg_sleep($1)', [input.holdMs / 1000]);
      return 'held';
    });
  });

  /** A step whose result cannot be stored (E5–E7): a BigInt, a `\u0000`, a lone surrogate, 5 MB. */
  const badResult = flow.workflow('bad-result', async ({ step, runId, input }: WorkflowContext<{ kind: string }>) => {
    return step.run('produce', async ({ attempt }) => {
      await enter(runId, 'produce', attempt);
      switch (input.kind) {
        case 'bigint': return { amount: 10n } as unknown as string;
        case 'circular': { const o: Record<string, unknown> = {}; o.self = o; return o as unknown as string; }
        case 'nul': return 'a\u0000b';
        case 'surrogate': return 'x\uD800y';
        case 'huge': return 'x'.repeat(5 * 1024 * 1024);
        default: return 'fine';
      }
    });
  });

  return { pipeline, waiter, hog, badResult };
}
