import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from '../config.js';
import { debugPoint } from '../debug-point.js';
import { pgCode } from './db.js';
import type { ReadDb } from './db.js';

/** The longest a viewer request waits for the replica to replay what it must show, before reading the primary. */
export const REPLICA_WAIT_MS = 2000;
/** After the replica failed to answer, the viewer reads the primary this long before trying it again. */
const REPLICA_RETRY_MS = 5000;
const POLL_MS = 10;

/** A WAL position as Postgres prints it (`16/B374D848`). */
const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

export function isLsn(value: unknown): value is string {
  return typeof value === 'string' && LSN.test(value);
}

/** Compares two WAL positions: negative when a is before b. */
export function compareLsn(a: string, b: string): number {
  const value = (lsn: string) => {
    const [high, low] = lsn.split('/') as [string, string];
    return BigInt(`0x${high}`) * 2n ** 32n + BigInt(`0x${low}`);
  };
  const diff = value(a) - value(b);
  return diff < 0n ? -1 : diff > 0n ? 1 : 0;
}

/**
 * Where the read side reads: the primary, or (for the viewer's requests, when `viewerDatabaseUrl` names
 * a streaming replica) the replica, as long as it has replayed everything the request must show.
 *
 * Read-your-writes by WAL position: after a viewer action, the primary's `pg_current_wal_lsn()` is
 * noted (for the browser in a cookie, see http/replica.ts, and for this process), and so is the
 * primary's position when the live feed reads back changes it was told of. A request then reads the
 * replica once `pg_last_wal_replay_lsn()` has reached the larger of its cookie's and this process's
 * position, waiting at most REPLICA_WAIT_MS, else the primary. A replica found behind is not waited for
 * again until it has caught up; one that fails is left alone for REPLICA_RETRY_MS. Either is logged
 * once, never shown as an error.
 *
 * The choice is carried by an AsyncLocalStorage: the read side's ReadDb (`routed`) reads on the
 * replica inside `withReplica`, on the primary everywhere else (getRun, result() polls, operator tools).
 */
export class ReadRouting {
  readonly routed: ReadDb;
  readonly #primary: ReadDb;
  readonly #replica: ReadDb | null;
  /** The replica's reads, each done again on the primary if the replica fails under it. */
  readonly #replicaReads: ReadDb | null;
  readonly #logger: Logger;
  readonly #store = new AsyncLocalStorage<ReadDb>();
  /** The newest WAL position this process has shown or written (null: none yet). */
  #floor: string | null = null;
  #state: 'ok' | 'behind' | 'down' = 'ok';
  #downUntil = 0;

  constructor(primary: ReadDb, replica: ReadDb | null, logger: Logger) {
    this.#primary = primary;
    this.#replica = replica;
    this.#replicaReads = replica && this.#withFallback(replica, primary);
    this.#logger = logger;
    const current = () => this.#store.getStore() ?? primary;
    this.routed = {
      get sequelize() {
        return current().sequelize;
      },
      get models() {
        return current().models;
      },
      tables: primary.tables,
      select: (sql, bind, transaction) => current().select(sql, bind, transaction),
    };
  }

  get hasReplica(): boolean {
    return this.#replica !== null;
  }

  /**
   * The primary's WAL position now, after a write this process made (null without a replica): reads
   * at least as fresh as it see the write.
   */
  async written(): Promise<string | null> {
    if (!this.#replica) return null;
    const [row] = await this.#primary.select<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    this.#raise(row!.lsn);
    return row!.lsn;
  }

  /** Runs `fn` on the replica if it has replayed `lsn` and this process's position (waiting a little), else on the primary. */
  async withReplica<T>(lsn: string | null, fn: () => T): Promise<T> {
    const db = await this.#choose(lsn);
    return this.#store.run(db, fn);
  }

  /** The live feed's read-back: on the replica once it has what the primary has now (the change was committed before). */
  async fresh<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.#replica) return fn();
    let lsn: string | null = null;
    try {
      lsn = await this.written();
    } catch {
      // the primary did not answer: fn() will say so
    }
    return this.withReplica(lsn, fn);
  }

