import pg from 'pg';
import { DurableFlowError } from '../errors.js';

/**
 * `directUrl`: a connection to Postgres itself, for what needs a session of its own (LISTEN, session
 * advisory locks, migrations) while `databaseUrl` goes through PgBouncer in transaction mode, where
 * consecutive statements of one client may run on different server connections.
 */

/** The `directUrl` option, checked: undefined, or a postgres:// connection string. */
export function resolveDirectUrl(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const expected = 'Expected `directUrl` to be a Postgres connection string that reaches Postgres itself, not PgBouncer (for example postgres://user:pass@db-host:5432/app)';
  // The value is not echoed: a malformed connection string may still hold a password.
  if (typeof value !== 'string') throw new DurableFlowError('INVALID_OPTION', `${expected}, got a ${value === null ? 'null' : typeof value}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new DurableFlowError('INVALID_OPTION', `${expected}, got a string that is not a URL`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new DurableFlowError('INVALID_OPTION', `${expected}, got a URL of scheme \`${url.protocol}\``);
  }
  return value;
}

/**
 * Whether `client`'s session is a server connection of its own: its start-up key names the backend
 * that answers. Through a pooler (PgBouncer) the key is the pooler's own, so it never does.
 */
export async function ownsBackend(client: pg.PoolClient | pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return (client as { processID?: number | null }).processID === rows[0]!.pid;
}

/** Whether a connection made with `config` is a session of its own (see ownsBackend); opens one and ends it. */
export async function connectsDirectly(config: pg.ClientConfig, timeoutMs: number): Promise<boolean> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => undefined); // a failure is the connect's or the query's rejection
  try {
    await client.connect();
    return await ownsBackend(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** migrate() (or the LISTEN connection) without `directUrl` found a pooler in front of Postgres. */
export function poolerError(): DurableFlowError {
  return new DurableFlowError(
    'INVALID_OPTION',
    '`databaseUrl` reaches Postgres through a connection pooler (PgBouncer?): migrations, LISTEN and the prune lock need a session of their own, ' +
      'which a pooler in transaction mode does not keep. Pass `directUrl` as well, a connection string to Postgres itself ' +
      '(with a pooler in session mode, `directUrl` may be the same as `databaseUrl`).',
  );
}
