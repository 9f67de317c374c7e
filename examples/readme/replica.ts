// The README's "Reading from a replica", run by test/integration/replica.test.ts.
import express from 'express';
import { DurableFlow } from 'durable-flow';

// #region readme
const flow = new DurableFlow({
  databaseUrl: process.env.DATABASE_URL, // the primary: the engine, every write, getRun(), result()
  viewerDatabaseUrl: process.env.VIEWER_DATABASE_URL, // a streaming replica: the viewer's pages and JSON API
});
const app = express();
app.use('/durable_flow', flow.router({ basicAuth: { username: 'ops', password: process.env.VIEWER_PASSWORD! } }));
// #endregion readme

export { app, flow };
