/**
 * Shared helpers for the anchor benchmarks (DBOS Transact, graphile-worker, pg-boss, pgbench):
 * a fresh database per harness, settled Postgres counters, percentiles, and the common result type.
 * Figures are measured and returned, never asserted.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';

export type FigureKey =
  | 'throughput_1' // 3-step workflows (or 3-job chains) per second, 2,000 started at once, one process
  | 'latency_median'
  | 'latency_p99' // start → result of one 3-step workflow at a time, ms
  | 'event_resume_median'
  | 'event_resume_p99' // event sent → waiting workflow resumes, ms
  | 'commits_per_wf'
  | 'wal_flushes_per_wf' // Postgres transactions and WAL flushes per 3-step workflow, sequential runs
  | 'wal_records_per_wf' // WAL records (pg_stat_wal.wal_records) per 3-step workflow, same phases
  | 'pgbench_insert_tps_1'
  | 'pgbench_insert_tps_4'
  | 'pgbench_insert_tps_8';

export interface AnchorResult {
  system: string;
  version: string;
  figure: FigureKey;
  value: number;
  unit: string;
  notes?: string;
}

/** The server the anchors create their databases on. */
export const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `url` with its database replaced by `db`. */
export function urlFor(db: string, base: string = ADMIN_URL): string {
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

export interface BenchDb {
  name: string;
  url: string;
  /** Drops the database, ending any connection still open on it. Safe to call twice. */
  drop(): Promise<void>;
}

async function adminQuery(sql: string, adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates a fresh, uniquely named database (`<prefix>_<time>_<random>`) on the admin server. */
export async function createDb(prefix: string, adminUrl: string = ADMIN_URL): Promise<BenchDb> {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix)) throw new Error(`createDb: bad prefix ${JSON.stringify(prefix)}`);
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await adminQuery(`CREATE DATABASE ${name}`, adminUrl);
  let dropped = false;
  return {
    name,
    url: urlFor(name, adminUrl),
    async drop() {
      if (dropped) return;
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, adminUrl);
      dropped = true;
    },
  };
}

/**
 * VACUUM (ANALYZE) the database at `url`, so that autovacuum, triggered by an earlier phase's
 * writes, is less likely to run inside a measured phase.
 */
export async function vacuumAnalyze(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('VACUUM (ANALYZE)');
  } finally {
    await client.end();
  }
}

export interface PgCounters {
  /** pg_stat_database.xact_commit of the measured database. */
  commits: number;
  /** pg_stat_wal.wal_sync (server-wide): WAL flushes to disk. */
  walSyncs: number;
  /** pg_stat_wal.wal_records (server-wide). */
  walRecords: number;
  /** xact_commit of every other database, by name: activity that shares the server-wide WAL counters. */
  otherCommits: Record<string, number>;
  /** performance.now() when read. */
  at: number;
}

/**
 * Reads the counters once they have settled. Backends report their counters when idle (at most
 * once a second, else up to 10 s later) or at exit, so close the measured system's connections
 * first; this then waits `settleMs`, clears the stats snapshot and reads, from its own connection
 * (give it a URL on another database, e.g. the admin URL, so its own commits are not counted).
 */
export async function settledStats(url: string, dbName: string, settleMs = 1000): Promise<PgCounters> {
  await sleep(settleMs);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{
      commits: number | null;
      other_commits: Record<string, number> | null;
      wal_syncs: number;
      wal_records: number;
    }>(
      `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1)::float8 AS commits,
              (SELECT jsonb_object_agg(datname, xact_commit) FROM pg_stat_database
                WHERE datname IS NOT NULL AND datname <> $1) AS other_commits,
              (SELECT wal_sync FROM pg_stat_wal)::float8 AS wal_syncs,
              (SELECT wal_records FROM pg_stat_wal)::float8 AS wal_records`,
      [dbName],
    );
    const row = rows[0];
    if (!row || row.commits === null) throw new Error(`settledStats: no pg_stat_database row for ${dbName}`);
    return {
      commits: row.commits,
      walSyncs: row.wal_syncs,
      walRecords: row.wal_records,
      otherCommits: row.other_commits ?? {},
      at: performance.now(),
    };
  } finally {
    await client.end();
  }
}

export interface CounterDelta {
  commits: number;
  walSyncs: number;
  walRecords: number;
  /** Commits in the other databases that exist at both readings (one dropped meanwhile is not counted). */
  otherCommits: number;
}

export function counterDelta(before: PgCounters, after: PgCounters): CounterDelta {
  return {
    commits: after.commits - before.commits,
    walSyncs: after.walSyncs - before.walSyncs,
    walRecords: after.walRecords - before.walRecords,
    otherCommits: otherCommitsDelta(before.otherCommits, after.otherCommits),
  };
}

function otherCommitsDelta(before: Record<string, number>, after: Record<string, number>): number {
  let sum = 0;
  for (const [name, value] of Object.entries(after)) {
    const was = before[name];
    if (was !== undefined && value >= was) sum += value - was;
  }
  return sum;
}

