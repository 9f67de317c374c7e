// The README's "Workers", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
flow.workflow('nothing', async () => 'ok');

// #region readme
const worker = flow.worker({ concurrency: 10, queues: ['default'], pollInterval: '1 second' });
await worker.start();
// …
await worker.stop({ timeout: '30 seconds' }); // running steps finish; their runs are handed back at once
// #endregion readme

export const state = worker.state;
await flow.close();
