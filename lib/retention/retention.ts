import type pg from 'pg';
import type { ResolvedOptions } from '../config.js';
import type { Tables } from '../db/tables.js';
import { BackgroundPrune } from './background.js';
import { pruneLocked } from './prune.js';
import type { PruneResult } from './prune.js';

/** A flow's retention: `flow.prune()` and the background pruning while its workers run. */
export class Retention {
  readonly #pool: pg.Pool;
  readonly #tables: Tables;
  readonly #options: ResolvedOptions;
  readonly #offsetMs: () => number;
  readonly #background: BackgroundPrune;

  constructor(pool: pg.Pool, tables: Tables, options: ResolvedOptions, offsetMs: () => number) {
    this.#pool = pool;
    this.#tables = tables;
    this.#options = options;
    this.#offsetMs = offsetMs;
    const enabled = Object.values(options.retention).some((ms) => ms !== null);
    this.#background = new BackgroundPrune((o) => this.#prune({ ...o, wait: false, pauseMs: 5 }), options.logger, enabled);
  }

  /** Prunes now, waiting for another process's pass to end first; `dryRun` counts and deletes nothing. */
  async prune(dryRun: boolean): Promise<PruneResult> {
    return (await this.#prune({ wait: true, dryRun }))!;
  }

  /** The number of the flow's running workers changed. */
  workers(count: number): void {
    this.#background.workers(count);
  }

  stop(): Promise<void> {
    return this.#background.stop();
  }

  #prune(options: { wait: boolean; dryRun?: boolean; stopped?: () => boolean; pauseMs?: number }): Promise<PruneResult | null> {
    return pruneLocked(this.#pool, this.#tables, { ...options, retention: this.#options.retention, offsetMs: this.#offsetMs() });
  }
}
