// The README's "Behind PgBouncer", run by test/integration/pgbouncer.test.ts against a real PgBouncer.
import { DurableFlow } from 'durable-flow';

// #region readme
const flow = new DurableFlow({
  databaseUrl: process.env.DATABASE_URL, // postgres://app:…@pgbouncer:6432/app, PgBouncer in transaction mode
  directUrl: process.env.DIRECT_DATABASE_URL, // postgres://app:…@db:5432/app, Postgres itself
});
await flow.migrate(); // over directUrl
// #endregion readme

const hello = flow.workflow('readme_bouncer', async ({ step }) => step.run('greet', () => 'hello through PgBouncer'));
const worker = flow.worker();
await worker.start();
export const result = await (await hello.start({})).result({ timeout: '30 seconds' });
await flow.close();
