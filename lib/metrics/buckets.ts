/**
 * The bounds (seconds) of every durable-flow histogram, stored and exposed alike. The trigger functions
 * of lib/db/functions/metrics.sql spell the same list in `width_bucket`: stored bucket b counts the
 * samples with METRIC_BUCKETS[b - 1] <= x < METRIC_BUCKETS[b] (bucket 0: below the first bound, bucket
 * METRIC_BUCKETS.length: from the last bound up).
 */
export const METRIC_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** A histogram as stored: samples per stored bucket (index 0..METRIC_BUCKETS.length), their count and sum. */
export interface Buckets {
  counts: number[];
  samples: number;
  sumSeconds: number;
}

export function emptyBuckets(): Buckets {
  return { counts: METRIC_BUCKETS.map(() => 0).concat(0), samples: 0, sumSeconds: 0 };
}

/** Adds `samples` (with their sum in µs) to stored bucket `bucket`. */
export function addTo(buckets: Buckets, bucket: number, samples: number, sumUs: number): void {
  const i = Math.min(Math.max(0, bucket), METRIC_BUCKETS.length);
  buckets.counts[i] = (buckets.counts[i] ?? 0) + samples;
  buckets.samples += samples;
  buckets.sumSeconds += sumUs / 1e6;
}

/** Prometheus' cumulative `le` counts: for each bound, the samples below it, then `+Inf` (all). */
export function cumulative(buckets: Buckets): { le: string; count: number }[] {
  let running = 0;
  const out = METRIC_BUCKETS.map((bound, i) => {
    running += buckets.counts[i] ?? 0;
    return { le: String(bound), count: running };
  });
  return [...out, { le: '+Inf', count: buckets.samples }];
}

/**
 * The q-quantile (0..1) in seconds, interpolated linearly inside its bucket as Prometheus'
 * histogram_quantile does; the last bucket (no upper bound) answers its lower bound. null without samples.
 */
export function quantile(buckets: Buckets, q: number): number | null {
  if (buckets.samples === 0) return null;
  const rank = q * buckets.samples;
  let below = 0;
  for (let i = 0; i < buckets.counts.length; i++) {
    const n = buckets.counts[i] ?? 0;
    if (n > 0 && below + n >= rank) {
      const lower = i === 0 ? 0 : METRIC_BUCKETS[i - 1]!;
      const upper = METRIC_BUCKETS[i];
      if (upper === undefined) return lower;
      return lower + (upper - lower) * ((rank - below) / n);
    }
    below += n;
  }
  return METRIC_BUCKETS.at(-1)!;
}
