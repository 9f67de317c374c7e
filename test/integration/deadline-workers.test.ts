import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createDeadlineTables, registerDeadlineWorkflows } from '../fixtures/deadline-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('deadline_workers');
  flow = ctx.flow();
  registerDeadlineWorkflows(flow); // this process only starts runs: it runs no worker
  await flow.migrate();
  await createDeadlineTables(flow);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  return (await flow.pool.query(sql)).rows as T[];
}

describe('deadlines with three worker processes', () => {
  it('enforces each timeout and startBy once: no step begins or is stored after a deadline, no run begins after its startBy', async () => {
    const children: ChildWorker[] = Array.from({ length: 3 }, () => spawnFixture('deadline-worker.ts', { DATABASE_URL: ctx.db.url, CONCURRENCY: '10' }));
    try {
      await Promise.all(children.map((c) => c.waitFor(/^READY/)));
      const slow = flow.definitions.get('dl-slow')!;
      const queued = flow.definitions.get('dl-queued')!;
      const timedOut: string[] = [];
      const finished: string[] = [];
      const waiting: string[] = [];
      for (let i = 0; i < 15; i++) {
        timedOut.push(await flow.startRun(slow, { ms: 4000 }, { timeout: 800 }));
        finished.push(await flow.startRun(slow, { ms: 20 }, { timeout: '10 seconds' }));
      }
      // At most 2 at once, 150 ms each: only some of the 30 can begin within 700 ms.
      for (let i = 0; i < 30; i++) waiting.push(await flow.startRun(queued, { ms: 150 }, { startBy: 700 }));
      const all = [...timedOut, ...finished, ...waiting];
      await eventually(async () => {
        const [row] = await query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE status IN ('completed', 'failed', 'cancelled')`,
        );
        return row!.n === all.length;
      }, 30_000, 100);

      // Each run ended exactly once.
      const endings = await query<{ run_id: string; n: number }>('SELECT run_id, count(*)::int AS n FROM test_deadline_endings GROUP BY run_id');
      expect(endings).toHaveLength(all.length);
      expect(endings.filter((e) => e.n !== 1)).toEqual([]);

      const runs = new Map(
        (
          await query<{ run_id: string; status: string; code: string | null; started_at: Date | null; start_by: Date | null; deadline_at: Date | null; failed_at: Date | null; attempts: number }>(
            `SELECT run_id, status, error->>'code' AS code, started_at, start_by, deadline_at, failed_at, attempts FROM ${flow.tables.runs}`,
          )
        ).map((r) => [r.run_id, r]),
      );
      for (const id of timedOut) {
        const run = runs.get(id)!;
        expect(run).toMatchObject({ status: 'failed', code: 'RUN_TIMEOUT' });
        expect(run.failed_at!.getTime()).toBeGreaterThanOrEqual(run.deadline_at!.getTime());
      }
      for (const id of finished) expect(runs.get(id)!.status).toBe('completed');

      // No step body began at or after its run's deadline; none of a timed-out run got past `slow`.
      expect(await query(`SELECT s.* FROM test_deadline_steps s JOIN ${flow.tables.runs} r USING (run_id) WHERE s.started_at >= r.deadline_at`)).toEqual([]);
      expect(await query(`SELECT s.* FROM test_deadline_steps s JOIN ${flow.tables.runs} r USING (run_id) WHERE r.error->>'code' = 'RUN_TIMEOUT' AND s.step = 'last'`)).toEqual([]);
      // No step result was stored after a deadline.
      expect(
        await query(`SELECT s.name FROM ${flow.tables.steps} s JOIN ${flow.tables.runs} r ON r.id = s.workflow_run_id
                     WHERE s.status = 'succeeded' AND s.completed_at >= r.deadline_at`),
      ).toEqual([]);
      // The running step of each timed-out run saw its signal abort with RUN_TIMEOUT, at the deadline
      // (within a noisy machine's margin), once.
      const aborts = await query<{ run_id: string; abort_code: string | null; late_ms: number }>(
        `SELECT s.run_id, s.abort_code, (extract(epoch FROM s.aborted_at - r.deadline_at) * 1000)::float8 AS late_ms
         FROM test_deadline_steps s JOIN ${flow.tables.runs} r USING (run_id) WHERE s.step = 'slow' AND r.error->>'code' = 'RUN_TIMEOUT'`,
      );
      expect(aborts.map((a) => a.run_id).sort()).toEqual([...timedOut].sort());
      for (const abort of aborts) {
        expect(abort.abort_code).toBe('RUN_TIMEOUT');
        expect(abort.late_ms).toBeGreaterThan(-100);
        expect(abort.late_ms).toBeLessThan(3000);
      }

      // startBy: a run either began before it, or was cancelled without ever beginning.
      const began = waiting.filter((id) => runs.get(id)!.status === 'completed');
      const cancelled = waiting.filter((id) => runs.get(id)!.status === 'cancelled');
      expect(began.length + cancelled.length).toBe(waiting.length);
      expect(began.length).toBeGreaterThan(0);
      expect(cancelled.length).toBeGreaterThan(0);
      for (const id of began) expect(runs.get(id)!.started_at!.getTime()).toBeLessThan(runs.get(id)!.start_by!.getTime());
      for (const id of cancelled) expect(runs.get(id)!).toMatchObject({ code: 'DEADLINE_EXCEEDED', started_at: null, attempts: 0 });
      const entered = await query<{ run_id: string }>(`SELECT DISTINCT run_id FROM test_deadline_steps WHERE step = 'work'`);
      expect(entered.map((e) => e.run_id).sort()).toEqual([...began].sort());
      const [parked] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE concurrency_waiting`);
      expect(parked!.n).toBe(0);

      // Several processes took part.
      const [pids] = await query<{ n: number }>('SELECT count(DISTINCT pid)::int AS n FROM test_deadline_steps');
      expect(pids!.n).toBeGreaterThan(1);
    } finally {
      for (const c of children) c.child.kill('SIGTERM');
      await Promise.all(children.map((c) => c.exited));
    }
  }, 60_000);
});
