import pg from 'pg';
import { Sequelize } from 'sequelize';
import type { ResolvedOptions } from '../config.js';
import { poolTimeouts } from './queryable.js';

/** The viewer's bound on each statement. */
const VIEWER_STATEMENT_TIMEOUT_MS = 10_000;

/**
 * A client that sends every statement unnamed. Behind PgBouncer in transaction mode (1.18 keeps no
 * prepared statements) a statement prepared by name on one server connection is missing on the next.
 */
class UnnamedStatementClient extends pg.Client {
  override query(...args: unknown[]): never {
    const [config] = args;
    if (typeof config === 'object' && config !== null && typeof (config as { submit?: unknown }).submit !== 'function' && 'name' in config) {
      const { name: _name, ...unnamed } = config as { name?: string };
      args[0] = unnamed;
    }
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}

/**
 * The connections of one flow, each pool for one kind of work so that none starves another: the main
 * pool (starts, notifies, executions' writes, claims), a small one for heartbeats, one for the viewer
 * (with a statement timeout) and a one-connection pool per migrate(). The LISTEN connection is the
 * Listener's. A connection that fails while idle is logged, never crashes the process.
 *
 * With `directUrl` (the others go through PgBouncer in transaction mode), each migrate() and the prune
 * lock connect to it, the pooled connections send their statements unnamed, and the viewer's bound on a
 * statement is the client's (PgBouncer refuses the `statement_timeout` start-up parameter).
 *
 * The viewer's connections belong to a Sequelize instance of durable-flow's own (the read side, see
 * read/reader.ts, is built on the models): its clients are `pg` clients made from the very connection
 * settings of the other pools, so a `databaseUrl` means the same thing to both.
 */
export class Pools {
  readonly main: pg.Pool;
  readonly #connection: pg.ClientConfig;
  /** The session-bound connections' settings: `directUrl`'s, or `#connection`. */
  readonly #session: pg.ClientConfig;
  /** Whether `#connection` goes through a pooler (a `directUrl` other than `databaseUrl` was given). */
  readonly #pooled: boolean;
  readonly #options: ResolvedOptions;
  #control: pg.Pool | undefined;
  #viewer: Sequelize | undefined;
  #replica: Sequelize | undefined;
  #locks: pg.Pool | undefined;

  constructor(connection: pg.ClientConfig, session: pg.ClientConfig, options: ResolvedOptions) {
    this.#connection = connection;
    this.#session = session;
    this.#pooled = options.directUrl !== undefined && options.directUrl !== options.databaseUrl;
    this.#options = options;
    this.main = this.#pool('pooled', { ...poolTimeouts(options.queryTimeoutMs), max: options.poolSize });
  }

  /**
   * Heartbeats run on connections of their own, so that steps holding every connection of the main
   * pool (or a burst of commits queued for it) cannot starve them into losing their leases. A
   * heartbeat answered after the lease ran out is worthless: it waits at most that long.
   */
  control(): pg.Pool {
    if (!this.#control) {
      const timeoutMs = Math.min(this.#options.queryTimeoutMs || Infinity, this.#options.leaseTtlMs);
      this.#control = this.#pool('heartbeat', { ...poolTimeouts(timeoutMs), max: 2, application_name: `${this.#options.applicationName}-control` });
    }
    return this.#control;
  }

  /**
   * The read side's connections (the viewer, getRun, timeline, result() polls, the live feed's
   * read-backs) and the cold path's writes: a few, each statement bounded to 10 s, apart from the
   * engine's so that a heavy page can neither starve the engine nor run for ever.
   */
  viewer(): Sequelize {
    this.#viewer ??= this.#sequelize(this.#connection, 'viewer');
    return this.#viewer;
  }

  /**
   * The viewer's reads on the streaming replica of `viewerDatabaseUrl` (null without it): the same
   * kind of Sequelize instance, its connections given up after 2 s (the viewer then reads the primary,
   * see read/replica.ts).
   */
  replica(): Sequelize | null {
    const url = this.#options.viewerDatabaseUrl;
    if (!url) return null;
    this.#replica ??= this.#sequelize({ connectionString: url, connectionTimeoutMillis: 2000 }, 'viewer replica');
    return this.#replica;
  }

  #sequelize(connection: pg.ClientConfig, what: string): Sequelize {
    const logger = this.#options.logger;
    // Sequelize builds each client from the fields it knows; the rest of ours (a connection string,
    // SSL) is laid under them, leaving out what Sequelize has no value for.
    class ViewerClient extends pg.Client {
      constructor(config: pg.ClientConfig) {
        super({ ...connection, ...Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined)) });
        this.on('error', (error) => logger.warn(`A ${what} Postgres connection failed`, { error: error.message }));
      }
    }
    return new Sequelize({
      dialect: 'postgres',
      dialectModule: { ...pg, Client: ViewerClient },
      logging: false,
      pool: { max: 4, min: 0, idle: 30_000, acquire: 60_000 },
      dialectOptions: {
        // Behind PgBouncer no session SET (client_min_messages is not among the settings it carries
        // from one server connection to the next; the time zone Sequelize sets is). A replica is read
        // directly, never through the bouncer of databaseUrl.
        ...(this.#pooled && what === 'viewer'
          ? { query_timeout: VIEWER_STATEMENT_TIMEOUT_MS, clientMinMessages: 'ignore' }
          : { statement_timeout: VIEWER_STATEMENT_TIMEOUT_MS }),
        application_name: `${this.#options.applicationName}-viewer`,
      },
    });
  }

  /**
   * A connection for one migrate(), without `queryTimeout`: building an index on a big table, or
   * waiting for another process's migration, may rightly take longer. The caller ends it.
   */
  migration(): pg.Pool {
    return this.#pool('migration', { max: 1 }, this.#session);
  }

  /**
   * Where a session advisory lock is held across statements (the prune lock): the main pool, or with
   * `directUrl` one connection of its own to it.
   */
  sessionLocks(): pg.Pool {
    if (!this.#pooled) return this.main;
    this.#locks ??= this.#pool('session lock', { ...poolTimeouts(this.#options.queryTimeoutMs), max: 1 }, this.#session);
    return this.#locks;
  }

  async end(): Promise<void> {
    await this.#locks?.end();
    await this.#viewer?.close();
    await this.#replica?.close();
    await this.#control?.end();
    await this.main.end();
  }

  #pool(what: string, config: pg.PoolConfig, connection = this.#connection): pg.Pool {
    const pooled = connection === this.#connection && this.#pooled;
    const pool = new pg.Pool({ ...connection, ...config, ...(pooled ? { Client: UnnamedStatementClient } : {}) });
    pool.on('error', (error) => this.#options.logger.warn(`A ${what} Postgres connection failed`, { error: error.message }));
    return pool;
  }
}
