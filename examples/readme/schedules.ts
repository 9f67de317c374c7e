// The README's "Schedules", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });

// #region readme
// In the workflow's options: a schedule named after it, created or updated by migrate() and worker start.
flow.workflow('daily_report', { schedule: { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', input: {} } }, async ({ step }) =>
  step.run('build', () => 'report'),
);
const sync = flow.workflow('sync_account', async ({ input }) => input);
await flow.migrate();

// At runtime, from any process (create again to update it):
await flow.schedules.create('acme_sync', {
  workflow: 'sync_account', cron: '*/15 * * * *', timezone: 'UTC', input: { accountId: 'acme' },
  overlap: 'skip', // default; or 'allow', 'buffer_one', 'cancel_other'
  catchUp: 'latest', // default; or 'none', 'all'
});
const schedules = await flow.schedules.list(); // [{ name, workflow, cron, timezone, paused, nextAt, lastRunId, skipped, … }]
await flow.schedules.pause('acme_sync'); // slots passing while paused never fire
await flow.schedules.resume('acme_sync'); // from the next slot after now
const now = await flow.schedules.trigger('acme_sync'); // a run now → RunHandle
const backfilled = await flow.schedules.backfill('acme_sync', { from: '2026-06-01T00:00:00Z', to: '2026-06-01T01:00:00Z' }); // 4 runs, once
// #endregion readme

// In tests, travelling fires the slots in between (per catchUp): a daily job takes milliseconds.
const harness = createTestHarness(flow);
await harness.drain(); // the triggered and backfilled runs
await harness.travel('1 day');
await harness.drain();

export { flow, sync, schedules, now, backfilled };
