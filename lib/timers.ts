/** The longest delay `setTimeout` honours; a longer one fires after 1 ms (Node's TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `setTimeout` for any delay, including ones beyond ~24.8 days (a step timeout or a `result()` wait of
 * a month must not fire at once). Returns a function that cancels it.
 */
export function longTimeout(fn: () => void, ms: number, options: { unref?: boolean } = {}): () => void {
  let timer: NodeJS.Timeout | undefined;
  const deadline = Date.now() + ms;
  const arm = (remaining: number) => {
    timer = setTimeout(() => {
      const left = deadline - Date.now();
      if (left > 0) arm(left);
      else fn();
    }, Math.min(Math.max(0, remaining), MAX_TIMER_MS));
    if (options.unref) timer.unref();
  };
  arm(ms);
  return () => clearTimeout(timer);
}
