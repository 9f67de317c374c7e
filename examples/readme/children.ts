// The README's "Child workflows", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const psp = { charge: (input: { amount: number }) => ({ chargeId: `ch_${input.amount}` }) };
flow.workflow('fulfil_line', async ({ input, step }) => step.run('pack', () => ({ packed: input.sku })));
flow.workflow('audit', async ({ step }) => step.run('check', () => 'clean'));

// #region readme
const charge = flow.workflow('charge', async ({ input, step }) => step.run('charge', () => psp.charge(input)));

export const order = flow.workflow('order', async ({ input, step }) => {
  // Starts the child once (step "payment_start") and waits for it (step "payment_wait").
  const payment = await step.invoke('payment', charge, { amount: input.total });
  // → { runId, workflow: 'charge', status: 'completed', result }

  // One child per line item, at most 3 in flight; a finished child frees its slot at once.
  const lines = await step.invokeMany('lines', input.lines, { key: 'sku', concurrency: 3 }, (line) => ({
    workflow: 'fulfil_line', // a workflow or its name (it may be registered only in another process)
    input: line,
  })); // steps "lines_<sku>_start" and "lines_<sku>_wait"; → [{ key, runId, status, result }, …] in input order

  // Any run, completed, failed or cancelled; returns how it ended.
  const audit = await step.waitForWorkflow('audit', input.auditRunId, { timeout: '1 day' });
  return { payment: payment.result, lines: lines.length, audit: audit.status };
});
// #endregion readme

export { flow };
