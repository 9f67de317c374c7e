/**
 * Review of the metrics triggers (migration 016, lib/db/functions/metrics.sql) under bulk statements
 * made straight in SQL, as an app's own maintenance or a bulk tool would: inserts of thousands, a bulk
 * status change, an upsert that updates some rows and inserts others, a bulk delete, statements on
 * several connections at once. After each, the status counts must equal a count of the runs, and the
 * per-minute totals must count each run that ended once.
 */
import { describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { compactMetrics } from '../../lib/metrics/reads.js';
import { databasePerFile, eventually } from '../helpers/flow.js';

const file = databasePerFile('metricsreview');

async function countsMatch(flow: DurableFlow): Promise<void> {
  const schema = flow.tables.schema;
  const { rows: kept } = await flow.pool.query<{ workflow_name: string; status: string; runs: string }>(
    `SELECT workflow_name, status, sum(runs)::text AS runs FROM "${schema}".durable_flow_run_counts GROUP BY 1, 2 HAVING sum(runs) <> 0 ORDER BY 1, 2`);
  const { rows: actual } = await flow.pool.query<{ workflow_name: string; status: string; runs: string }>(
    `SELECT workflow_name, status, count(*)::text AS runs FROM ${flow.tables.runs} GROUP BY 1, 2 ORDER BY 1, 2`);
  expect(kept).toEqual(actual);
}

async function totals(flow: DurableFlow, workflow: string) {
  const { rows } = await flow.pool.query<{ started: string; completed: string; failed: string; cancelled: string }>(
    `SELECT coalesce(sum(started), 0)::text AS started, coalesce(sum(completed), 0)::text AS completed, coalesce(sum(failed), 0)::text AS failed,
            coalesce(sum(cancelled), 0)::text AS cancelled FROM "${flow.tables.schema}".durable_flow_metric_minutes WHERE workflow_name = $1`, [workflow]);
  return { started: Number(rows[0]!.started), completed: Number(rows[0]!.completed), failed: Number(rows[0]!.failed), cancelled: Number(rows[0]!.cancelled) };
}

describe('the metrics triggers under bulk statements', () => {
  it('keep the status counts equal to a count of the runs and the totals exact through bulk inserts, updates, upserts and deletes', async () => {
    const flow = file.ctx.flow();
    await flow.migrate();
    const runs = flow.tables.runs;
    const w = 'bulk-a';
    await flow.pool.query(
      `INSERT INTO ${runs} (run_id, workflow_name, status, input, wake_at, created_at, updated_at)
       SELECT 'a-' || g, $1, 'enqueued', '{}', now(), now(), now() FROM generate_series(1, 5000) g`, [w]);
    await countsMatch(flow);
    // A bulk claim-like change: 3,000 begin.
    await flow.pool.query(`UPDATE ${runs} SET status = 'running', started_at = now() WHERE run_id IN (SELECT 'a-' || g FROM generate_series(1, 3000) g)`);
    await countsMatch(flow);
    expect((await totals(flow, w)).started).toBe(3000);
    // A bulk cancel of 5,000 (the 2,000 not begun among them), and a statement that changes no status.
    await flow.pool.query(`UPDATE ${runs} SET status = 'cancelled', cancelled_at = now(), wake_at = NULL WHERE workflow_name = $1`, [w]);
    await flow.pool.query(`UPDATE ${runs} SET updated_at = now() WHERE workflow_name = $1`, [w]);
    await countsMatch(flow);
    expect(await totals(flow, w)).toEqual({ started: 3000, completed: 0, failed: 0, cancelled: 5000 });
    // An upsert: 1,000 rows exist (their status changes), 1,000 are new.
    await flow.pool.query(
      `INSERT INTO ${runs} (run_id, workflow_name, status, input, created_at, updated_at)
       SELECT 'a-' || g, $1, 'completed', '{}', now(), now() FROM generate_series(4001, 6000) g
       ON CONFLICT (run_id) DO UPDATE SET status = 'failed', failed_at = now()`, [w]);
    await countsMatch(flow);
    expect(await totals(flow, w)).toEqual({ started: 3000, completed: 0, failed: 1000, cancelled: 5000 });
    // Several connections at once, each its own shard, then a fold.
    await Promise.all([0, 1, 2, 3].map((k) => flow.pool.query(
      `UPDATE ${runs} SET status = 'completed', completed_at = now() WHERE workflow_name = $1 AND status = 'cancelled' AND (substr(run_id, 3)::int % 4) = $2`, [w, k])));
    await countsMatch(flow);
    await compactMetrics({ select: async (sql, bind) => (await flow.pool.query(sql, bind as unknown[])).rows, tables: flow.tables } as Parameters<typeof compactMetrics>[0], 0);
    await countsMatch(flow);
    // The 4,000 still cancelled (the upsert failed 1,000 of them) completed; the 1,000 inserted completed never ended here.
    expect(await totals(flow, w)).toEqual({ started: 3000, completed: 4000, failed: 1000, cancelled: 5000 });
    // Retention-like: delete thousands.
    await flow.pool.query(`DELETE FROM ${runs} WHERE workflow_name = $1 AND status = 'completed'`, [w]);
    await countsMatch(flow);
    // A reset: TRUNCATE fires no row or DELETE trigger; the counts are emptied with the runs, the history kept.
    expect((await flow.pool.query(`SELECT count(*)::int AS n FROM ${runs}`)).rows[0].n).toBeGreaterThan(0);
    await flow.pool.query(`TRUNCATE ${runs} CASCADE`);
    await countsMatch(flow);
    expect((await flow.pool.query(`SELECT count(*)::int AS n FROM "${flow.tables.schema}".durable_flow_run_counts`)).rows[0].n).toBe(0);
    expect(await totals(flow, w)).toEqual({ started: 3000, completed: 4000, failed: 1000, cancelled: 5000 });
    await flow.pool.query(
      `INSERT INTO ${runs} (run_id, workflow_name, status, input, created_at, updated_at) SELECT 'b-' || g, $1, 'enqueued', '{}', now(), now() FROM generate_series(1, 10) g`, [w]);
    await countsMatch(flow);
  });

  it('stay exact when a fold deletes the rows a statement is about to add to: waited for (READ COMMITTED), or since the snapshot (REPEATABLE READ)', async () => {
    const flow = file.ctx.flow();
    await flow.migrate();
    const runs = flow.tables.runs;
    const compact = `SELECT "${flow.tables.schema}".durable_flow_metrics_compact(now(), now() - interval '25 hours')`;
    const writer = await flow.pool.connect();
    const folder = await flow.pool.connect();
    try {
      const w = 'fold-race';
      await writer.query(`INSERT INTO ${runs} (run_id, workflow_name, status, input, wake_at) SELECT 'f-' || g, $1, 'enqueued', '{}', now() FROM generate_series(1, 10) g`, [w]);
      // The writer's shard rows exist; a fold locks and deletes them while the writer's UPDATE adds to them.
      await folder.query('BEGIN');
      await folder.query(compact);
      const pid = (await writer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const update = writer.query(`UPDATE ${runs} SET status = 'running', started_at = now() WHERE run_id IN ('f-1', 'f-2')`);
      await eventually(async () => (await flow.pool.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [pid])).rows[0]?.wait_event_type === 'Lock');
      await folder.query('COMMIT');
      await update;
      await countsMatch(flow);
      // A caller's REPEATABLE READ transaction whose snapshot is older than a fold of its shard's rows.
      await writer.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await writer.query(`SELECT count(*) FROM ${runs}`);
      expect((await folder.query<{ n: number }>(`${compact} AS n`)).rows[0]!.n).toBeGreaterThan(0);
      await writer.query(`UPDATE ${runs} SET status = 'completed', completed_at = now() WHERE run_id IN ('f-1', 'f-3')`);
      await writer.query(`INSERT INTO ${runs} (run_id, workflow_name, status, input, wake_at) VALUES ('f-11', $1, 'enqueued', '{}', now())`, [w]);
      await writer.query('COMMIT');
      await countsMatch(flow);
      expect(await totals(flow, w)).toEqual({ started: 2, completed: 2, failed: 0, cancelled: 0 });
    } finally {
      writer.release();
      folder.release();
    }
  });
});

