// The README's "Workflows and runs", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const worker = flow.worker({ pollInterval: 50 });
await worker.start();
const sequelize = flow.sequelize;
const Order = { create: async (_values: object, _options: object) => ({ id: 42 }) };

// #region readme
const invoice = flow.workflow('invoice', async ({ input, step, runId, attempt }: WorkflowContext<{ orderId: number }>) => {
  const pdf = await step.run('render_pdf', () => `invoice-${input.orderId}.pdf`);
  return { pdf, runId, attempt };
});

const run = await invoice.start({ orderId: 42 }, { idempotencyKey: 'invoice-42' });
const same = await invoice.start({ orderId: 42 }, { idempotencyKey: 'invoice-42' }); // same.runId === run.runId
await invoice.start({ orderId: 43 }, { runId: 'invoice-43', priority: -1, delay: '10 minutes' });

// In your own transaction: the run exists (and starts) only if the order commits.
await sequelize.transaction(async (transaction) => {
  const order = await Order.create({ total: 10 }, { transaction });
  await invoice.start({ orderId: order.id }, { transaction });
});

const output = await run.result({ timeout: '30 seconds' }); // rejects with code RUN_FAILED or RUN_CANCELLED
const info = await flow.getRun(run.runId);                   // status, input, output, error, attempts, wakeAt, parentRunId, childRunIds… or null
const timeline = await flow.timeline(run.runId);             // { run, steps: [{ step, logs, waits, events }], runLogs, items }
await flow.cancel('invoice-43');                             // true: cancelled now; its unfinished children too
await flow.handle(run.runId).result();                       // any run, from any process
// await flow.retry(failedRunId);                            // a failed run resumes at its failed step
// #endregion readme

export const observed = { output, same: same.runId === run.runId, status: info?.status, steps: timeline?.steps.length };
await flow.close();
