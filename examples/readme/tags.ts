// The README's "Tags", run by test/docs/readme.test.ts.
import express from 'express';
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const worker = flow.worker({ pollInterval: 50 });
await worker.start();

// #region readme
const charge = flow.workflow('charge', async ({ input }: WorkflowContext<{ cents: number }>) => ({ charged: input.cents }));
const checkout = flow.workflow('checkout', async ({ step }: WorkflowContext<{ order: string }>) => {
  // The child carries the parent's tags, with its own merged over them: { customer: 'c1', plan: 'pro', stage: 'charge' }.
  return step.invoke('charge', charge, { cents: 1200 }, { tags: { stage: 'charge' } });
});

const run = await checkout.start({ order: 'A-1002' }, { tags: { customer: 'c1', plan: 'pro' } });
const outcome = await run.result();
const info = await flow.getRun(run.runId); // info.tags: { customer: 'c1', plan: 'pro' }

// The viewer and its JSON list: every run tagged customer:c1 and plan:pro, child runs too.
const app = express();
app.use('/durable_flow', flow.router({ allowUnauthenticated: true })); // keep your auth on in production
// GET /durable_flow/?tag=customer:c1&tag=plan:pro&children=1
// GET /durable_flow/api/runs?tag=customer:c1&tag=plan:pro&children=1
// #endregion readme

export { flow, worker, app, run, outcome, info };
