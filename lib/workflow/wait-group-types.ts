// The branches of step.waitAny / step.waitAll (issue 15): a leaf module (it imports only types of duration.ts),
// so lib/types.ts can name them without growing past its line budget or an import cycle.
import type { DurationInput, TimeInput } from '../duration.js';

/** A branch of step.waitAny / step.waitAll: an event (with `match`), a sleep (`sleep` or `until`), or a run to finish (`workflow`: its run id). */
export type WaitBranch =
  | { event: string; match?: Record<string, unknown>; allowPastEvents?: boolean }
  | { sleep: DurationInput }
  | { until: TimeInput }
  | { workflow: string };

export interface WaitGroupOptions {
  /** Give up after this long (for waitAny, unless a sleep branch ends first): the step throws `WaitTimeoutError`, and every replay throws it again. */
  timeout?: DurationInput;
}

/** What step.waitAny returns: the branch that won and its value. */
export type WaitAnyResult<B> = { [K in keyof B]: { key: K; value: any } }[keyof B];
