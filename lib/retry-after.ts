import { toMilliseconds } from './duration.js';
import type { DurationInput } from './duration.js';
import { DurableFlowError } from './errors.js';

// Its own module, not errors.ts: it parses durations, and duration.ts already imports errors.ts.

/**
 * Throw from a step body to have its next attempt wait exactly `after` (a duration, or a `Date` to
 * wait until) instead of the backoff, e.g. a 429's `Retry-After`. It counts as a retry: once the step's
 * retries are used up, the step fails with this error as with any other. Stored with code `RETRY_AFTER`.
 */
export class RetryAfterError extends DurableFlowError {
  /** The delay before the next attempt, in ms, counted on the database clock from the failed attempt's end. */
  readonly afterMs: number;
  /**
   * Set when `after` was a `Date` (an HTTP-date `Retry-After`, say): it is turned into `afterMs` when the
   * error is made, from this process's clock, the clock such a Date was read against (0 if it is past).
   */
  readonly retryAt: Date | undefined;

  constructor(message: string, options: { after: DurationInput | Date; cause?: unknown }) {
    super('RETRY_AFTER', message, options?.cause === undefined ? undefined : { cause: options.cause });
    const after: unknown = (options as { after?: unknown } | undefined)?.after;
    if (after instanceof Date) {
      if (Number.isNaN(after.getTime())) {
        throw new DurableFlowError('INVALID_ARGUMENT', 'Expected `after` of RetryAfterError to be a duration or a valid Date, got an invalid Date');
      }
      this.retryAt = after;
      this.afterMs = Math.max(0, after.getTime() - Date.now());
    } else {
      this.retryAt = undefined;
      this.afterMs = toMilliseconds(after, '`after` of RetryAfterError', { allowZero: true });
    }
  }
}
