// The README's "Singleton, rate limit, debounce", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const handler = async ({ step }: WorkflowContext) => step.run('work', () => 'done');

// #region readme
// One sync per account at a time: a start while one is not finished returns that run's id.
// (mode 'cancel' instead cancels it, with the runs it started, and starts a new one.)
const sync = flow.workflow('sync_account', { singleton: { mode: 'skip', key: (input) => input.accountId } }, handler);
const first = await sync.start({ accountId: 'acme' });
const again = await sync.start({ accountId: 'acme' }); // again.runId === first.runId

// At most 3 reset emails per user in any hour. A start beyond that still makes a run, cancelled at
// once with the code RATE_LIMITED: it shows in the viewer and in getRun(), never silently dropped.
const reset = flow.workflow('password_reset', { rateLimit: { limit: 3, period: '1 hour', key: (input) => input.userId } }, handler);
for (let i = 0; i < 3; i++) await reset.start({ userId: 'u1' });
const limited = await reset.start({ userId: 'u1' });
const why = (await flow.getRun(limited.runId))?.error?.code; // 'RATE_LIMITED'

// A burst of webhooks for one account makes one reindex, 30 seconds after the last of them (at most
// 5 minutes after the first), with the last start's input; every start of the burst gets its id.
const reindex = flow.workflow('reindex', { debounce: { period: '30 seconds', maxWait: '5 minutes', key: (input) => input.accountId } }, handler);
const created = await reindex.start({ accountId: 'acme', cause: 'order.created' });
const paid = await reindex.start({ accountId: 'acme', cause: 'order.paid' }); // paid.runId === created.runId
// #endregion readme

export { flow, first, again, limited, why, created, paid };
