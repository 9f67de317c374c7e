import type pg from 'pg';
import { nowSql } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import { compactMetrics } from '../metrics/reads.js';
import type { ResolvedRetention } from './options.js';

/** What a prune removed (or, dry, would remove). */
export interface PruneResult {
  runs: number;
  events: number;
  /** Audit entries (finished bulk operations go with them, uncounted). */
  audit: number;
}

/** Runs (with their steps, waits, logs, cancel triggers and signals) or events deleted per transaction. */
export const PRUNE_BATCH = 500;

/**
 * 'dfpr' as a 32-bit integer: the first key of the prune lock (second key: hashtext of the schema), a
 * session lock held by the one process pruning a schema at a time.
 */
export const PRUNE_LOCK_NAMESPACE = 0x64667072;

const TERMINAL = `('completed', 'failed', 'cancelled')`;

/** Runs a batch reads (by id) to find its prunable ones: a pass never reads the whole table at once. */
export const PRUNE_SCAN = 5000;

/**
 * The runs a prune may delete: finished (completed, failed or cancelled) longer ago than their
 * retention, on the flow's clock, and not the child of a run that has not finished (its parent may
 * still read it). Ids are assigned in creation order, so a batch walks the primary key from the oldest
 * run (`$5`: the id the previous batch reached, NULL for the first), PRUNE_SCAN runs at a time (`$6`),
 * and the pass stops at the first batch that reached a run created after the latest cutoff (of the
 * shortest age): no later run can qualify, but for one inserted late by a long transaction (a created_at
 * older than its id's neighbours), which the next pass takes. `$1` clock offset, `$2`–`$4` the ages in
 * ms of completed, failed and cancelled runs (NULL: kept for ever), `$7` the limit. Without `scan`
 * (a dry run's count) every run is read.
 */
function prunableRunsSql(t: Tables, lock: boolean, scan = true): string {
  const now = nowSql('$1');
  const before = (ms: string) => `${now} - ${ms} * interval '1 millisecond'`;
  const from = scan ? `(SELECT * FROM ${t.runs} WHERE ($5::bigint IS NULL OR id > $5::bigint) ORDER BY id LIMIT $6) r` : `${t.runs} r`;
  return `
SELECT r.id
FROM ${from}
WHERE r.created_at < ${before('least($2::float8, $3::float8, $4::float8)')}
  AND ((r.status = 'completed' AND r.completed_at < ${before('$2::float8')})
    OR (r.status = 'failed' AND r.failed_at < ${before('$3::float8')})
    OR (r.status = 'cancelled' AND r.cancelled_at < ${before('$4::float8')}))
  AND (r.parent_run_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM ${t.runs} p WHERE p.run_id = r.parent_run_id AND p.status NOT IN ${TERMINAL}))
${scan ? 'ORDER BY r.id LIMIT $7' : ''}
${lock ? 'FOR UPDATE OF r SKIP LOCKED' : ''}`;
}

/**
 * One batch: the prunable runs, locked (SKIP LOCKED: a run someone else holds, for a retry say, waits
 * for the next pass) and deleted with everything that belongs to them, children tables first (no
 * cascade does the work row by row). Returns how many, and where the scan got to.
 */
