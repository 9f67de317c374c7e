// The README's "Event triggers", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
const mailer = { send: async (to: string) => `sent to ${to}` };
const crm = { pull: async (accountId: string) => ({ accountId, synced: true }) };

// #region readme
// Each stored 'order.created' event whose payload contains the match starts one run, its payload as the
// input: from flow.notify, a signed POST to <mount>/events or step.sendEvent, in whichever process.
flow.workflow('welcome_email', { on: [{ event: 'order.created', match: { firstOrder: true } }] },
  async ({ input, step }: WorkflowContext<{ email: string }>) => step.run('send', () => mailer.send(input.email)));

// One sync per account after a burst of webhooks: `on` composes with debounce, singleton, rateLimit and
// key functions (a worker registering the workflow makes the start, with its keys).
flow.workflow('sync_account', { on: [{ event: 'account.changed' }], debounce: { period: '30 seconds', key: (input) => input.accountId } },
  async ({ input, step }: WorkflowContext<{ accountId: string }>) => step.run('pull', () => crm.pull(input.accountId)));

await flow.migrate(); // stores the registered workflows' triggers in the database (so does a worker's start)

const order = await flow.notify('order.created', { orderId: 'o-1', email: 'ada@example.com', firstOrder: true });
// The run was inserted in the event's transaction, with the idempotency key `event:${order.id}`:
// a redelivery of the same event id starts nothing again.
for (const change of ['plan', 'seats', 'owner']) await flow.notify('account.changed', { accountId: 'acme', change });
// #endregion readme

export { flow, order };
