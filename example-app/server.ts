/**
 * `npm start`: the demo. Uses DATABASE_URL, or boots an embedded Postgres when it is not set;
 * migrates, starts a worker and the web server in one process, and prints the URL.
 */
import { DurableFlow } from '../lib/index.js';
import { createApp } from './app.js';
import { demoDatabase } from './database.js';

const port = Number(process.env.PORT ?? 4568);
const host = process.env.HOST ?? '127.0.0.1';

const database = await demoDatabase();
const flow = new DurableFlow({ databaseUrl: database.url });
await flow.migrate();
const app = createApp(flow);
const worker = flow.worker({ concurrency: 10 });
await worker.start();
const server = app.listen(port, host, () => {
  console.log(`durable-flow demo on http://${host}:${port}  (database: ${database.description})`);
});

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  server.close();
  await flow.close({ timeout: '10 seconds' });
  await database.stop();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
