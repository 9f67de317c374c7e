// The README's "Operator tools", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const harness = createTestHarness(flow);
let carrierUp = false;
const labels: number[] = [];
const shipOrder = flow.workflow('ship_order', { retries: 3, backoff: { initial: '1 hour' } }, async ({ input, step }) => {
  const label = await step.run('buy_label', () => `label-${labels.push(input.orderId) && input.orderId}`);
  await step.waitForEvent('picked_up', { match: { orderId: input.orderId } });
  const tracking = await step.run('track', () => {
    if (!carrierUp) throw new Error('carrier API down');
    return `track-${input.orderId}`;
  });
  return step.run('notify_customer', () => ({ label, tracking, notified: true }));
});
const run = await shipOrder.start({ orderId: 7 });
const stuck = await shipOrder.start({ orderId: 8 });
const approval = await shipOrder.start({ orderId: 9 });
await harness.drain(); // each bought a label and waits for picked_up
await flow.notify('picked_up', { orderId: 8 });
await harness.drain(); // 8's 'track' failed: its next attempt is in an hour
carrierUp = true;

// #region readme
const who = { actor: 'ana@example.com', reason: 'carrier outage' };

await flow.pause(run.runId, who);          // status 'paused': never claimed; an event still matches its wait
await flow.notify('picked_up', { orderId: 7 });
await flow.resume(run.runId, who);         // due now; its replay finds the event

await flow.pauseWorkflow('ship_order', who); // no run of it is claimed (new ones queue) until…
await flow.resumeWorkflow('ship_order', who);

await flow.resolveWait(approval.runId, 'picked_up', { orderId: 9, by: 'phone' }, who); // as if the event came
await flow.completeStep(stuck.runId, 'track', 'track-manual-8', who); // no more attempts; the run goes on

const again = await flow.replay(stuck.runId, who);                                        // every step runs again
const fixed = await flow.rerunFrom(stuck.runId, 'track', { ...who, input: { orderId: 8 } }); // 'buy_label' and the wait keep their results

const trail = await flow.audit({ runId: stuck.runId }); // newest first: [{ at, actor, action, workflow, runId, stepName, reason, details }]
// #endregion readme

await harness.drain();
await flow.notify('picked_up', { orderId: 8 }); // the replay waits for an event of its own
await harness.drain();
const outputs = await Promise.all([run, stuck, approval, again, fixed].map(async (h) => (await flow.getRun(h.runId))!.output));
export { flow, trail, outputs, labels, again, fixed };
