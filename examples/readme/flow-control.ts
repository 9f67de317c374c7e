// The README's "Flow control", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const handler = async ({ step }: WorkflowContext) => step.run('work', () => 'done');

// #region readme
// At most 2 runs per account executing at once, across every worker process.
const sync = flow.workflow('sync_account', { concurrency: { limit: 2, key: (input) => input.accountId } }, handler);
// One at a time for the whole workflow.
flow.workflow('nightly_report', { concurrency: 1 }, handler);
// A matching event cancels the run (and the runs it started); its payload must contain `match`.
const ship = flow.workflow(
  'ship_order',
  { cancelOn: [{ event: 'order_cancelled', match: (input) => ({ orderId: input.orderId }) }] },
  async ({ step }) => step.sleep('wait_for_carrier', '1 day'),
);

await sync.start({ accountId: 'acme' }, { priority: -10 }); // lower runs first (default 0)
await sync.start({ accountId: 'acme' }, { delay: '15 minutes' }); // due later
const shipping = await ship.start({ orderId: 42 }, { idempotencyKey: 'ship-42' }); // once per key
await flow.notify('order_cancelled', { orderId: 42 }); // cancels `shipping` (once it has started)
// #endregion readme

export { flow, shipping };
