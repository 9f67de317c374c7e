/**
 * `npm start`: the demo in one process. Uses DATABASE_URL, or boots an embedded Postgres (data in
 * .data/postgres) when it is not set; migrates; serves the app with the viewer and live updates;
 * runs a worker; prints the URL. PORT overrides the port, HOST the interface (default 127.0.0.1).
 */
import { DurableFlow } from '../lib/index.js';
import { DEMO_EVENT_SECRET, DEMO_WEBHOOK_SECRET, createApp } from './app.js';
import { demoDatabase } from './database.js';
import { createDemoServer } from './http-server.js';

const port = Number(process.env.PORT ?? 4568);
const host = process.env.HOST ?? '127.0.0.1';

const database = await demoDatabase();
const flow = new DurableFlow({ databaseUrl: database.url });
await flow.migrate();

// The viewer is open while the demo listens on loopback only; anywhere else it asks for a password.
const password = process.env.VIEWER_PASSWORD;
if (!password && host !== '127.0.0.1' && host !== 'localhost') {
  console.error('Listening beyond 127.0.0.1: set VIEWER_PASSWORD so the viewer is not open to everyone.');
  process.exit(1);
}
const { app } = createApp(flow, {
  viewer: password ? { basicAuth: { username: 'demo', password } } : { allowUnauthenticated: true },
  eventSecret: process.env.DURABLE_FLOW_EVENT_SECRET ?? DEMO_EVENT_SECRET,
  webhookSecret: process.env.PAYMENTS_WEBHOOK_SECRET ?? DEMO_WEBHOOK_SECRET,
  ...(process.env.TRIAL_DELAY ? { trialDelay: process.env.TRIAL_DELAY } : {}),
});
// Slow clients are cut off (headers within 10 s, the whole request within 30 s): see http-server.ts.
const server = createDemoServer(app);
flow.attachLive(server);
const worker = flow.worker({ concurrency: 10 });
await worker.start();
server.listen(port, host, () => {
  console.log(`durable-flow demo on http://${host}:${port}  (viewer: http://${host}:${port}/durable_flow/, database: ${database.description})`);
});

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.closeAllConnections();
  server.close();
  await flow.close({ timeout: '10 seconds' });
  await database.stop();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
