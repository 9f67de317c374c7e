import { DurableFlowError, deserializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import { longTimeout } from '../timers.js';

export type Outcome =
  | { status: 'completed'; output?: string }
  | { status: 'failed'; error?: StoredError }
  | { status: 'cancelled'; error?: StoredError }
  | { status: 'missing' }
  | { status: 'closed' };

type Waiter = (outcome: Outcome) => void;

/** Reads the outcomes of the runs among `runIds` that finished or do not exist (the read side's finishedRuns). */
export type OutcomeReader = (runIds: string[]) => Promise<{ runId: string; outcome: Outcome }[]>;

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
  readonly #read: OutcomeReader;
  readonly #waiters = new Map<string, Set<Waiter>>();
  #timer: NodeJS.Timeout | undefined;
  #interval = MIN_POLL_MS;
  #polling = false;
  #closed = false;

  constructor(read: OutcomeReader) {
    this.#read = read;
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
            reject(runCancelledError(runId, outcome.error));
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
      for (const { runId, outcome } of await this.#read([...this.#waiters.keys()])) {
        found++;
        this.finished(runId, outcome);
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

/** Why it was cancelled (flow.cancel's reason, cancelOn's event, DEADLINE_EXCEEDED, …) is the cause. */
export function runCancelledError(runId: string, stored: StoredError | undefined): DurableFlowError {
  const cause = stored ? deserializeError(stored) : undefined;
  const detail = stored ? `: ${stored.code ?? stored.class}: ${stored.message}` : '';
  return new DurableFlowError('RUN_CANCELLED', `Run ${runId} was cancelled${detail}`, cause ? { cause } : undefined);
}

export function runFailedError(runId: string, stored: StoredError | undefined): DurableFlowError {
  const cause = stored ? deserializeError(stored) : undefined;
  const detail = stored ? `: ${stored.class}: ${stored.message}` : '';
  return new DurableFlowError('RUN_FAILED', `Run ${runId} failed${detail}`, cause ? { cause } : undefined);
}
