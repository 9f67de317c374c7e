/**
 * Retention while runs flow (issue 13): two worker processes run pipelines (with durable sleeps) and
 * waiters while the test prunes with a one-second retention as fast as it can, and one worker is
 * SIGKILLed mid-way. The history checker's triggers record every checkpoint and outcome, and a trigger
 * of this test records the status of every run row deleted: nothing may be pruned before it finished,
 * every run must finish exactly once, no checkpointed step may run again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { chaosSetup } from './setup.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ({ ctx, flow } = await chaosSetup('retention'));
  await flow.pool.query(`
    CREATE TABLE test_pruned (run_id text NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE FUNCTION test_record_pruned() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO test_pruned (run_id, status) VALUES (OLD.run_id, OLD.status); RETURN NULL; END $$;
    CREATE TRIGGER test_record_pruned AFTER DELETE ON durable_flow_workflow_runs FOR EACH ROW EXECUTE FUNCTION test_record_pruned();`);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

describe('retention under load', () => {
  it('prunes only finished runs while 300 runs flow through two worker processes, one of them SIGKILLed', async () => {
    const worker = (name: string) => spawnFixture('chaos-worker.ts', { DATABASE_URL: ctx.db.url, LEASE_TTL_MS: '2000', NAME: name });
    const a = worker('a');
    const b = worker('b');
    await Promise.all([a.waitFor(/^READY/), b.waitFor(/^READY/)]);
    const pruner = ctx.flow({ retention: { completed: '1 second', cancelled: '1 second', failed: '1 second', events: '1 second' } });
    let stop = false;
    let pruned = 0;
    let passes = 0;
    const pruning = (async () => {
      while (!stop) {
        pruned += (await pruner.prune()).runs;
        passes++;
      }
    })();
    const pipeline = flow.definitions.get('pipeline')!;
    const waiter = flow.definitions.get('waiter')!;
    const runIds: string[] = [];
    try {
      for (let i = 0; i < 200; i++) runIds.push(await flow.startRun(pipeline, { n: i, napMs: i % 3 === 0 ? 1500 : 0 }));
      const waiting: string[] = [];
      for (let k = 0; k < 100; k++) waiting.push(await flow.startRun(waiter, { k }));
      runIds.push(...waiting);
      // Kill one worker while runs are in flight; the other takes its runs over after their leases.
      await eventually(async () => (await flow.pool.query(`SELECT count(*)::int AS n FROM test_outcomes`)).rows[0].n >= 50, 30_000);
      a.child.kill('SIGKILL');
      // Each waiter's event once it waits (an event sent earlier could be pruned before its wait exists).
      const sent = new Set<number>();
      await eventually(
        async () => {
          const { rows } = await flow.pool.query(
            `SELECT (r.input->>'k')::int AS k FROM durable_flow_workflow_runs r WHERE r.workflow_name = 'waiter' AND r.status = 'waiting'`,
          );
          for (const { k } of rows) {
            if (sent.has(k)) continue;
            sent.add(k);
            await flow.notify('chaos.go', { k, note: `n${k}` });
          }
          return sent.size === 100;
        },
        60_000,
        50,
      );
      await eventually(async () => (await flow.pool.query(`SELECT count(DISTINCT run_id)::int AS n FROM test_outcomes`)).rows[0].n === 300, 60_000, 50);
      await eventually(() => pruned === 300, 30_000);
    } finally {
      stop = true;
      await pruning;
      killAllChildren();
    }
    const q = async (sql: string) => (await flow.pool.query(sql, sql.includes('$1') ? [runIds] : [])).rows;
    // Every run finished once, and completed.
    expect(await q(`SELECT status, count(*)::int AS n FROM test_outcomes WHERE run_id = ANY($1) GROUP BY status`)).toEqual([{ status: 'completed', n: 300 }]);
    expect(await q(`SELECT count(*)::int AS n FROM (SELECT run_id FROM test_outcomes GROUP BY run_id HAVING count(*) > 1) x`)).toEqual([{ n: 0 }]);
    // Only finished runs were deleted, each once, each after its outcome was stored.
    expect(await q(`SELECT status, count(*)::int AS n FROM test_pruned GROUP BY status`)).toEqual([{ status: 'completed', n: 300 }]);
    expect(
      await q(`SELECT count(*)::int AS n FROM test_pruned p WHERE NOT EXISTS (SELECT 1 FROM test_outcomes o WHERE o.run_id = p.run_id AND o.at <= p.at)`),
    ).toEqual([{ n: 0 }]);
    // No step whose checkpoint was stored ran again (the killed worker's interrupted steps may have).
    expect(await q(`SELECT count(*)::int AS n FROM test_effects WHERE checkpointed_at_entry`)).toEqual([{ n: 0 }]);
    expect(await q(`SELECT count(*)::int AS n FROM test_checkpoints c GROUP BY run_id, step HAVING count(*) > 1`)).toEqual([]);
    expect(passes).toBeGreaterThan(10);
    // Nothing is left behind: no steps, waits or logs without their runs.
    expect(await q(`SELECT (SELECT count(*) FROM durable_flow_workflow_runs)::int AS runs, (SELECT count(*) FROM durable_flow_workflow_steps)::int AS steps`)).toEqual([
      { runs: 0, steps: 0 },
    ]);
  });
});