  /**
   * The replica, each of its reads done again on the primary when the replica fails under it (it went
   * away since it was chosen, or cancelled the query for a replication conflict): never an error page.
   */
  #withFallback(replica: ReadDb, primary: ReadDb): ReadDb {
    const retry = <T>(read: Promise<T>, again: () => Promise<T>): Promise<T> =>
      read.catch((error: unknown) => {
        if (!replicaFailure(error)) throw error;
        this.#downUntil = Date.now() + REPLICA_RETRY_MS;
        this.#fallBack('down', 'A read on the viewer replica failed: reading the primary', (error as Error).message);
        return again();
      });
    // Each model's methods (findAll, count, …) with the same fallback to the primary's model.
    const models = new Proxy(replica.models, {
      get: (all, name) => {
        const model = Reflect.get(all, name) as object;
        const onPrimary = Reflect.get(primary.models, name) as Record<PropertyKey, (...args: unknown[]) => unknown>;
        return new Proxy(model, {
          get: (target, key) => {
            const value = Reflect.get(target, key) as unknown;
            if (typeof value !== 'function') return value;
            return (...args: unknown[]) => {
              const result = (value as (...args: unknown[]) => unknown).apply(target, args);
              return result instanceof Promise ? retry(result, () => Promise.resolve(onPrimary[key]!(...args))) : result;
            };
          },
        });
      },
    });
    return {
      sequelize: replica.sequelize,
      models,
      tables: replica.tables,
      select: (sql, bind, transaction) => retry(replica.select(sql, bind, transaction), () => primary.select(sql, bind, transaction)),
    };
  }

  #raise(lsn: string): void {
    if (this.#floor === null || compareLsn(lsn, this.#floor) > 0) this.#floor = lsn;
  }

  async #choose(lsn: string | null): Promise<ReadDb> {
    const replica = this.#replica;
    if (!replica) return this.#primary;
    if (this.#state === 'down' && Date.now() < this.#downUntil) return this.#primary;
    const target = lsn === null ? this.#floor : this.#floor === null || compareLsn(lsn, this.#floor) > 0 ? lsn : this.#floor;
    // A replica known to be behind is asked once; a healthy one is waited for a little.
    const deadline = Date.now() + (this.#state === 'behind' ? 0 : REPLICA_WAIT_MS);
    try {
      for (;;) {
        const [row] = await replica.select<{ replayed: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS replayed');
        const replayed = row?.replayed ?? null;
        if (replayed === null) return this.#fallBack('behind', 'The viewer database is not a streaming replica (pg_last_wal_replay_lsn() is null): reading the primary');
        if (target === null || compareLsn(replayed, target) >= 0) {
          if (this.#state !== 'ok') this.#logger.info?.('The viewer replica has caught up: reading it again', { replayed });
          this.#state = 'ok';
          await debugPoint('viewer.replica-chosen', {});
          return this.#replicaReads!;
        }
        if (Date.now() >= deadline) {
          return this.#fallBack('behind', `The viewer replica lags (replayed ${replayed}, needs ${target}): reading the primary until it catches up`);
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    } catch (error) {
      this.#downUntil = Date.now() + REPLICA_RETRY_MS;
      return this.#fallBack('down', 'The viewer replica did not answer: reading the primary', (error as Error).message);
    }
  }

  #fallBack(state: 'behind' | 'down', message: string, error?: string): ReadDb {
    if (this.#state !== state) this.#logger.warn(message, error === undefined ? {} : { error });
    this.#state = state;
    return this.#primary;
  }
}

/**
 * A failure of the replica rather than of the read: its connection gone (refused, reset, the server
 * shutting down) or the query cancelled by a replication conflict (40001 in recovery).
 */
function replicaFailure(error: unknown): boolean {
  const code = pgCode(error);
  if (code && (code === '40001' || code.startsWith('08') || code.startsWith('57P'))) return true;
  if (code && /^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, …
  const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
  return (typeof name === 'string' && /^Sequelize(Connection|HostNotReachable|HostNotFound|InvalidConnection|AccessDenied)/.test(name)) || (typeof message === 'string' && /Connection terminated/i.test(message));
}