/**
 * Per-unit cost from a measured phase and an idle control phase of the same shape (same launch,
 * warm-up, shutdown, same duration, but no measured work): (measured − control) / units.
 */
export function perUnit(measured: CounterDelta, control: CounterDelta, units: number): CounterDelta {
  return {
    commits: (measured.commits - control.commits) / units,
    walSyncs: (measured.walSyncs - control.walSyncs) / units,
    walRecords: (measured.walRecords - control.walRecords) / units,
    otherCommits: (measured.otherCommits - control.otherCommits) / units,
  };
}

/** Nearest-rank percentile (p in 0–100) of `values`; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

const requireHere = createRequire(import.meta.url);

/** The installed version of `pkg`, read from node_modules/<pkg>/package.json. */
export function installedVersion(pkg: string): string {
  // Resolve the package's own directory through Node's lookup (works for hoisted and nested
  // installs); fall back to bench/node_modules (the anchors, bench/package.json), then the repository's.
  const candidates: string[] = [];
  try {
    candidates.push(join(dirname(requireHere.resolve(`${pkg}/package.json`)), 'package.json'));
  } catch {
    // Packages whose "exports" hide package.json end up here.
  }
  candidates.push(new URL(`../node_modules/${pkg}/package.json`, import.meta.url).pathname);
  candidates.push(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url).pathname);
  for (const file of candidates) {
    try {
      const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (json.name === pkg && typeof json.version === 'string') return json.version;
    } catch {
      // try the next candidate
    }
  }
  return 'unknown';
}

/** A system under test, as the sequential phase drives it. */
export interface SequentialSubject {
  /** Starts the system (its pools, workers, listeners) and warms it up. */
  start(): Promise<void>;
  /** Runs `count` units (workflows or chains) one after the other; returns each one's latency, ms. */
  run(count: number): Promise<number[]>;
  /** Stops the system and closes every connection it opened. */
  stop(): Promise<void>;
}

export interface SequentialMeasurement {
  latencies: number[];
  /** commits_per_wf and wal_flushes_per_wf (unit given by `unit`). */
  results: AnchorResult[];
}

/**
 * Sequential latency plus Postgres commits and WAL flushes per unit. In each of `rounds` rounds:
 * a measured phase (start + warm-up, seq/rounds units one at a time, stop) and then an idle
 * control phase of the same shape and duration (start + warm-up, idle, stop), with settled
 * counters read after each stop. A round's cost per unit is (measured − control) / units, so
 * start-up, warm-up, shutdown and the system's idle background work cancel out; the figure is the
 * median over the rounds (pg_stat_wal is server-wide, so another database's burst of WAL lands in
 * one round rather than in the figure). Latencies are pooled over all measured phases.
 */
export async function measureSequential(
  subject: SequentialSubject,
  options: { system: string; version: string; dbName: string; seq: number; rounds?: number; unit: 'wf' | 'chain' },
): Promise<SequentialMeasurement> {
  const { system, version, dbName, seq, unit } = options;
  const rounds = Math.max(1, Math.min(options.rounds ?? 3, seq));
  const latencies: number[] = [];
  const perRound: { units: number; ms: number; measured: CounterDelta; control: CounterDelta; per: CounterDelta }[] = [];
  let before = await settledStats(ADMIN_URL, dbName);
  for (let k = 0; k < rounds; k++) {
    const units = Math.floor(seq / rounds) + (k < seq % rounds ? 1 : 0);
    await subject.start();
    const t = performance.now();
    latencies.push(...(await subject.run(units)));
    const ms = performance.now() - t;
    await subject.stop();
    const mid = await settledStats(ADMIN_URL, dbName);
    await subject.start();
    await sleep(ms);
    await subject.stop();
    const after = await settledStats(ADMIN_URL, dbName);
    const measured = counterDelta(before, mid);
    const control = counterDelta(mid, after);
    perRound.push({ units, ms, measured, control, per: perUnit(measured, control, units) });
    before = after;
  }
  const commits = median(perRound.map((r) => r.per.commits));
  const walSyncs = median(perRound.map((r) => r.per.walSyncs));
  const walRecords = median(perRound.map((r) => r.per.walRecords));
  const detail = perRound
    .map(
      (r, k) =>
        `round ${k + 1}: ${r.units} in ${round(r.ms / 1000, 1)} s, commits ${r.measured.commits}−${r.control.commits}, WAL syncs ${r.measured.walSyncs}−${r.control.walSyncs} → ${round(r.per.commits)} / ${round(r.per.walSyncs)} per ${unit} (commits in other databases meanwhile: ${r.measured.otherCommits} / ${r.control.otherCommits})`,
    )
    .join('; ');
  const notes =
    `${seq} sequential ${unit}s in ${rounds} rounds, each a measured phase minus an idle control phase of the same start, warm-up, stop and duration; ` +
    `median of the rounds; WAL records/${unit} ${round(walRecords, 1)}; wal_sync is server-wide. ${detail}`;
  return {
    latencies,
    results: [
      { system, version, figure: 'commits_per_wf', value: round(commits), unit: `commits/${unit}`, notes },
      { system, version, figure: 'wal_flushes_per_wf', value: round(walSyncs), unit: `flushes/${unit}`, notes },
      { system, version, figure: 'wal_records_per_wf', value: round(walRecords, 1), unit: `records/${unit}`, notes },
    ],
  };
}

