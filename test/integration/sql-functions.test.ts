/**
 * The SQL functions of lib/db/functions/, called directly on a migrated database (no worker, no
 * executor): what each writes, which rows it leaves alone, and the locks it relies on.
 */
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LOCK_NAMESPACE } from '../../lib/db/tables.js';
import { createDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createDatabase('sqlfn');
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});
beforeEach(async () => {
  await pool.query('TRUNCATE durable_flow_workflow_runs, durable_flow_workflow_events CASCADE');
});

interface RunRow {
  id: string;
  run_id: string;
  status: string;
  lease_owner: string | null;
  lease_epoch: string;
  resume_snapshot: string | null;
}

async function insertRun(fields: Record<string, unknown> = {}): Promise<RunRow> {
  const row: Record<string, unknown> = {
    run_id: `run-${Math.random().toString(36).slice(2)}`,
    workflow_name: 'w',
    status: 'enqueued',
    wake_at: new Date(Date.now() - 60_000),
    ...fields,
  };
  const keys = Object.keys(row);
  const { rows } = await pool.query<RunRow>(
    `INSERT INTO durable_flow_workflow_runs (${keys.join(', ')}) VALUES (${keys.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING *`,
    Object.values(row),
  );
  return rows[0]!;
}

async function run(id: string): Promise<RunRow & Record<string, unknown>> {
  const { rows } = await pool.query('SELECT * FROM durable_flow_workflow_runs WHERE id = $1', [id]);
  return rows[0];
}