function pruneRunsSql(t: Tables): string {
  return `
WITH doomed AS (${prunableRunsSql(t, true)}),
logs AS (DELETE FROM ${t.logs} WHERE workflow_run_id IN (SELECT id FROM doomed)),
waits AS (DELETE FROM ${t.waits} WHERE workflow_run_id IN (SELECT id FROM doomed)),
triggers AS (DELETE FROM ${t.cancelTriggers} WHERE workflow_run_id IN (SELECT id FROM doomed)),
signals AS (DELETE FROM ${t.signals} WHERE workflow_run_id IN (SELECT id FROM doomed)),
steps AS (DELETE FROM ${t.steps} WHERE workflow_run_id IN (SELECT id FROM doomed)),
gone AS (DELETE FROM ${t.runs} WHERE id IN (SELECT id FROM doomed) RETURNING id),
scanned AS (SELECT id, created_at FROM ${t.runs} WHERE ($5::bigint IS NULL OR id > $5::bigint) ORDER BY id LIMIT $6)
SELECT (SELECT count(*) FROM gone)::int AS n,
       (SELECT max(id) FROM scanned)::text AS last_id,
       (SELECT max(id) FROM doomed)::text AS last_doomed,
       (SELECT count(*) FROM scanned)::int < $6
         OR EXISTS (SELECT 1 FROM scanned WHERE created_at >= ${nowSql('$1')} - least($2::float8, $3::float8, $4::float8) * interval '1 millisecond') AS done`;
}

/**
 * The events a prune may delete: stored longer ago than `$2` ms on the flow's clock (`$1` the offset),
 * matched by no wait of a run that is kept (its timeline shows the event), and of a name no pending
 * wait waits for (a wait that accepts past events might still match it). `$3` the limit.
 */
function prunableEventsSql(t: Tables, lock: boolean): string {
  return `
SELECT e.id FROM ${t.events} e
WHERE e.occurred_at < ${nowSql('$1')} - $2::float8 * interval '1 millisecond'
  AND NOT EXISTS (SELECT 1 FROM ${t.waits} w WHERE w.workflow_event_id = e.id)
  AND NOT EXISTS (SELECT 1 FROM ${t.waits} w WHERE w.event_name = e.name AND w.status = 'pending')
ORDER BY e.occurred_at, e.id
LIMIT $3
${lock ? 'FOR UPDATE OF e SKIP LOCKED' : ''}`;
}

/** Audit entries written longer ago than `$2` ms on the flow's clock (`$1` the offset), oldest first; `$3` the limit. */
function prunableAuditSql(t: Tables, lock: boolean): string {
  return `
SELECT a.id FROM ${t.audit} a WHERE a.at < ${nowSql('$1')} - $2::float8 * interval '1 millisecond'
ORDER BY a.at, a.id LIMIT $3 ${lock ? 'FOR UPDATE SKIP LOCKED' : ''}`;
}

/** A batch of old audit entries, and the bulk operations finished before the same cutoff. */
function pruneAuditSql(t: Tables): string {
  return `
WITH doomed AS (${prunableAuditSql(t, true)}),
gone AS (DELETE FROM ${t.audit} WHERE id IN (SELECT id FROM doomed) RETURNING id),
ops AS (DELETE FROM ${t.operations} WHERE status <> 'running' AND completed_at < ${nowSql('$1')} - $2::float8 * interval '1 millisecond')
SELECT count(*)::int AS n FROM gone`;
}

function pruneEventsSql(t: Tables): string {
  return `
WITH doomed AS (${prunableEventsSql(t, true)}),
gone AS (DELETE FROM ${t.events} WHERE id IN (SELECT id FROM doomed) RETURNING id)
SELECT count(*)::int AS n FROM gone`;
}

export interface PruneOptions {
  retention: ResolvedRetention;
  offsetMs: number;
  /** Count what would go, delete nothing. */
  dryRun?: boolean;
  /** Stop between batches when this says so (a worker stopping). */
  stopped?: () => boolean;
  /** Between batches, so a prune of a million runs leaves the database room for the work. */
  pauseMs?: number;
}

/**
 * Prunes on `client` (a connection of the caller's, outside any transaction): each batch is one
 * transaction of its own, so a prune interrupted at any point (a SIGKILL) leaves whole runs, and the
 * next prune goes on where it stopped. Runs first, then events (an event a pruned run's wait matched
 * becomes prunable).
 */
