import { WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { recordEntry } from './history.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The workflows of the lease and operations scenarios (leases.test.ts, operations.test.ts), run by
 * test/fixtures/ops-worker.ts and by the test process itself. Every step body records its entry
 * (history checker) and prints `ENTER <runId> <step> <attempt>`; each step returns the pid of the
 * process that ran it, so a test sees whose result was stored.
 */
export function registerOpsWorkflows(flow: DurableFlow, say: (line: string) => void = () => undefined) {
  const enter = async (runId: string, step: string, attempt: number) => {
    await recordEntry(flow.pool, runId, step, attempt);
    say(`ENTER ${runId} ${step} ${attempt}`);
  };

  /**
   * first → long (`input.ms`, or LONG_MS of the process; prints ABORTED when its signal aborts, and
   * goes on anyway, as a body that ignores its signal would) → last.
   */
  const long = flow.workflow('long', async ({ step, runId, input }: WorkflowContext<{ ms: number }>) => {
    const first = await step.run('first', async ({ attempt }) => {
      await enter(runId, 'first', attempt);
      return process.pid;
    });
    const middle = await step.run('long', async ({ attempt, signal }) => {
      await enter(runId, 'long', attempt);
      signal.addEventListener('abort', () => say(`ABORTED ${runId} long`), { once: true });
      await pause(Number(process.env.LONG_MS ?? input.ms));
      say(`DONE ${runId} long`);
      return process.pid;
    });
    const last = await step.run('last', async ({ attempt }) => {
      await enter(runId, 'last', attempt);
      return process.pid;
    });
    return { first, long: middle, last };
  });

  /** One run at a time across all processes: a step of `input.ms`. */
  const serial = flow.workflow('serial', { concurrency: 1 }, async ({ step, runId, input }: WorkflowContext<{ ms: number }>) => {
    return step.run('work', async ({ attempt }) => {
      await enter(runId, 'work', attempt);
      await pause(input.ms);
      say(`DONE ${runId} work`);
      return process.pid;
    });
  });

  /** One quick step. */
  const quick = flow.workflow('quick', async ({ step, runId }: WorkflowContext) => {
    return step.run('only', async ({ attempt }) => {
      await enter(runId, 'only', attempt);
      return process.pid;
    });
  });

  /** Waits for `ops.go` with its key, for `input.timeout`; returns the event's note or 'timed out'. */
  const patient = flow.workflow('patient', async ({ step, input }: WorkflowContext<{ k: number; timeout: string }>) => {
    try {
      const event = await step.waitForEvent<{ note: string }>('go', { event: 'ops.go', match: { k: input.k }, timeout: input.timeout });
      return event.note;
    } catch (error) {
      if (error instanceof WaitTimeoutError) return 'timed out';
      throw error;
    }
  });

  return { long, serial, quick, patient };
}