/** A run suspended on a wait: its wait step and its pending wait. */
async function waitingRun(wait: { event?: string; match?: object; timeoutAt?: Date; watchedRunId?: string }) {
  const r = await insertRun({ status: 'waiting', wake_at: null, started_at: new Date() });
  const { rows: steps } = await pool.query<{ id: string }>(
    `INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, kind, status) VALUES ($1, 'wait', 'wait', 'waiting') RETURNING id`,
    [r.id],
  );
  const { rows: waits } = await pool.query<{ id: string }>(
    `INSERT INTO durable_flow_workflow_waits (workflow_run_id, workflow_step_id, event_name, match, timeout_at, watched_run_id)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
    [r.id, steps[0]!.id, wait.event ?? '', JSON.stringify(wait.match ?? {}), wait.timeoutAt ?? null, wait.watchedRunId ?? null],
  );
  return { run: r, stepId: steps[0]!.id, waitId: waits[0]!.id };
}

async function one<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T> {
  const { rows } = await pool.query(sql, params);
  return rows[0] as T;
}

const claimSql = `SELECT * FROM durable_flow_claim($1::text[], $2::text[], $3, $4, 30000, 0, NULL)`;

describe('durable_flow_claim', () => {
  it('leases the due runs of its queues and workflows only, and says when the next one is due (its lease expiry)', async () => {
    const due = await insertRun();
    const later = await insertRun({ wake_at: new Date(Date.now() + 3_600_000) });
    const otherQueue = await insertRun({ queue_name: 'other' });
    const otherWorkflow = await insertRun({ workflow_name: 'x' });
    const claim = await one<{ runs: { id: number; lease_epoch: number }[]; next_wake_ms: number; snapshot: string }>(claimSql, [
      ['default'],
      ['w'],
      10,
      'owner-a',
    ]);
    expect(claim.runs.map((r) => String(r.id))).toEqual([due.id]);
    expect(claim.runs[0]!.lease_epoch).toBe(1);
    // The next wake-up is the leased run's own lease expiry (its wake_at), 30 s on the claim's clock.
    expect(claim.next_wake_ms).toBe(30_000);
    const leased = await run(due.id);
    expect([leased.status, leased.lease_owner, leased.resume_snapshot]).toEqual(['running', 'owner-a', claim.snapshot]);
    for (const r of [later, otherQueue, otherWorkflow]) expect((await run(r.id)).status).toBe('enqueued');
  });

  it('SKIP LOCKED: a second claimer takes other runs while the first holds its own, never the same', async () => {
    for (let i = 0; i < 20; i++) await insertRun();
    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query('BEGIN');
      const first = (await a.query(claimSql, [['default'], ['w'], 10, 'owner-a'])).rows[0].runs as { id: number }[];
      // The first claim's transaction is still open (its rows locked): this returns only because it skips them.
      const second = (await b.query(claimSql, [['default'], ['w'], 20, 'owner-b'])).rows[0].runs as { id: number }[];
      await a.query('COMMIT');
      expect(first).toHaveLength(10);
      expect(second).toHaveLength(10);
      const ids = new Set([...first, ...second].map((r) => r.id));
      expect(ids.size).toBe(20);
      const owners = await pool.query(
        'SELECT lease_owner, count(*)::int AS n FROM durable_flow_workflow_runs GROUP BY 1 ORDER BY 1',
      );
      expect(owners.rows).toEqual([
        { lease_owner: 'owner-a', n: 10 },
        { lease_owner: 'owner-b', n: 10 },
      ]);
    } finally {
      a.release();
      b.release();
    }
  });
});

describe('durable_flow_lease', () => {
  it('keeps the mark of the execution after a clean stop, and the crashed execution’s after a crash', async () => {
    const r = await insertRun();
    const leaseSql = `SELECT * FROM durable_flow_lease(ARRAY[$1::bigint], $2, now(), now() + interval '1 minute', $3)`;
    const first = await one<{ runs: { id: number; replay: boolean }[]; replay: string[] }>(leaseSql, [r.id, 'owner-a', 'mark-1']);
    expect(first.runs.map((x) => String(x.id))).toEqual([r.id]);
    expect(first.replay).toEqual([]);
    expect(await run(r.id)).toMatchObject({
      lease_owner: 'owner-a',
      lease_epoch: '1',
      claim_count: 1,
      resume_snapshot: 'mark-1',
    });
    // Claimed again without a clean stop (claim_count is still 1): the first execution's mark stays.
    const second = await one<{ replay: string[] }>(leaseSql, [r.id, 'owner-b', 'mark-2']);
    expect(second.replay).toEqual([r.id]);
    expect(await run(r.id)).toMatchObject({
      lease_owner: 'owner-b',
      lease_epoch: '2',
      claim_count: 2,
      resume_snapshot: 'mark-1',
    });
    // After a clean stop (claim_count back to 0), the new execution's mark.
    await pool.query('UPDATE durable_flow_workflow_runs SET claim_count = 0 WHERE id = $1', [r.id]);
    await one(leaseSql, [r.id, 'owner-c', 'mark-3']);
    expect((await run(r.id)).resume_snapshot).toBe('mark-3');
  });
});

const notifySql = `SELECT * FROM durable_flow_notify($1, $2, $3::jsonb, 'test', $4, 0, NULL, 0, 0, '{}', '{}', NULL)`;

describe('durable_flow_notify', () => {
  it('matches a pending wait whose match the payload contains, not an expired one nor another match', async () => {
    const live = await waitingRun({ event: 'paid', match: { order: 1 } });
    const expired = await waitingRun({ event: 'paid', match: { order: 1 }, timeoutAt: new Date(Date.now() - 1000) });
    const other = await waitingRun({ event: 'paid', match: { order: 2 } });
    const result = await one<{ is_duplicate: boolean; is_conflict: boolean; matched_waits: number }>(notifySql, [
      'e1',
      'paid',
      JSON.stringify({ order: 1, total: 5 }),
      LOCK_NAMESPACE,
    ]);
    expect(result).toMatchObject({ is_duplicate: false, is_conflict: false, matched_waits: 1 });
    expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [live.waitId])).status).toBe('matched');
    expect(await one('SELECT status, result FROM durable_flow_workflow_steps WHERE id = $1', [live.stepId])).toEqual({
      status: 'succeeded',
      result: { order: 1, total: 5 },
    });
    expect((await run(live.run.id)).status).toBe('ready');
    for (const w of [expired, other]) {
      expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [w.waitId])).status).toBe('pending');
      expect((await run(w.run.id)).status).toBe('waiting');
    }
  });

  it('stores an event id once: the same again is a duplicate, another payload under it a conflict', async () => {
    const payload = JSON.stringify({ a: 1 });
    expect(await one(notifySql, ['id-1', 'n', payload, LOCK_NAMESPACE])).toMatchObject({
      is_duplicate: false,
      is_conflict: false,
    });
    expect(await one(notifySql, ['id-1', 'n', payload, LOCK_NAMESPACE])).toMatchObject({
      is_duplicate: true,
      is_conflict: false,
    });
    expect(await one(notifySql, ['id-1', 'n', JSON.stringify({ a: 2 }), LOCK_NAMESPACE])).toMatchObject({
      is_duplicate: true,
      is_conflict: true,
    });
    expect(await one(notifySql, ['id-1', 'm', payload, LOCK_NAMESPACE])).toMatchObject({ is_duplicate: true, is_conflict: true });
    expect((await one<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_events')).n).toBe(1);
  });

  it('answers the signature of the releases before versions too (an old web process during a rolling deploy)', async () => {
    const oldSignature = `SELECT * FROM durable_flow_notify($1, $2, $3::jsonb, 'test', $4, 0, NULL, 0, 0, '{}', '{}')`;
    expect(await one(oldSignature, ['id-old', 'n-old', JSON.stringify({ a: 1 }), LOCK_NAMESPACE])).toMatchObject({ is_duplicate: false, event_name: 'n-old' });
    expect(await one(oldSignature, ['id-old', 'n-old', JSON.stringify({ a: 1 }), LOCK_NAMESPACE])).toMatchObject({ is_duplicate: true });
  });
});

describe('durable_flow_cancel', () => {
  it('cancels unfinished runs with their children, fences their lease, cancels their waits and steps', async () => {
    const parent = await waitingRun({ event: 'never' });
    const child = await insertRun({
      status: 'running',
      parent_run_id: parent.run.run_id,
      lease_owner: 'owner-a',
      lease_epoch: 3,
    });
    const done = await insertRun({ status: 'completed', wake_at: null });
    const n = await one<{ n: number }>(`SELECT durable_flow_cancel($1::bigint[], 'because', 0) AS n`, [[parent.run.id, done.id]]);
    expect(n.n).toBe(2);
    expect(await run(parent.run.id)).toMatchObject({
      status: 'cancelled',
      wake_at: null,
      error: { class: 'RunCancelled', message: 'because' },
    });
    expect(await run(child.id)).toMatchObject({ status: 'cancelled', lease_owner: null, lease_epoch: '4' });
    expect((await run(done.id)).status).toBe('completed');
    expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [parent.waitId])).status).toBe('cancelled');
    expect((await one('SELECT status FROM durable_flow_workflow_steps WHERE id = $1', [parent.stepId])).status).toBe('cancelled');
  });
});

describe('durable_flow_runs_finished (the finish trigger)', () => {
  it('matches the waits watching a run that finishes, with its outcome, and wakes their runs', async () => {
    const child = await insertRun({ status: 'running', watched: true, run_id: 'child-1' });
    const watcher = await waitingRun({ watchedRunId: 'child-1' });
    const late = await waitingRun({ watchedRunId: 'child-1', timeoutAt: new Date(Date.now() - 60_000) });
    await pool.query(
      `UPDATE durable_flow_workflow_runs SET status = 'completed', output = '{"ok":true}', completed_at = now() WHERE id = $1`,
      [child.id],
    );
    expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [watcher.waitId])).status).toBe('matched');
    expect(await one('SELECT status, result FROM durable_flow_workflow_steps WHERE id = $1', [watcher.stepId])).toEqual({
      status: 'succeeded',
      result: { runId: 'child-1', workflow: 'w', status: 'completed', result: { ok: true } },
    });
    expect((await run(watcher.run.id)).status).toBe('ready');
    // A wait whose timeout passed before the finish is left to its timeout.
    expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [late.waitId])).status).toBe('pending');
  });

  it('does nothing for a run nobody watches (the flag is off), even if a wait names it', async () => {
    const child = await insertRun({ status: 'running', run_id: 'child-2' });
    const watcher = await waitingRun({ watchedRunId: 'child-2' });
    await pool.query(`UPDATE durable_flow_workflow_runs SET status = 'failed', failed_at = now() WHERE id = $1`, [child.id]);
    expect((await one('SELECT status FROM durable_flow_workflow_waits WHERE id = $1', [watcher.waitId])).status).toBe('pending');
    expect((await run(watcher.run.id)).status).toBe('waiting');
  });
});
