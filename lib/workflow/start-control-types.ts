// The start-control workflow options (issue 16): a leaf module (it imports only types of duration.ts),
// so lib/types.ts can name them without growing past its line budget or an import cycle.
import type { DurationInput } from '../duration.js';

/** The `singleton` workflow option. */
export interface SingletonOptions<I = any> {
  /** `'skip'`: start() returns the id of the run in progress; `'cancel'`: it cancels that run (and its children) and starts a new one. */
  mode: 'skip' | 'cancel';
  /** One singleton per key (a non-empty string, e.g. `(input) => input.accountId`). Default: one for the workflow. */
  key?: (input: I) => string;
}

/** The `rateLimit` workflow option. */
export interface RateLimitOptions<I = any> {
  /** Starts accepted per `period`. */
  limit: number;
  /** The sliding window. */
  period: DurationInput;
  /** One limit per key (a non-empty string). Default: one for the workflow. */
  key?: (input: I) => string;
}

/** The `debounce` workflow option. */
export interface DebounceOptions<I = any> {
  /** Quiet time: the run begins this long after the last start of its burst. */
  period: DurationInput;
  /** One burst per key (a non-empty string). Default: one for the workflow. */
  key?: (input: I) => string;
  /** The longest a run waits from the first start of its burst (at least `period`). Default: no bound. */
  maxWait?: DurationInput;
}

/** The `throttle` workflow option. */
export interface ThrottleOptions<I = any> {
  /** Runs of a key that may begin (their first execution starts) in any `period`. */
  limit: number;
  /** The sliding window. */
  period: DurationInput;
  /** One throttle per key (a non-empty string). Default: one for the workflow. */
  key?: (input: I) => string;
}
