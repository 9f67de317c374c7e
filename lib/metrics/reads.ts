import { nowSql, quoteIdent } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import type { ReadDb } from '../read/db.js';
import { addTo, emptyBuckets } from './buckets.js';
import type { Buckets } from './buckets.js';

/** Minute buckets are kept this long at least; older ones are folded into the totals (minute '-infinity'). */
export const METRICS_KEEP_MS = 25 * 3600_000;
/** How often one process folds shards and samples the queue lag (on a read of the metrics). */
const MAINTENANCE_MS = 60_000;
/** A read of the queue lag looks at this many of the oldest due runs at most (the due index, in wake order). */
export const LAG_SCAN_RUNS = 1000;
/**
 * How often one process looks up the workflows none of whose due runs is among those (their oldest
 * lies behind a larger backlog, or they have none due): each such look-up reads past that backlog.
 */
export const LAG_BEHIND_MS = 60_000;

export type HistogramKind = 'step' | 'resume' | 'lag';

/** Everything a scrape exposes from the database: cluster-wide, the same whichever process answers. */
export interface MetricsSnapshot {
  /** Runs now in each status, by workflow. */
  runs: { workflow: string; status: string; runs: number }[];
  /** Since the metrics began (migration 016): runs that began, completed, failed, were cancelled. */
  totals: { workflow: string; started: number; completed: number; failed: number; cancelled: number }[];
  histograms: { workflow: string; kind: HistogramKind; buckets: Buckets }[];
  /** The oldest due run of each workflow and queue: its age in seconds. */
  lag: { workflow: string; queue: string; seconds: number }[];
}

/** One point of the page's charts: an interval of `stepMs` from `at`. */
export interface SeriesPoint {
  at: Date;
  started: number;
  completed: number;
  failed: number;
  cancelled: number;
  step: Buckets;
  resume: Buckets;
  lag: Buckets;
}

const num = (v: unknown) => Number(v ?? 0);

/**
 * The metrics' reads, on the viewer's connections: a few small tables (migration 016), never the runs,
 * but for the queue lag (the oldest due runs, at most LAG_SCAN_RUNS of them; see #lag).
 */
export class MetricsReads {
  readonly #db: ReadDb;
  #maintainedAt = 0;
  /** The last look-up of the workflows behind the scanned due runs (see #lag), and when (Date.now()). */
  #behind: { at: number; workflows: Set<string>; lag: MetricsSnapshot['lag'] } | undefined;

  constructor(db: ReadDb) {
    this.#db = db;
  }

