// The README's "Deadlines", run by test/docs/readme.test.ts.
import { DurableFlow, RetryAfterError } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
/** A stand-in for an HTTP API that answers 429 with `Retry-After: 30` once, then the rows. */
let calls = 0;
const api = {
  rows: async (_query: string, _options: { signal: AbortSignal }) =>
    ++calls === 1 ? { status: 429, retryAfter: '30', rows: [] } : { status: 200, retryAfter: null, rows: [1, 2, 3] },
};

// #region readme
// Not finished within 1 hour of start(): the run fails with RUN_TIMEOUT, and the running step's
// `signal` aborts (so do its unfinished child runs).
const report = flow.workflow('build_report', { timeout: '1 hour' }, async ({ step, input }: WorkflowContext<{ query: string }>) => {
  const rows = await step.run('fetch_rows', async ({ signal }) => {
    const response = await api.rows(input.query, { signal });
    if (response.status === 429) {
      // The next attempt waits exactly what the API asks, instead of the backoff (it uses one retry).
      throw new RetryAfterError('rate limited', { after: Number(response.retryAfter) * 1000 });
    }
    return response.rows;
  });
  return { rows: rows.length };
});

// This start's own timeout wins over the workflow's; not begun within 5 minutes (all workers busy,
// a concurrency limit, a delay), the run is cancelled with DEADLINE_EXCEEDED and never starts.
const today = await report.start({ query: 'today' }, { timeout: '15 minutes', startBy: '5 minutes' });
const late = await report.start({ query: 'later' }, { delay: '10 minutes', startBy: '5 minutes' });
const info = await flow.getRun(today.runId); // info.deadlineAt, info.startBy
// #endregion readme

export { flow, today, late, info };
