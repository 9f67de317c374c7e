import pg from 'pg';
import type { ResolvedOptions } from '../config.js';
import { poolTimeouts } from './queryable.js';

/**
 * The connections of one flow, each pool for one kind of work so that none starves another: the main
 * pool (starts, notifies, executions' writes, claims), a small one for heartbeats, one for the viewer
 * (with a statement timeout) and a one-connection pool per migrate(). The LISTEN connection is the
 * Listener's. A connection that fails while idle is logged, never crashes the process.
 */
export class Pools {
  readonly main: pg.Pool;
  readonly #connection: pg.ClientConfig;
  readonly #options: ResolvedOptions;
  #control: pg.Pool | undefined;
  #viewer: pg.Pool | undefined;

  constructor(connection: pg.ClientConfig, options: ResolvedOptions) {
    this.#connection = connection;
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

  /** The viewer's reads: a few connections, each statement bounded to 10 s. */
  viewer(): pg.Pool {
    this.#viewer ??= this.#pool('viewer', { max: 3, statement_timeout: 10_000, application_name: `${this.#options.applicationName}-viewer` });
    return this.#viewer;
  }

  /**
   * A connection for one migrate(), without `queryTimeout`: building an index on a big table, or
   * waiting for another process's migration, may rightly take longer. The caller ends it.
   */
  migration(): pg.Pool {
    return this.#pool('migration', { max: 1 });
  }

  async end(): Promise<void> {
    await this.#viewer?.end();
    await this.#control?.end();
    await this.main.end();
  }

  #pool(what: string, config: pg.PoolConfig): pg.Pool {
    const pool = new pg.Pool({ ...this.#connection, ...config });
    pool.on('error', (error) => this.#options.logger.warn(`A ${what} Postgres connection failed`, { error: error.message }));
    return pool;
  }
}
