import { randomUUID } from 'node:crypto';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { recordEntry } from './history.js';

const stepMs = () => Math.floor(Math.random() * Number(process.env.STEP_MS ?? 20));
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The workflows of the chaos suite. Every step body says `BEGIN <runId> <step> <attempt>`, records
 * its entry (history checker) and says `ENTER …`, then
 * takes a few random milliseconds, so that faults land inside bodies as well as between them.
 */
export function registerChaosWorkflows(flow: DurableFlow, say: (line: string) => void = () => undefined) {
  const enter = async (runId: string, step: string, attempt: number) => {
    // Said before the database is reached, so a body begun while it is unreachable is seen too.
    say(`BEGIN ${runId} ${step} ${attempt}`);
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

  /**
   * Three steps whose results are random (`<tag>-<step>-<uuid>`), so a stored result can be told from
   * a recomputed one; says `RETURN <runId> <step> <value>` for every value a body returns. Returns the
   * three results.
   */
  const nonce = flow.workflow('nonce', async ({ step, runId, input }: WorkflowContext<{ tag: string }>) => {
    const results: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      const result = await step.run(name, async ({ attempt }) => {
        await enter(runId, name, attempt);
        await pause(stepMs());
        const value = `${input.tag}-${name}-${randomUUID()}`;
        say(`RETURN ${runId} ${name} ${value}`);
        return value;
      });
      results.push(result);
    }
    return results;
  });

  /** A step that takes `ms` (in the process, not in the database), then a quick one; returns the pids. */
  const slow = flow.workflow('slow', async ({ step, runId, input }: WorkflowContext<{ ms: number }>) => {
    const work = await step.run('work', async ({ attempt }) => {
      await enter(runId, 'work', attempt);
      await pause(input.ms);
      return process.pid;
    });
    const after = await step.run('after', async ({ attempt }) => {
      await enter(runId, 'after', attempt);
      return process.pid;
    });
    return { work, after };
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

  return { pipeline, waiter, hog, badResult, nonce, slow };
}
