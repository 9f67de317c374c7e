// The README's "Throttle", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
/** A stand-in for a partner API that allows 10 new syncs per customer and minute. */
const partner = { sync: async (customerId: string) => ({ customerId, synced: true }) };

// #region readme
// At most 10 syncs of one customer begin in any minute (sliding window), across every worker process.
// The excess is not dropped: it waits in start order (by priority first) and begins when the window has
// room. A resume after a sleep or a wait is not a begin.
const sync = flow.workflow(
  'partner_sync',
  { throttle: { limit: 10, period: '1 minute', key: (input) => input.customerId } },
  async ({ step, input }: WorkflowContext<{ customerId: string }>) => step.run('sync', () => partner.sync(input.customerId)),
);
const runs = [];
for (let i = 0; i < 12; i++) runs.push(await sync.start({ customerId: 'acme' }));
const other = await sync.start({ customerId: 'globex' }); // another key: not held back by acme's
// A worker begins 10 of acme's runs and globex's now, acme's last 2 a minute after the first began.
// #endregion readme

export { flow, runs, other };
