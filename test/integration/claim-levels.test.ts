/**
 * The claim reads due runs one priority level at a time, in wake order (migration 018,
 * lib/db/functions/claim.sql): the order is (priority, wake_at, id) across levels, sleeping runs of a
 * better priority and runs pinned to this worker's version included, and a claim reads about as many
 * index entries as it leases, whatever the size of the due backlog (read in the claim's own
 * transaction: pg_stat_get_xact_tuples_returned).
 */
import { describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { claimRunsSql } from '../../lib/db/sql/claimRuns.js';
import { databasePerFile } from '../helpers/flow.js';

const file = databasePerFile('claimlevels');
let n = 0;

async function fresh(): Promise<{ flow: DurableFlow; name: string }> {
  const flow = file.ctx.flow();
  const name = `levels-${++n}`;
  flow.workflow(name, async () => undefined);
  await flow.migrate();
  // Each test's runs alone: a claim passes over the due runs of other workflows at its level (a filter).
  await flow.pool.query(`TRUNCATE ${flow.tables.runs} CASCADE`);
  return { flow, name };
}

/** Inserts `count` runs of `workflow` at `priority`, waking `wake` (SQL), with run ids `<workflow>:<tag>-<i>`. */
async function insert(
  flow: DurableFlow, workflow: string, tag: string, count: number, priority: number, wake: string,
  extra: { pinned?: string; status?: string; keyed?: boolean } = {},
) {
  await flow.pool.query(
    `INSERT INTO ${flow.tables.runs} (run_id, workflow_name, status, input, wake_at, priority, queue_name, pinned_version,
       concurrency_key, concurrency_limit, concurrency_waiting, created_at, updated_at)
     SELECT $2 || ':' || $1 || '-' || g, $2, $5, '{}', ${wake}, $3, 'default', $4,
       CASE WHEN $7 THEN $2 || ':' || $1 || '-' || g END, CASE WHEN $7 THEN 1 END, $7 AND ${wake} IS NULL, now(), now()
     FROM generate_series(1, $6) g`,
    [tag, workflow, priority, extra.pinned ?? null, extra.status ?? 'enqueued', count, extra.keyed === true],
  );
}

/** One claim of up to `limit` runs, in a transaction rolled back after; the runs leased and the index entries read. */
async function claim(flow: DurableFlow, workflow: string, limit: number, version = flow.version) {
  const client = await flow.pool.connect();
  try {
    await client.query('BEGIN');
    // Index entries returned in this backend since its last report of statistics: read before and
    // after the claim, in one transaction (nothing is reported in between).
    const entries = async () =>
      (await client.query<{ detail: Record<string, number> }>(
        `SELECT json_object_agg(indexrelname, pg_stat_get_xact_tuples_returned(indexrelid)) AS detail
         FROM pg_stat_user_indexes WHERE relname = 'durable_flow_workflow_runs'`,
      )).rows[0]!.detail;
    const before = await entries();
    const { rows } = await client.query(claimRunsSql(flow.tables), [['default'], [workflow], limit, 'test', 60_000, 0, version]);
    const after = await entries();
    const read = Object.fromEntries(Object.keys(after).map((index) => [index, after[index]! - (before[index] ?? 0)]).filter(([, n]) => Number(n) > 0));
    if (process.env.CLAIM_DETAIL) console.log(JSON.stringify(read));
    const due = ['durable_flow_runs_due', 'durable_flow_runs_due_unpinned', 'durable_flow_runs_due_pinned', 'durable_flow_runs_due_keyed', 'durable_flow_runs_due_throttled'].reduce((sum, index) => sum + Number(read[index] ?? 0), 0);
    await client.query('ROLLBACK');
    // The set leased is what the order decides (the answer lists them by id).
    return { runIds: (rows[0].runs as { run_id: string }[]).map((r) => r.run_id.slice(workflow.length + 1)).sort(), entries: due };
  } finally {
    client.release();
  }
}

describe('the claim, one priority level at a time', () => {
  it('takes runs in (priority, wake_at, id) order across levels, past sleeping runs of a better priority', async () => {
    const { flow, name } = await fresh();
    await insert(flow, name, 'sleeper', 200, -5, `now() + interval '1 day'`, { status: 'sleeping' });
    await insert(flow, name, 'late', 3, 3, `now() - interval '1 minute' + g * interval '1 second'`);
    await insert(flow, name, 'first', 3, 0, `now() - interval '1 minute' + g * interval '1 second'`);
    await insert(flow, name, 'urgent', 2, -1, `now() - interval '10 seconds' + g * interval '1 second'`);
    expect((await claim(flow, name, 1)).runIds).toEqual(['urgent-1']);
    expect((await claim(flow, name, 4)).runIds).toEqual(['first-1', 'first-2', 'urgent-1', 'urgent-2']);
    expect((await claim(flow, name, 20)).runIds).toEqual(['first-1', 'first-2', 'first-3', 'late-1', 'late-2', 'late-3', 'urgent-1', 'urgent-2']);
  });

  it("merges the runs pinned to the worker's version into each level in wake order; never those pinned to another", async () => {
    const { flow, name } = await fresh();
    await insert(flow, name, 'other', 5, -9, `now() - interval '1 hour'`, { pinned: 'another-version' });
    await insert(flow, name, 'plain', 2, 0, `now() - interval '30 seconds' + g * interval '10 seconds'`);
    await insert(flow, name, 'mine', 2, 0, `now() - interval '35 seconds' + g * interval '10 seconds'`, { pinned: flow.version });
    await insert(flow, name, 'mine-low', 1, 2, `now() - interval '1 hour'`, { pinned: flow.version });
    // Wake times: mine-1 -25 s, plain-1 -20 s, mine-2 -15 s, plain-2 -10 s; then priority 2.
    expect((await claim(flow, name, 10)).runIds).toEqual(['mine-1', 'mine-2', 'mine-low-1', 'plain-1', 'plain-2']);
    expect((await claim(flow, name, 3)).runIds).toEqual(['mine-1', 'mine-2', 'plain-1']);
    expect((await claim(flow, name, 10, 'another-version')).runIds).toEqual(['other-1', 'other-2', 'other-3', 'other-4', 'other-5', 'plain-1', 'plain-2']);
  });

  it('reads tens of index entries, not the backlog, with 20,000 due runs queued (and 20,000 sleeping at a better priority)', async () => {
    const { flow, name } = await fresh();
    await insert(flow, name, 'sleeper', 20_000, -1, `now() + interval '1 day'`, { status: 'sleeping' });
    await insert(flow, name, 'due', 20_000, 0, `now() - interval '1 hour' + g * interval '1 millisecond'`);
    await flow.pool.query(`VACUUM ANALYZE ${flow.tables.runs}`);
    const one = await claim(flow, name, 1);
    expect(one.runIds).toEqual(['due-1']);
    const ten = await claim(flow, name, 10);
    expect(ten.runIds).toHaveLength(10);
    // A level probe and a range scan per level, the next wake time, the checks for expired and keyed
    // runs: tens of entries, not the 20,000 due (nor the 20,000 sleeping) a sort of the backlog reads.
    expect(one.entries).toBeLessThan(100);
    expect(ten.entries).toBeLessThan(100);
  });

  it('the keyed path alike: a claim reads tens of entries with 20,000 keyed runs due and 20,000 parked for their slot at a better priority', async () => {
    const { flow, name } = await fresh();
    await insert(flow, name, 'parked', 20_000, -1, 'NULL', { keyed: true });
    await insert(flow, name, 'keyed', 20_000, 0, `now() - interval '1 hour' + g * interval '1 millisecond'`, { keyed: true });
    await flow.pool.query(`VACUUM ANALYZE ${flow.tables.runs}`);
    const one = await claim(flow, name, 1);
    expect(one.runIds).toEqual(['keyed-1']);
    const ten = await claim(flow, name, 10);
    expect(ten.runIds).toEqual(Array.from({ length: 10 }, (_, i) => `keyed-${i + 1}`).sort());
    expect(one.entries).toBeLessThan(100);
    expect(ten.entries).toBeLessThan(100);
  });
});
