import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { CROSSED_LIMIT, CROSSED_PERIOD_MS, THROTTLE_LIMIT, THROTTLE_PERIOD_MS, createThrottleTables, registerThrottleWorkflows } from '../fixtures/throttle-workflows.js';
import { withTransaction } from '../../lib/db/queryable.js';
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

  it('with a crossing concurrency key and priorities: the throttle per `t` and one execution per `c` both hold, higher priority begins first, and another throttled workflow does not wait behind the backlog', async () => {
    const children: ChildWorker[] = Array.from({ length: 3 }, () => spawnFixture('throttle-worker.ts', { DATABASE_URL: ctx.db.url, CONCURRENCY: '10' }));
    try {
      await Promise.all(children.map((c) => c.waitFor(/^READY/)));
      const crossed = flow.definitions.get('th-crossed')!;
      const loose = flow.definitions.get('th-loose')!;
      // 2 throttle keys x 2 concurrency keys x 6 runs, the last 2 of each pair at a higher priority, all
      // committed at once (so that the claims see the whole queue, and priority decides, not arrival).
      const high = new Set<string>();
      await withTransaction(flow.pool, async (client) => {
        for (let i = 0; i < 6; i++) {
          for (const t of ['t1', 't2']) {
            for (const c of ['c1', 'c2']) {
              const id = await flow.startRun(crossed, { t, c }, { transaction: client, priority: i >= 4 ? -1 : 0 });
              if (i >= 4) high.add(id);
            }
          }
        }
      });
      const looseIds: string[] = [];
      for (let i = 0; i < 10; i++) looseIds.push(await flow.startRun(loose, {}));
      await eventually(async () => {
        const [row] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE workflow_name IN ('th-crossed', 'th-loose') AND status = 'completed'`);
        return row!.n === 24 + looseIds.length;
      }, 40_000, 100);

      expect(await overLimit('th-crossed', CROSSED_LIMIT, CROSSED_PERIOD_MS)).toEqual([]);
      // One execution at a time per concurrency key: no two bodies of one `c` overlap.
      const [overlaps] = await query<{ n: number }>(
        `WITH spans AS (
           SELECT r.run_id, r.concurrency_key, i.at AS entered, o.at AS left_at FROM ${flow.tables.runs} r
           JOIN test_throttle_steps i ON i.run_id = r.run_id AND i.step = 'in'
           JOIN test_throttle_steps o ON o.run_id = r.run_id AND o.step = 'out'
           WHERE r.workflow_name = 'th-crossed')
         SELECT count(*)::int AS n FROM spans a JOIN spans b ON a.concurrency_key = b.concurrency_key AND a.run_id < b.run_id
         WHERE a.entered < b.left_at AND b.entered < a.left_at`,
      );
      expect(overlaps!.n).toBe(0);
      const [bodies] = await query<{ n: number; keys: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT r.concurrency_key)::int AS keys FROM test_throttle_steps s JOIN ${flow.tables.runs} r ON r.run_id = s.run_id
         WHERE r.workflow_name = 'th-crossed' AND s.step = 'in'`,
      );
      expect([bodies!.n, bodies!.keys]).toEqual([24, 2]);
      // Priority: in each throttle key's order of begins, the higher-priority runs (started last) come first on the whole.
      const order = await query<{ run_id: string; throttle_key: string }>(
        `SELECT run_id, throttle_key FROM ${flow.tables.runs} WHERE workflow_name = 'th-crossed' ORDER BY throttle_key, started_at, id`,
      );
      for (const key of ['th-crossed:t1', 'th-crossed:t2']) {
        const ranks = order.filter((r) => r.throttle_key === key).map((r, rank) => ({ rank, high: high.has(r.run_id) }));
        const mean = (rows: { rank: number }[]) => rows.reduce((sum, r) => sum + r.rank, 0) / rows.length;
        const highs = ranks.filter((r) => r.high);
        expect(highs).toHaveLength(4);
        expect(mean(highs), `${key}: ${JSON.stringify(ranks)}`).toBeLessThan(mean(ranks.filter((r) => !r.high)));
      }
      // No head-of-line blocking: the loosely throttled runs, started after the whole backlog, all began before its last begin.
      const [times] = await query<{ loose_last: Date; crossed_last: Date }>(
        `SELECT (SELECT max(started_at) FROM ${flow.tables.runs} WHERE workflow_name = 'th-loose') AS loose_last,
                (SELECT max(started_at) FROM ${flow.tables.runs} WHERE workflow_name = 'th-crossed') AS crossed_last`,
      );
      expect(times!.loose_last.getTime()).toBeLessThan(times!.crossed_last.getTime());
    } finally {
      for (const c of children) c.child.kill('SIGTERM');
      await Promise.all(children.map((c) => c.exited));
    }
  }, 60_000);
});