/**
 * Tracks the ends of job chains: `expect(id)` returns a promise that `end(id)` resolves with the
 * performance.now() time of the end. Ends of ids nobody waits for are counted and dropped.
 */
export class ChainEnds {
  private readonly waiting = new Map<string, (at: number) => void>();
  unexpected = 0;

  expect(id: string): Promise<number> {
    return new Promise<number>((resolve) => this.waiting.set(id, resolve));
  }

  end(id: string): void {
    const at = performance.now();
    const resolve = this.waiting.get(id);
    if (!resolve) {
      this.unexpected++;
      return;
    }
    this.waiting.delete(id);
    resolve(at);
  }
}

/** Rejects if `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Chains run before each measured phase, so no figure includes a cold start. */
const CHAIN_WARMUP = 20;

/** A job queue measured with 3-job chains (graphile-worker, pg-boss): how to drive it. */
export interface ChainQueue {
  system: string;
  version: string;
  db: BenchDb;
  /** Chains end through this (the queue's last job calls `ends.end(id)`). */
  ends: ChainEnds;
  /** Starts the queue's workers. */
  start(): Promise<void>;
  /** Adds the first job of chain `id`. */
  addFirst(id: string): Promise<void>;
  /** Stops the workers and closes every connection; safe to call when stopped. */
  stop(): Promise<void>;
  /** What the throughput and latency notes say about the setup. */
  describe: { add: string; setup: string; end: string };
  throughputTimeoutMs: number;
}

/**
 * The queue anchors' figures: throughput of `n` chains whose first jobs are all added at once (from
 * the first add to the last chain end), then, after a VACUUM (ANALYZE), sequential chains measured by
 * measureSequential (latency, commits and WAL flushes per chain). Each start is warmed up by WARMUP
 * chains. The caller creates and drops the database and stops the queue in the end.
 */
export async function measureChains(queue: ChainQueue, options: { n: number; seq: number }): Promise<AnchorResult[]> {
  const { system, version, ends } = queue;
  const { n, seq } = options;
  const oneChain = async (id: string): Promise<number> => {
    const t = performance.now();
    const end = ends.expect(id);
    await queue.addFirst(id);
    return (await withTimeout(end, 30_000, `${system} chain ${id}`)) - t;
  };
  const startWarm = async (tag: string) => {
    await queue.start();
    for (let i = 0; i < CHAIN_WARMUP; i++) await oneChain(`${tag}-warm-${i}`);
  };
  const results: AnchorResult[] = [];

  await startWarm('a');
  const ids = Array.from({ length: n }, (_, i) => `tp-${i}`);
  const endPromises = ids.map((id) => ends.expect(id));
  const t0 = performance.now();
  await Promise.all(ids.map((id) => queue.addFirst(id)));
  const addedMs = performance.now() - t0;
  const endTimes = await withTimeout(Promise.all(endPromises), queue.throughputTimeoutMs, `${system} throughput`);
  const elapsed = Math.max(...endTimes) - t0;
  results.push({
    system,
    version,
    figure: 'throughput_1',
    value: round(n / (elapsed / 1000), 1),
    unit: 'chains/s',
    notes: `${n} 3-job chains, first jobs added by ${n} concurrent ${queue.describe.add} calls (${round(addedMs / 1000, 2)} s); ${queue.describe.setup}; ${round(elapsed / 1000, 2)} s to the last chain end`,
  });
  await queue.stop();

  await vacuumAnalyze(queue.db.url);
  let phase = 0;
  const sequential = await measureSequential(
    {
      start: () => startWarm(`p${++phase}`),
      run: async (count) => {
        const latencies: number[] = [];
        for (let i = 0; i < count; i++) latencies.push(await oneChain(`p${phase}-seq-${i}`));
        return latencies;
      },
      stop: () => queue.stop(),
    },
    { system, version, dbName: queue.db.name, seq, unit: 'chain' },
  );
  const latNote = `${seq} sequential chains (each start warmed up by ${CHAIN_WARMUP} chains): ${queue.describe.add} of the first job → ${queue.describe.end}; ${queue.describe.setup}`;
  results.push(
    { system, version, figure: 'latency_median', value: round(percentile(sequential.latencies, 50)), unit: 'ms', notes: latNote },
    { system, version, figure: 'latency_p99', value: round(percentile(sequential.latencies, 99)), unit: 'ms', notes: latNote },
    ...sequential.results,
  );
  if (ends.unexpected > 0) throw new Error(`${system} anchor: ${ends.unexpected} chains ended twice or unexpectedly`);
  return results;
}
