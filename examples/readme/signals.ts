// The README's "Signals", run by test/docs/readme.test.ts.
import { DurableFlow, WaitTimeoutError } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();

// #region readme
export const expense = flow.workflow('expense', async ({ input, step }) => {
  await step.run('submit', () => ({ submitted: input.amount }));
  try {
    // The oldest 'decision' signal sent to this run that no wait took yet; sent before the wait, it was buffered.
    const decision = await step.waitForSignal('decision', { signal: 'decision', timeout: '3 days' });
    // Two waits for the same signal take the first and the second signal sent, in order.
    const second = input.amount > 1000 ? await step.waitForSignal('second_approval', { signal: 'decision' }) : null;
    return { approved: decision.approved && (second?.approved ?? true), by: [decision.by, second?.by].filter(Boolean) };
  } catch (error) {
    if (error instanceof WaitTimeoutError) return { approved: false, by: [] }; // nobody decided in 3 days
    throw error;
  }
});

// From anywhere: an HTTP handler, another service, another workflow's step.
export async function decide(runId: string, approved: boolean, by: string, requestId: string) {
  // true: the run exists and is not finished (the signal is stored, and wakes the run if it waits for it);
  // false: no such run, or it already finished (nothing stored). The same id again stores nothing.
  return flow.signal(runId, 'decision', { approved, by }, { id: requestId });
}
// #endregion readme

export { flow };
