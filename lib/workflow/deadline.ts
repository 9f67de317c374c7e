import { DurableFlowError } from '../errors.js';

/** The error of a run that reached its deadline (`timeout`): what durable_flow_expire stores, as thrown. */
export function runTimedOut(deadlineMs: number): DurableFlowError {
  return new DurableFlowError('RUN_TIMEOUT', `The run did not finish within its timeout (deadline ${new Date(deadlineMs).toISOString()})`);
}

/** The longest delay setTimeout takes (about 24.8 days); a later deadline re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `onDeadline` once, when `dbNow()` (the database clock as the execution estimates it: the
 * claim's reading plus monotonic time) reaches `deadlineMs`, unless `done` settles first. A timer that
 * fires early by that clock (or is capped) re-arms for the rest.
 */
export function watchDeadline(deadlineMs: number, dbNow: () => number, done: Promise<unknown>, onDeadline: () => void): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let over = false;
  const arm = (): void => {
    if (over) return;
    const left = deadlineMs - dbNow();
    if (left <= 0) {
      onDeadline();
      return;
    }
    timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
    timer.unref();
  };
  void done.finally(() => {
    over = true;
    clearTimeout(timer);
  });
  arm();
}
