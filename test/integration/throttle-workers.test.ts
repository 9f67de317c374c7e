import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { THROTTLE_LIMIT, THROTTLE_PERIOD_MS, createThrottleTables, registerThrottleWorkflows } from '../fixtures/throttle-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('throttle_workers');
  flow = ctx.flow();
  registerThrottleWorkflows(flow); // this process only starts runs: it runs no worker
  await flow.migrate();
  await createThrottleTables(flow);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await flow.pool.query(sql, params)).rows as T[];
}

/**
 * Begins of `workflow` that break the sliding window: a begin b with `limit` others of its key in
 * (b - period, b]. Equivalently the (i + limit)-th begin of a key less than `period` after the i-th.
 * Computed on the stored timestamps (microseconds), in SQL.
 */
function overLimit(workflow: string, limit: number, periodMs: number) {
  return query<{ throttle_key: string; started_at: Date; gap_ms: number }>(
    `SELECT throttle_key, started_at, gap_ms FROM (
       SELECT throttle_key, started_at,
              (extract(epoch FROM lead(started_at, $2) OVER (PARTITION BY throttle_key ORDER BY started_at, id) - started_at) * 1000)::float8 AS gap_ms
       FROM ${flow.tables.runs} WHERE workflow_name = $1 AND started_at IS NOT NULL) w
     WHERE gap_ms < $3`,
    [workflow, limit, periodMs],
  );
}

describe('throttle with three worker processes', () => {
  it('never lets more than `limit` runs of a key begin in any period, over many periods; every run begins, in start order per key', async () => {
    const children: ChildWorker[] = Array.from({ length: 3 }, () => spawnFixture('throttle-worker.ts', { DATABASE_URL: ctx.db.url, CONCURRENCY: '10' }));
    try {
      await Promise.all(children.map((c) => c.waitFor(/^READY/)));
      const keyed = flow.definitions.get('th-keyed')!;
      const mixed = flow.definitions.get('th-mixed')!;
      const plain = flow.definitions.get('th-plain')!;
      // 3 keys x 30 runs at 3 per 400 ms: about 10 periods per key, all keys at once.
      const byKey = new Map<string, string[]>();
      await Promise.all(
        ['a', 'b', 'c'].map(async (key) => {
          const ids: string[] = [];
          for (let i = 0; i < 30; i++) ids.push(await flow.startRun(keyed, { key, sleep: i % 2 === 0 }));
          byKey.set(key, ids);
        }),
      );
      const mixedIds: string[] = [];
      for (let i = 0; i < 16; i++) mixedIds.push(await flow.startRun(mixed, {}));
      // Started behind the whole throttled backlog: done long before it.
      const plainIds: string[] = [];
      for (let i = 0; i < 30; i++) plainIds.push(await flow.startRun(plain, {}));
      await eventually(async () => {
        const [row] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE workflow_name = 'th-plain' AND status = 'completed'`);
        return row!.n === plainIds.length;
      }, 10_000, 50);
      const [backlog] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE workflow_name = 'th-keyed' AND started_at IS NULL`);

      await eventually(async () => {
        const [row] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE status = 'completed'`);
        return row!.n === 90 + mixedIds.length + plainIds.length;
      }, 40_000, 100);

      // The sliding window holds, exactly, for every key of both throttled workflows.
      expect(await overLimit('th-keyed', THROTTLE_LIMIT, THROTTLE_PERIOD_MS)).toEqual([]);
      expect(await overLimit('th-mixed', 2, 300)).toEqual([]);
      // It was the throttle that paced them: each key's 30 begins spread over at least 9 periods.
      const spans = await query<{ throttle_key: string; n: number; span_ms: number }>(
        `SELECT throttle_key, count(*)::int AS n, (extract(epoch FROM max(started_at) - min(started_at)) * 1000)::float8 AS span_ms
         FROM ${flow.tables.runs} WHERE workflow_name = 'th-keyed' GROUP BY 1 ORDER BY 1`,
      );
      expect(spans.map((s) => [s.throttle_key, s.n])).toEqual([['th-keyed:a', 30], ['th-keyed:b', 30], ['th-keyed:c', 30]]);
      for (const s of spans) expect(s.span_ms).toBeGreaterThanOrEqual(9 * THROTTLE_PERIOD_MS);

      // In start order per key (same priority: FIFO).
      for (const [key, ids] of byKey) {
        const order = await query<{ run_id: string }>(
          `SELECT run_id FROM ${flow.tables.runs} WHERE throttle_key = $1 ORDER BY started_at, id`,
          [`th-keyed:${key}`],
        );
        expect(order.map((r) => r.run_id)).toEqual(ids);
      }
      const mixedOrder = await query<{ run_id: string }>(`SELECT run_id FROM ${flow.tables.runs} WHERE workflow_name = 'th-mixed' ORDER BY started_at, id`);
      expect(mixedOrder.map((r) => r.run_id)).toEqual(mixedIds);

      // Concurrency 2 held too: no three th-mixed steps overlapped (each lasts 50 ms from its entry).
      const [overlap] = await query<{ n: number }>(
        `SELECT count(*)::int AS n FROM test_throttle_steps a JOIN ${flow.tables.runs} r ON r.run_id = a.run_id AND r.workflow_name = 'th-mixed'
         WHERE (SELECT count(*) FROM test_throttle_steps b JOIN ${flow.tables.runs} q ON q.run_id = b.run_id AND q.workflow_name = 'th-mixed'
                WHERE b.at <= a.at AND b.at > a.at - interval '45 milliseconds') > 2`,
      );
      expect(overlap!.n).toBe(0);

      // Nothing left waiting, several processes took part, and the unthrottled runs did not wait for the backlog.
      const [left] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE status = 'enqueued'`);
      expect(left!.n).toBe(0);
      const [pids] = await query<{ n: number }>('SELECT count(DISTINCT pid)::int AS n FROM test_throttle_steps');
      expect(pids!.n).toBeGreaterThan(1);
      // Still a backlog when the last unthrottled run finished, and that run finished before the last throttled one began.
      expect(backlog!.n).toBeGreaterThan(0);
      const [times] = await query<{ plain_done: Date; keyed_last: Date }>(
        `SELECT (SELECT max(completed_at) FROM ${flow.tables.runs} WHERE workflow_name = 'th-plain') AS plain_done,
                (SELECT max(started_at) FROM ${flow.tables.runs} WHERE workflow_name = 'th-keyed') AS keyed_last`,
      );
      expect(times!.plain_done.getTime()).toBeLessThan(times!.keyed_last.getTime());
    } finally {
      for (const c of children) c.child.kill('SIGTERM');
      await Promise.all(children.map((c) => c.exited));
    }
  }, 60_000);
});
