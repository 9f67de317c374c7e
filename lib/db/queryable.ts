import type pg from 'pg';
import { DurableFlowError } from '../errors.js';
import type { Statement } from './sql/statement.js';

/**
 * Anything durable-flow can run a statement on: its own pool, a client inside a transaction, or the
 * caller's Sequelize transaction (so a run or an event exists exactly when the caller's work commits).
 */
export interface Queryable {
  /** Set by fromPg and fromSequelizeTransaction: a pg pool or client (whose query answers a result, not rows) is not a Queryable. */
  readonly rowsOnly: true;
  query<T extends object = Record<string, unknown>>(sql: string | Statement, params?: unknown[]): Promise<T[]>;
}

/**
 * Runs a named statement on a pool or client. (A fresh config object every time: pg writes the
 * values into the config it is given, so a shared one would race between concurrent queries.)
 */
export function runSql<T extends pg.QueryResultRow = Record<string, unknown>>(
  client: pg.Pool | pg.PoolClient | pg.Client,
  statement: Statement,
  values: unknown[],
): Promise<pg.QueryResult<T>> {
  return client.query<T>({ name: statement.name, text: statement.text, values });
}

export function fromPg(client: pg.Pool | pg.PoolClient | pg.Client): Queryable {
  return {
    rowsOnly: true,
    async query<T extends object>(sql: string | Statement, params: unknown[] = []): Promise<T[]> {
      const result = await client.query(typeof sql === 'string' ? sql : { name: sql.name, text: sql.text }, params);
      return result.rows as T[];
    },
  };
}

/** The part of a Sequelize transaction durable-flow uses; typed structurally so any v6 instance fits. */
export interface SequelizeTransactionLike {
  sequelize: {
    query(sql: string, options: Record<string, unknown>): Promise<unknown>;
  };
}

export function isSequelizeTransaction(value: unknown): value is SequelizeTransactionLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { sequelize?: { query?: unknown } }).sequelize?.query === 'function'
  );
}

export function isPgClient(value: unknown): value is pg.PoolClient {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { query?: unknown }).query === 'function' &&
    !isSequelizeTransaction(value)
  );
}

export function fromSequelizeTransaction(transaction: SequelizeTransactionLike): Queryable {
  return {
    rowsOnly: true,
    async query<T extends object>(sql: string | Statement, params: unknown[] = []): Promise<T[]> {
      // type 'SELECT' makes Sequelize return the rows of any statement with RETURNING as plain objects.
      const rows = await transaction.sequelize.query(typeof sql === 'string' ? sql : sql.text, {
        transaction,
        bind: params,
        type: 'SELECT',
        raw: true,
        logging: false,
      });
      return rows as T[];
    },
  };
}

/**
 * The pg settings that bound a pool's waits to `ms` (0: none): for a connection (a free one, or a new
 * one that must answer its start-up) and for the answer to each query. A timed-out query fails and
 * its connection is discarded, never reused: it may be half-open (the peer gone without a word).
 */
export function poolTimeouts(ms: number): Pick<pg.PoolConfig, 'query_timeout' | 'connectionTimeoutMillis'> {
  return ms > 0 ? { query_timeout: ms, connectionTimeoutMillis: ms } : {};
}

/**
 * 25006 (read_only_sql_transaction): the session is read-only (a standby, or a database switched to
 * `default_transaction_read_only`) and stays so even once the server is writable again; only a new
 * session can write.
 */
function isReadOnlySession(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '25006';
}

/**
 * Runs `fn` inside a transaction on a client of `pool`, rolling back when it throws. A session that
 * failed to roll back, or that is read-only, is discarded rather than handed back to the pool.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    broken = isReadOnlySession(error);
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Where a statement given an optional caller transaction runs: in it, or on the pool. */
export function queryableFor(pool: pg.Pool, transaction: unknown): Queryable {
  if (transaction === undefined || transaction === null) return fromPg(pool);
  if (isSequelizeTransaction(transaction)) return fromSequelizeTransaction(transaction);
  if (isPgClient(transaction)) return fromPg(transaction);
  throw new DurableFlowError('INVALID_ARGUMENT', 'Expected `transaction` to be a Sequelize transaction or a pg client inside a transaction');
}
