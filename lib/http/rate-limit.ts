/**
 * A token bucket: it holds up to `limit` tokens and refills continuously at `limit` per `periodMs`;
 * each request takes one. A burst of `limit` passes at once, then requests pass at the steady rate.
 * State lives in this process only (no database round trip on a path meant to shed load), so N
 * processes behind a load balancer accept up to N × `limit`.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    readonly limit: number,
    readonly periodMs: number,
    // Monotonic: a wall-clock step must neither refill the bucket nor freeze it.
    readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = limit;
    this.#last = now();
  }

  /** Takes a token and returns 0, or, when none is left, takes nothing and returns the milliseconds until one is. */
  take(): number {
    const now = this.now();
    this.#tokens = Math.min(this.limit, this.#tokens + ((now - this.#last) * this.limit) / this.periodMs);
    this.#last = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.#tokens) * this.periodMs) / this.limit));
  }
}