export async function pruneOn(client: pg.ClientBase, tables: Tables, options: PruneOptions): Promise<PruneResult> {
  const { retention, offsetMs } = options;
  // NULL (kept for ever) matches no run in the statements.
  const ages = [retention.completedMs, retention.failedMs, retention.cancelledMs];
  const anyRuns = ages.some((ms) => ms !== null);
  const result: PruneResult = { runs: 0, events: 0, audit: 0 };
  const pause = () => (options.pauseMs ? new Promise((resolve) => setTimeout(resolve, options.pauseMs)) : undefined);
  if (options.dryRun) {
    if (anyRuns) {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (${prunableRunsSql(tables, false, false)}) AS candidates`,
        [offsetMs, ...ages],
      );
      result.runs = rows[0]!.n;
    }
    if (retention.eventsMs !== null) {
      const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${prunableEventsSql(tables, false)}) AS candidates`, [
        offsetMs,
        retention.eventsMs,
        null,
      ]);
      result.events = rows[0]!.n;
    }
    if (retention.auditMs !== null) {
      const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${prunableAuditSql(tables, false)}) AS candidates`, [
        offsetMs,
        retention.auditMs,
        null,
      ]);
      result.audit = rows[0]!.n;
    }
    return result;
  }
  if (anyRuns) {
    let after: string | null = null;
    for (;;) {
      if (options.stopped?.()) return result;
      const { rows } = await client.query<{ n: number; last_id: string | null; last_doomed: string | null; done: boolean }>(pruneRunsSql(tables), [
        offsetMs,
        ...ages,
        after,
        PRUNE_SCAN,
        PRUNE_BATCH,
      ]);
      const row: { n: number; last_id: string | null; last_doomed: string | null; done: boolean } = rows[0]!;
      const { n, last_id: scanned, last_doomed: doomed, done } = row;
      result.runs += n;
      // A batch that filled its limit may have left prunable runs in its scan: the next reads on from its last one.
      const full: boolean = n >= PRUNE_BATCH && doomed !== null;
      if (!full && (done || scanned === null)) break;
      after = full ? doomed : scanned;
      await pause();
    }
  }
  if (retention.eventsMs !== null) {
    for (;;) {
      if (options.stopped?.()) return result;
      const { rows } = await client.query<{ n: number }>(pruneEventsSql(tables), [offsetMs, retention.eventsMs, PRUNE_BATCH]);
      result.events += rows[0]!.n;
      if (rows[0]!.n < PRUNE_BATCH) break;
      await pause();
    }
  }
  if (retention.auditMs !== null) {
    for (;;) {
      if (options.stopped?.()) return result;
      const { rows } = await client.query<{ n: number }>(pruneAuditSql(tables), [offsetMs, retention.auditMs, PRUNE_BATCH]);
      result.audit += rows[0]!.n;
      if (rows[0]!.n < PRUNE_BATCH) break;
      await pause();
    }
  }
  // The metrics' rollups (migration 016): shards folded, minutes past a day folded into the totals.
  await compactMetrics({ tables, select: async (sql, bind) => (await client.query(sql, bind)).rows }, offsetMs);
  return result;
}

/**
 * Prunes while holding the schema's prune lock (a session lock on one connection of `pool`): one
 * process at a time. `wait: false` gives up at once when another process holds it (null then).
 */
export async function pruneLocked(pool: pg.Pool, tables: Tables, options: PruneOptions & { wait: boolean }): Promise<PruneResult | null> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    if (options.dryRun) return await pruneOn(client, tables, options);
    const { rows } = await client.query<{ locked: boolean }>(
      options.wait
        ? 'SELECT true AS locked FROM pg_advisory_lock($1, hashtext($2))'
        : 'SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked',
      [PRUNE_LOCK_NAMESPACE, tables.schema],
    );
    if (!rows[0]!.locked) return null;
    try {
      return await pruneOn(client, tables, options);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [PRUNE_LOCK_NAMESPACE, tables.schema]);
    }
  } catch (error) {
    broken = error as Error;
    throw error;
  } finally {
    // A connection whose statement failed may be half-open or still hold the lock: never reuse it.
    client.release(broken);
  }
}
