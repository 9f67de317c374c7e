// The README's "Operator tools", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const harness = createTestHarness(flow);
const shipOrder = flow.workflow('ship_order', async ({ input, step }) => {
  const label = await step.run('buy_label', () => `label-${input.orderId}`);
  await step.waitForEvent('picked_up', { match: { orderId: input.orderId } });
  return step.run('notify_customer', () => ({ label, notified: true }));
});
const run = await shipOrder.start({ orderId: 7 });
await harness.drain(); // buy_label, then waiting for picked_up

// #region readme
const who = { actor: 'ana@example.com', reason: 'carrier outage' };

await flow.pause(run.runId, who);          // status 'paused': never claimed; an event still matches its wait
await flow.notify('picked_up', { orderId: 7 });
await flow.resume(run.runId, who);         // due now; its replay finds the event

await flow.pauseWorkflow('ship_order', who); // no run of it is claimed (new ones queue) until…
await flow.resumeWorkflow('ship_order', who);

const trail = await flow.audit({ runId: run.runId }); // newest first: [{ at, actor, action, workflow, runId, stepName, reason, … }]
// #endregion readme

await harness.drain();
const finished = await flow.getRun(run.runId);
export { flow, trail, finished };
