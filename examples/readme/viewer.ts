// The README's "The viewer", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();

// #region readme
import http from 'node:http';
import express from 'express';

const app = express();
app.use(
  '/durable_flow',
  flow.router({
    basicAuth: { username: 'ops', password: process.env.VIEWER_PASSWORD! }, // or authorize: (req) => …
    eventSecret: process.env.DURABLE_FLOW_EVENT_SECRET, // enables POST /durable_flow/events
  }),
);
// Slow clients are closed: headers within 10 s, the whole request within 30 s (Node: 60 s and 5 min).
const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000 }, app);
flow.attachLive(server); // socket.io at /durable_flow/socket.io: open pages update as runs change
server.listen(process.env.PORT ?? 3000);
// #endregion readme

export { flow, server };