  async snapshot(offsetMs: number): Promise<MetricsSnapshot> {
    const t = this.#db.tables;
    const [runs, totals, histograms, lag] = await Promise.all([
      this.#db.select<{ workflow_name: string; status: string; runs: string }>(
        `SELECT workflow_name, status, sum(runs)::bigint AS runs FROM ${quoteIdent(t.schema)}.durable_flow_run_counts GROUP BY 1, 2 ORDER BY 1, 2`,
      ),
      this.#db.select<{ workflow_name: string; started: string; completed: string; failed: string; cancelled: string }>(
        `SELECT workflow_name, sum(started) AS started, sum(completed) AS completed, sum(failed) AS failed, sum(cancelled) AS cancelled
         FROM ${quoteIdent(t.schema)}.durable_flow_metric_minutes GROUP BY 1 ORDER BY 1`,
      ),
      this.#db.select<{ workflow_name: string; kind: HistogramKind; bucket: number; samples: string; sum_us: string }>(
        `SELECT workflow_name, kind, bucket, sum(samples) AS samples, sum(sum_us) AS sum_us
         FROM ${quoteIdent(t.schema)}.durable_flow_metric_samples WHERE kind <> 'lag' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      ),
      this.#lag(offsetMs),
    ]);
    const byKey = new Map<string, { workflow: string; kind: HistogramKind; buckets: Buckets }>();
    for (const row of histograms) {
      const key = `${row.workflow_name}\u0000${row.kind}`;
      const entry = byKey.get(key) ?? { workflow: row.workflow_name, kind: row.kind, buckets: emptyBuckets() };
      addTo(entry.buckets, row.bucket, num(row.samples), num(row.sum_us));
      byKey.set(key, entry);
    }
    await this.#maintain(offsetMs, lag);
    return {
      runs: runs.map((r) => ({ workflow: r.workflow_name, status: r.status, runs: num(r.runs) })),
      totals: totals.map((r) => ({ workflow: r.workflow_name, started: num(r.started), completed: num(r.completed), failed: num(r.failed), cancelled: num(r.cancelled) })),
      histograms: [...byKey.values()],
      lag,
    };
  }

  /** `points` intervals of `stepMs` ending now (flow clock), of one workflow or all: the page's charts. */
  async series(offsetMs: number, points: number, stepMs: number, workflow: string | null): Promise<SeriesPoint[]> {
    const t = this.#db.tables;
    await this.#maintain(offsetMs);
    // The first interval's start: whole steps back from the current minute's end.
    const start = `date_trunc('minute', ${nowSql('$1')}) + interval '1 minute' - $2::float8 * $3::float8 * interval '1 millisecond'`;
    const index = `floor(extract(epoch FROM minute - (${start})) * 1000 / $3::float8)::int`;
    const [minutes, samples, first] = await Promise.all([
      this.#db.select<{ i: number; started: string; completed: string; failed: string; cancelled: string }>(
        `SELECT ${index} AS i, sum(started) AS started, sum(completed) AS completed, sum(failed) AS failed, sum(cancelled) AS cancelled
         FROM ${quoteIdent(t.schema)}.durable_flow_metric_minutes WHERE minute >= ${start} AND ($4::text IS NULL OR workflow_name = $4) GROUP BY 1`,
        [offsetMs, points, stepMs, workflow],
      ),
      this.#db.select<{ i: number; kind: HistogramKind; bucket: number; samples: string; sum_us: string }>(
        `SELECT ${index} AS i, kind, bucket, sum(samples) AS samples, sum(sum_us) AS sum_us
         FROM ${quoteIdent(t.schema)}.durable_flow_metric_samples WHERE minute >= ${start} AND ($4::text IS NULL OR workflow_name = $4) GROUP BY 1, 2, 3`,
        [offsetMs, points, stepMs, workflow],
      ),
      this.#db.select<{ start: Date }>(`SELECT ${start} AS start`, [offsetMs, points, stepMs]),
    ]);
    const from = new Date(first[0]!.start).getTime();
    const series: SeriesPoint[] = Array.from({ length: points }, (_, i) => ({
      at: new Date(from + i * stepMs), started: 0, completed: 0, failed: 0, cancelled: 0, step: emptyBuckets(), resume: emptyBuckets(), lag: emptyBuckets(),
    }));
    for (const row of minutes) {
      const point = series[row.i];
      if (!point) continue;
      point.started += num(row.started);
      point.completed += num(row.completed);
      point.failed += num(row.failed);
      point.cancelled += num(row.cancelled);
    }
    for (const row of samples) {
      const point = series[row.i];
      if (point) addTo(point[row.kind], row.bucket, num(row.samples), num(row.sum_us));
    }
    return series;
  }

  /**
   * The oldest due run of each workflow with unfinished runs (from the counts), from one scan of the
   * LAG_SCAN_RUNS oldest due runs (the due index, in wake order): exact for every workflow with a due
   * run among them, and for all when fewer are due (a workflow not among them then has none). When that
   * many are due, the others are looked up past them (each look-up reads past that backlog: 0.1 s a
   * workflow with 100,000 due runs in front), at most every LAG_BEHIND_MS in a process, their ages
   * meanwhile grown by the time since. So a read costs about the same at any backlog.
   */
  async #lag(offsetMs: number): Promise<MetricsSnapshot['lag']> {
    const t = this.#db.tables;
    const now = nowSql('$1');
    const rows = await this.#db.select<{ workflow_name: string; queue_name: string | null; seconds: number | null; scanned: string; last: Date | null }>(
      `WITH due AS MATERIALIZED (
         SELECT r.workflow_name, r.queue_name, r.wake_at FROM ${t.runs} r
         WHERE r.wake_at IS NOT NULL AND r.wake_at <= ${now} ORDER BY r.wake_at LIMIT $2
       ), oldest AS (SELECT DISTINCT ON (workflow_name) * FROM due ORDER BY workflow_name, wake_at)
       SELECT w.workflow_name, o.queue_name, greatest(0, extract(epoch FROM ${now} - o.wake_at))::float8 AS seconds,
              (SELECT count(*) FROM due) AS scanned, (SELECT max(wake_at) FROM due) AS last
       FROM (SELECT workflow_name FROM ${quoteIdent(t.schema)}.durable_flow_run_counts
             WHERE status NOT IN ('completed', 'failed', 'cancelled') GROUP BY 1 HAVING sum(runs) > 0) w
       LEFT JOIN oldest o ON o.workflow_name = w.workflow_name
       ORDER BY 1`,
      [offsetMs, LAG_SCAN_RUNS],
    );
    const lag = rows.flatMap((r) => (r.queue_name === null ? [] : [{ workflow: r.workflow_name, queue: r.queue_name, seconds: Number(r.seconds) }]));
    const behind = rows.filter((r) => r.queue_name === null).map((r) => r.workflow_name);
    if (behind.length === 0 || Number(rows[0]!.scanned) < LAG_SCAN_RUNS) return lag;
    return [...lag, ...(await this.#lagBehind(offsetMs, rows[0]!.last!, behind))].sort((a, b) => (a.workflow < b.workflow ? -1 : a.workflow > b.workflow ? 1 : 0));
  }

  /** The oldest due run, from `after` on, of each of `workflows` (none of theirs among the scanned); cached (see #lag). */
  async #lagBehind(offsetMs: number, after: Date, workflows: string[]): Promise<MetricsSnapshot['lag']> {
    const cached = this.#behind;
    if (cached && Date.now() - cached.at < LAG_BEHIND_MS && workflows.every((w) => cached.workflows.has(w))) {
      const grown = (Date.now() - cached.at) / 1000;
      return cached.lag.filter((l) => workflows.includes(l.workflow)).map((l) => ({ ...l, seconds: l.seconds + grown }));
    }
    const rows = await this.#db.select<{ workflow_name: string; queue_name: string; seconds: number }>(
      `SELECT w.workflow_name, d.queue_name, greatest(0, extract(epoch FROM ${nowSql('$1')} - d.wake_at))::float8 AS seconds
       FROM unnest($3::text[]) AS w(workflow_name)
       CROSS JOIN LATERAL (SELECT r.queue_name, r.wake_at FROM ${this.#db.tables.runs} r
                           WHERE r.wake_at IS NOT NULL AND r.wake_at >= $2 AND r.wake_at <= ${nowSql('$1')} AND r.workflow_name = w.workflow_name
                           ORDER BY r.wake_at LIMIT 1) d`,
      [offsetMs, after, workflows],
    );
    const lag = rows.map((r) => ({ workflow: r.workflow_name, queue: r.queue_name, seconds: Number(r.seconds) }));
    this.#behind = { at: Date.now(), workflows: new Set(workflows), lag };
    return lag;
  }

  /** At most once a minute in a process: fold the shards (metrics.sql) and record the lag of each workflow. */
  async #maintain(offsetMs: number, known?: MetricsSnapshot['lag']): Promise<void> {
    if (Date.now() - this.#maintainedAt < MAINTENANCE_MS) return;
    this.#maintainedAt = Date.now();
    await compactMetrics(this.#db, offsetMs);
    const lag = known ?? (await this.#lag(offsetMs));
    if (lag.length === 0) return;
    await this.#db.select(
      `SELECT ${quoteIdent(this.#db.tables.schema)}.durable_flow_metrics_sample(${nowSql('$1')}, w, 'lag', (s * 1e6)::bigint)
       FROM unnest($2::text[], $3::float8[]) AS x(w, s)`,
      [offsetMs, lag.map((l) => l.workflow), lag.map((l) => l.seconds)],
    );
  }
}

/** The metrics tables (migration 016), e.g. for the test harness's reset. */
export function metricTables(t: Tables): string[] {
  return ['durable_flow_run_counts', 'durable_flow_metric_minutes', 'durable_flow_metric_samples'].map((name) => `${quoteIdent(t.schema)}.${name}`);
}

/** Folds other connections' shards into shard 0 and minutes past METRICS_KEEP_MS into the totals. */
export async function compactMetrics(db: Pick<ReadDb, 'select' | 'tables'>, offsetMs: number): Promise<number> {
  const rows = await db.select<{ n: number }>(
    `SELECT ${quoteIdent(db.tables.schema)}.durable_flow_metrics_compact(${nowSql('$1')}, ${nowSql('$1')} - $2::float8 * interval '1 millisecond') AS n`,
    [offsetMs, METRICS_KEEP_MS],
  );
  return Number(rows[0]?.n ?? 0);
}
