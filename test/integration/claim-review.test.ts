/**
 * Review of the claim (migration 018, lib/db/functions/claim.sql) against a reference model: every
 * combination of (concurrency_key, throttle_key, started_at, pinned_version, priority, wake_at) is
 * inserted, claims are repeated until none is left to take, and the runs leased must be exactly the
 * ones the model says are due for this worker, in (priority, wake_at, id) order; and the cost of a
 * claim with many distinct priority levels of runs that are not due.
 */
import { describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { claimRunsSql } from '../../lib/db/sql/claimRuns.js';
import { databasePerFile } from '../helpers/flow.js';

const file = databasePerFile('claimreview');
let n = 0;

async function fresh(): Promise<{ flow: DurableFlow; name: string }> {
  const flow = file.ctx.flow();
  const name = `review-${++n}`;
  flow.workflow(name, async () => undefined);
  await flow.migrate();
  await flow.pool.query(`TRUNCATE ${flow.tables.runs} CASCADE`);
  return { flow, name };
}

interface Combo {
  keyed: boolean; throttled: boolean; started: boolean; pinned: 'none' | 'mine' | 'other';
  priority: number; wake: 'past' | 'future' | 'none';
}

function combos(): Combo[] {
  const all: Combo[] = [];
  for (const keyed of [false, true]) for (const throttled of [false, true]) for (const started of [false, true])
    for (const pinned of ['none', 'mine', 'other'] as const) for (const priority of [-1, 0, 2])
      for (const wake of ['past', 'future', 'none'] as const) all.push({ keyed, throttled, started, pinned, priority, wake });
  return all;
}

/** The reference: a run is claimable by this worker when it is due and not pinned to another version. */
const claimable = (c: Combo) => c.wake === 'past' && c.pinned !== 'other';

/** One claim of up to `limit`, committed: the run ids leased and the next wake time it answered. */
async function claimOnce(flow: DurableFlow, name: string, limit: number, version = flow.version) {
  const { rows } = await flow.pool.query(claimRunsSql(flow.tables), [['default'], [name], limit, 'review', 60_000, 0, version]);
  return { ids: (rows[0].runs as { run_id: string }[]).map((r) => r.run_id), next: rows[0].next_wake_ms as number | null };
}

/** Claims until a claim takes nothing and does not ask to claim again now; the run ids in lease order. */
async function drain(flow: DurableFlow, name: string, limit: number): Promise<string[]> {
  const leased: string[] = [];
  for (let round = 0; round < 500; round++) {
    const { ids, next } = await claimOnce(flow, name, limit);
    leased.push(...ids);
    if (ids.length === 0 && next !== 0) return leased;
  }
  throw new Error('the claims never settled');
}

/** Every combination; with `deadlines`, each twice: once with a deadline that passed a minute ago (`expired`). */
async function insertCombos(flow: DurableFlow, name: string, deadlines = false): Promise<{ id: string; combo: Combo; wakeIndex: number; expired: boolean }[]> {
  const runs = combos().flatMap((combo, i) => (deadlines ? [false, true] : [false]).map((expired) => ({ id: `${name}:c${i}${expired ? 'x' : ''}`, combo, wakeIndex: i, expired })));
  for (const { id, combo, wakeIndex, expired } of runs) {
    const wake = combo.wake === 'past' ? `now() - interval '1 hour' + ${wakeIndex} * interval '1 second'`
      : combo.wake === 'future' ? `now() + interval '1 day'` : 'NULL';
    await flow.pool.query(
      `INSERT INTO ${flow.tables.runs} (run_id, workflow_name, status, input, wake_at, priority, queue_name, pinned_version,
         concurrency_key, concurrency_limit, throttle_key, throttle_limit, throttle_period_ms, started_at, deadline_at, created_at, updated_at)
       VALUES ($1, $2, $3, '{}', ${wake}, $4, 'default', $5, $6, $7, $8, $9, $10, $11, ${expired ? "now() - interval '1 minute'" : 'NULL'}, now(), now())`,
      [id, name, combo.started ? 'ready' : 'enqueued', combo.priority,
        combo.pinned === 'none' ? null : combo.pinned === 'mine' ? flow.version : 'another-version',
        combo.keyed ? `ck-${id}` : null, combo.keyed ? 1 : null,
        combo.throttled ? `tk-${id}` : null, combo.throttled ? 1 : null, combo.throttled ? 3_600_000 : null,
        combo.started ? new Date(Date.now() - 7_200_000) : null],
    );
  }
  return runs;
}

describe('the claim against a reference model', () => {
  for (const limit of [1, 5, 100]) {
    it(`leases every due run of every combination of key, throttle, start, pin, priority and wake, and nothing else (claims of ${limit})`, async () => {
      const { flow, name } = await fresh();
      const runs = await insertCombos(flow, name);
      const expected = runs.filter((r) => claimable(r.combo)).map((r) => r.id).sort();
      expect(expected).toHaveLength(48);
      const leased = await drain(flow, name, limit);
      expect([...leased].sort()).toEqual(expected);
      expect(new Set(leased).size).toBe(leased.length);
    });
  }

  it('ends every run past its deadline (any pin, key, wake) without leasing it, and still leases every other due run', async () => {
    const { flow, name } = await fresh();
    const runs = await insertCombos(flow, name, true);
    const leased = await drain(flow, name, 7);
    const expected = runs.filter((r) => !r.expired && claimable(r.combo)).map((r) => r.id).sort();
    expect([...leased].sort()).toEqual(expected);
    const { rows } = await flow.pool.query<{ run_id: string; status: string }>(
      `SELECT run_id, status FROM ${flow.tables.runs} WHERE run_id = ANY($1) ORDER BY run_id`, [runs.filter((r) => r.expired).map((r) => r.id)]);
    expect(rows).toHaveLength(runs.length / 2);
    expect(rows.filter((r) => !['failed', 'cancelled'].includes(r.status))).toEqual([]);
  });

  it('a paused workflow: no run leased and its due runs set aside; once resumed, every due run leased again, none lost', async () => {
    const { flow, name } = await fresh();
    const runs = await insertCombos(flow, name);
    await flow.pauseWorkflow(name);
    expect(await drain(flow, name, 5)).toEqual([]);
    const held = await flow.pool.query(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE held_wake_at IS NOT NULL`);
    expect(held.rows[0].n).toBeGreaterThan(0);
    await flow.resumeWorkflow(name);
    const leased = await drain(flow, name, 5);
    expect([...leased].sort()).toEqual(runs.filter((r) => claimable(r.combo)).map((r) => r.id).sort());
  });

  it('claims of one take the due runs in (priority, wake_at, id) order, keyed, throttled and unkeyed alike', async () => {
    const { flow, name } = await fresh();
    const runs = await insertCombos(flow, name);
    const expected = runs.filter((r) => claimable(r.combo))
      .sort((a, b) => a.combo.priority - b.combo.priority || a.wakeIndex - b.wakeIndex).map((r) => r.id);
    const got = await drain(flow, name, 1);
    if (process.env.REVIEW_DETAIL) console.log(got.map((id) => { const r = runs.find((x) => x.id === id)!; return `${id.split(":")[1]}:p${r.combo.priority}${r.combo.keyed ? "K" : ""}${r.combo.throttled ? "T" : ""}${r.combo.started ? "S" : ""}${r.combo.pinned[0]}`; }).join(" "));
    expect(got).toEqual(expected);
  });
});

/** One claim in a transaction rolled back after: the run ids leased and the due-index entries it read. */
async function claimReading(flow: DurableFlow, name: string, limit: number) {
  const client = await flow.pool.connect();
  try {
    await client.query('BEGIN');
    const entries = async () =>
      Number((await client.query<{ n: string }>(
        `SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) AS n FROM pg_stat_user_indexes
         WHERE relname = 'durable_flow_workflow_runs' AND indexrelname LIKE 'durable_flow_runs_due%'`,
      )).rows[0]!.n);
    const before = await entries();
    const { rows } = await client.query(claimRunsSql(flow.tables), [['default'], [name], limit, 'review', 60_000, 0, flow.version]);
    const read = (await entries()) - before;
    await client.query('ROLLBACK');
    return { ids: (rows[0].runs as { run_id: string }[]).map((r) => r.run_id), read };
  } finally {
    client.release();
  }
}

describe('the claim with many priority levels', () => {
  for (const keyed of [false, true]) {
    it(`reads tens of index entries, not one per level, with 3,000 sleeping ${keyed ? 'keyed ' : ''}runs of 3,000 better priorities`, async () => {
      const { flow, name } = await fresh();
      await flow.pool.query(
        `INSERT INTO ${flow.tables.runs} (run_id, workflow_name, status, input, wake_at, priority, concurrency_key, concurrency_limit, created_at, updated_at)
         SELECT $1 || ':sleeper-' || g, $1, 'sleeping', '{}', now() + interval '1 day', -g, CASE WHEN $2 THEN 'k' || g END, CASE WHEN $2 THEN 1 END, now(), now()
         FROM generate_series(1, $3::int) g`, [name, keyed, Number(process.env.REVIEW_LEVELS ?? 3000)]);
      await flow.pool.query(
        `INSERT INTO ${flow.tables.runs} (run_id, workflow_name, status, input, wake_at, priority, concurrency_key, concurrency_limit, created_at, updated_at)
         VALUES ($1 || ':due', $1, 'enqueued', '{}', now() - interval '1 minute', 0, CASE WHEN $2 THEN 'due' END, CASE WHEN $2 THEN 1 END, now(), now())`, [name, keyed]);
      await flow.pool.query(`VACUUM ANALYZE ${flow.tables.runs}`);
      const t0 = performance.now();
      const { ids, read } = await claimReading(flow, name, 1);
      if (process.env.REVIEW_DETAIL) console.log(`claim: ${(performance.now() - t0).toFixed(1)} ms, ${read} entries`);
      expect(ids).toEqual([`${name}:due`]);
      expect(read).toBeLessThan(200);
    });
  }
});
