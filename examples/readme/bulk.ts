// The README's "Bulk operations", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const harness = createTestHarness(flow);
let providerUp = false;
const charge = flow.workflow('charge', { retries: 0 }, async ({ input, step }) =>
  step.run('charge_card', () => {
    if (!providerUp) throw Object.assign(new Error('card declined'), { code: 'CARD_DECLINED' });
    return { charged: input.amount };
  }),
);
for (const amount of [10, 20, 30]) await charge.start({ amount });
await harness.drain(); // three failed runs
providerUp = true;

// #region readme
const { operationId, total } = await flow.bulk('retry', { workflow: 'charge', errorCode: 'CARD_DECLINED' }, {
  actor: 'ops@example.com', reason: 'the payment provider is back',
});
const op = await flow.operation(operationId);
// → { id, action: 'retry', status: 'running' | 'completed' | 'failed', total, done, failed, filter, actor, reason, error, createdAt, updatedAt, completedAt }
// #endregion readme

let finished = op;
while (finished.status === 'running') {
  await new Promise((resolve) => setTimeout(resolve, 50));
  finished = await flow.operation(operationId);
}
await harness.drain();
export { flow, total, finished };
