/**
 * `npm start`: the demo in one process. Uses DATABASE_URL, or boots an embedded Postgres (data in
 * .data/postgres, or EMBEDDED_POSTGRES_DIR; port 54329, or EMBEDDED_POSTGRES_PORT) when it is not set;
 * migrates; serves the app with the viewer and live updates; runs a worker; prints the URL. PORT
 * overrides the port, HOST the interface (default 127.0.0.1). A start that cannot succeed (a port or
 * data directory another instance holds) prints one paragraph saying why and exits with code 1.
 */
import { DurableFlow } from '../lib/index.js';
import { DEMO_EVENT_SECRET, DEMO_WEBHOOK_SECRET, createApp } from './app.js';
import { DemoStartError, demoDatabase } from './database.js';
import { createDemoServer } from './http-server.js';
import type { DemoDatabase } from './database.js';

const port = Number(process.env.PORT ?? 4568);
const host = process.env.HOST ?? '127.0.0.1';

let database: DemoDatabase | undefined;
let flow: DurableFlow | undefined;

/** Ends a start that cannot succeed: the reason as one paragraph (no stack for a known one), exit code 1. */
async function fail(error: unknown): Promise<never> {
  const known = error instanceof DemoStartError;
  console.error(`durable-flow demo: ${known ? error.message : `could not start: ${(error as Error)?.message ?? String(error)}`}`);
  await flow?.close({ timeout: '2 seconds' }).catch(() => undefined);
  await database?.stop().catch(() => undefined);
  process.exit(1);
}

try {
  if (!/^\d{1,5}$/.test(process.env.PORT ?? '4568') || port < 1 || port > 65535) {
    throw new DemoStartError(`PORT must be a port number from 1 to 65535, got "${String(process.env.PORT).slice(0, 40)}".`);
  }
  // The viewer is open while the demo listens on loopback only; anywhere else it asks for a password.
  const password = process.env.VIEWER_PASSWORD;
  if (!password && host !== '127.0.0.1' && host !== 'localhost') {
    throw new DemoStartError('Listening beyond 127.0.0.1: set VIEWER_PASSWORD so the viewer is not open to everyone.');
  }
  const db = (database = await demoDatabase());
  const demoFlow = (flow = new DurableFlow({ databaseUrl: db.url }));
  await demoFlow.migrate();
  const { app } = createApp(demoFlow, {
    viewer: password ? { basicAuth: { username: 'demo', password } } : { allowUnauthenticated: true },
    eventSecret: process.env.DURABLE_FLOW_EVENT_SECRET ?? DEMO_EVENT_SECRET,
    webhookSecret: process.env.PAYMENTS_WEBHOOK_SECRET ?? DEMO_WEBHOOK_SECRET,
    ...(process.env.TRIAL_DELAY ? { trialDelay: process.env.TRIAL_DELAY } : {}),
  });
  // Slow clients are cut off (headers within 10 s, the whole request within 30 s): see http-server.ts.
  const server = createDemoServer(app);
  // Listen before the worker starts: a taken port must not leave a worker running behind an error.
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new DemoStartError(`${host}:${port} is in use (another \`npm start\` of this demo, or another server): set PORT to a free port.`)
          : error,
      ),
    );
    server.listen(port, host, resolve);
  });
  demoFlow.attachLive(server);
  await demoFlow.worker({ concurrency: 10 }).start();
  console.log(`durable-flow demo on http://${host}:${port}  (viewer: http://${host}:${port}/durable_flow/, database: ${db.description})`);

  let stopping = false;
  const shutdown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    server.close();
    await demoFlow.close({ timeout: '10 seconds' });
    await db.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
} catch (error) {
  await fail(error);
}
