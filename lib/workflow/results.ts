import type pg from 'pg';
import type { Tables } from '../db/tables.js';
import { DurableFlowError, deserializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import type { RunStatus } from '../types.js';
import { longTimeout } from '../timers.js';

export type Outcome =
  | { status: 'completed'; output?: string }
  | { status: 'failed'; error?: StoredError }
  | { status: 'cancelled' }
  | { status: 'missing' }
  | { status: 'closed' };

type Waiter = (outcome: Outcome) => void;

/** Poll at most this often, and back off to this when nothing finishes. */
const MIN_POLL_MS = 20;
const MAX_POLL_MS = 500;

/**
 * Tells `result()` callers when their runs finish. A run executed by a worker of this process reports
 * at once (`finished`); for runs executed elsewhere one shared poll asks about every awaited run in a
 * single query, backing off while nothing finishes. So a thousand pending `result()` calls cost one
 * query per interval, not a thousand.
 */
export class ResultWatcher {
  readonly #pool: pg.Pool;
  readonly #tables: Tables;
  readonly #waiters = new Map<string, Set<Waiter>>();
  #timer: NodeJS.Timeout | undefined;
  #interval = MIN_POLL_MS;
  #polling = false;
  #closed = false;

  constructor(pool: pg.Pool, tables: Tables) {
    this.#pool = pool;
    this.#tables = tables;
  }

  /** Resolves with the run's output, or rejects when it fails, is cancelled or does not exist. */
  wait(runId: string, timeoutMs?: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const waiter: Waiter = (outcome) => {
        cancelTimer?.();
        switch (outcome.status) {
          case 'completed':
            resolve(outcome.output === undefined ? undefined : JSON.parse(outcome.output));
            break;
          case 'failed':
            reject(runFailedError(runId, outcome.error));
            break;
          case 'cancelled':
            reject(new DurableFlowError('RUN_CANCELLED', `Run ${runId} was cancelled`));
            break;
          case 'closed':
            reject(new DurableFlowError('CLOSED', `The flow was closed while waiting for run ${runId}`));
            break;
          default:
            reject(new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`));
        }
      };
      const set = this.#waiters.get(runId) ?? new Set<Waiter>();
      set.add(waiter);
      this.#waiters.set(runId, set);
      if (timeoutMs !== undefined) {
        cancelTimer = longTimeout(() => {
          this.#remove(runId, waiter);
          reject(new DurableFlowError('INVALID_STATE', `Run ${runId} did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#interval = MIN_POLL_MS;
      this.#schedule();
    });
  }

  /** A worker of this process stored the outcome of `runId`. */
  finished(runId: string, outcome: Outcome): void {
    const set = this.#waiters.get(runId);
    if (!set) return;
    this.#waiters.delete(runId);
    for (const waiter of set) waiter(outcome);
  }

  #remove(runId: string, waiter: Waiter): void {
    const set = this.#waiters.get(runId);
    if (!set) return;
    set.delete(waiter);
    if (set.size === 0) this.#waiters.delete(runId);
  }

  #schedule(): void {
    if (this.#closed || this.#polling || this.#waiters.size === 0) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#poll(), this.#interval);
  }

  async #poll(): Promise<void> {
    this.#timer = undefined;
    if (this.#waiters.size === 0 || this.#closed) return;
    this.#polling = true;
    let found = 0;
    try {
      const ids = [...this.#waiters.keys()];
      const { rows } = await this.#pool.query<{ run_id: string; status: RunStatus | null; output: string | null; error: StoredError | null }>(
        `SELECT ids.run_id, r.status, r.output::text AS output, r.error
         FROM unnest($1::text[]) AS ids(run_id)
         LEFT JOIN ${this.#tables.runs} r ON r.run_id = ids.run_id
         WHERE r.id IS NULL OR r.status IN ('completed', 'failed', 'cancelled')`,
        [ids],
      );
      for (const row of rows) {
        found++;
        if (row.status === null) this.finished(row.run_id, { status: 'missing' });
        else if (row.status === 'completed') this.finished(row.run_id, { status: 'completed', ...(row.output === null ? {} : { output: row.output }) });
        else if (row.status === 'failed') this.finished(row.run_id, { status: 'failed', ...(row.error ? { error: row.error } : {}) });
        else this.finished(row.run_id, { status: 'cancelled' });
      }
    } catch {
      // The database is unreachable for now: ask again at the next interval.
    } finally {
      this.#polling = false;
    }
    this.#interval = found > 0 ? MIN_POLL_MS : Math.min(MAX_POLL_MS, this.#interval * 2);
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const runId of [...this.#waiters.keys()]) this.finished(runId, { status: 'closed' });
  }
}

export function runFailedError(runId: string, stored: StoredError | undefined): DurableFlowError {
  const cause = stored ? deserializeError(stored) : undefined;
  const detail = stored ? `: ${stored.class}: ${stored.message}` : '';
  return new DurableFlowError('RUN_FAILED', `Run ${runId} failed${detail}`, cause ? { cause } : undefined);
}
