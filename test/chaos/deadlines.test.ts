/**
 * Deadlines hold without the worker that holds the run: a worker frozen (SIGSTOP) in a step past its
 * run's deadline, with a lease far longer, cannot delay the timeout; when it thaws it stores nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createDeadlineTables, registerDeadlineWorkflows } from '../fixtures/deadline-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('deadline_chaos');
  flow = ctx.flow();
  registerDeadlineWorkflows(flow);
  await flow.migrate();
  await createDeadlineTables(flow);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

describe('deadlines and frozen workers', () => {
  it('fails the run of a worker frozen mid-step at the deadline, not at its lease expiry; thawed, it writes nothing', async () => {
    const frozen = spawnFixture('deadline-worker.ts', { DATABASE_URL: ctx.db.url, CONCURRENCY: '2', LEASE_TTL_MS: '30000' });
    await frozen.waitFor(/^READY/);
    const runId = await flow.startRun(flow.definitions.get('dl-slow')!, { ms: 8000 }, { timeout: 1500 });
    await eventually(async () => (await flow.pool.query(`SELECT 1 FROM test_deadline_steps WHERE run_id = $1 AND step = 'slow'`, [runId])).rowCount === 1);
    frozen.child.kill('SIGSTOP');
    // Another worker's claim ends it (the frozen one's lease still has about 28 s to run).
    const other = flow.worker({ pollInterval: 100 });
    await other.start();
    try {
      const failed = await eventually(async () => {
        const info = await flow.getRun(runId);
        return info?.status === 'failed' ? info : undefined;
      }, 10_000, 50);
      expect(failed.error?.code).toBe('RUN_TIMEOUT');
      expect(failed.lease).toBeNull();
      expect(failed.failedAt!.getTime() - failed.deadlineAt!.getTime()).toBeGreaterThanOrEqual(0);
      expect(failed.failedAt!.getTime() - failed.deadlineAt!.getTime()).toBeLessThan(5000);
      frozen.child.kill('SIGCONT');
      // Thawed: its own timer fires (overdue) and aborts the step; nothing it does lands.
      const aborted = await eventually(async () => {
        const { rows } = await flow.pool.query<{ abort_code: string | null }>(
          `SELECT abort_code FROM test_deadline_steps WHERE run_id = $1 AND step = 'slow' AND aborted_at IS NOT NULL`,
          [runId],
        );
        return rows[0];
      }, 10_000, 50);
      expect(aborted.abort_code).toBe('RUN_TIMEOUT');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const after = (await flow.getRun(runId))!;
      expect(after).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
      expect(after.updatedAt.getTime()).toBe(failed.updatedAt.getTime());
      const { rows: steps } = await flow.pool.query(
        `SELECT s.name, s.status FROM ${flow.tables.steps} s JOIN ${flow.tables.runs} r ON r.id = s.workflow_run_id WHERE r.run_id = $1 ORDER BY s.id`,
        [runId],
      );
      // `slow` has a row only if its running marker (250 ms) was stored before the freeze: cancelled then.
      expect(steps.filter((st) => st.name !== 'slow')).toEqual([{ name: 'first', status: 'succeeded' }]);
      expect(['cancelled', undefined]).toContain(steps.find((st) => st.name === 'slow')?.status);
      const { rows: entered } = await flow.pool.query(`SELECT step FROM test_deadline_steps WHERE run_id = $1 ORDER BY id`, [runId]);
      expect(entered.map((e) => e.step)).toEqual(['first', 'slow']);
      const { rows: endings } = await flow.pool.query('SELECT status FROM test_deadline_endings WHERE run_id = $1', [runId]);
      expect(endings).toEqual([{ status: 'failed' }]);
    } finally {
      frozen.child.kill('SIGCONT');
      frozen.child.kill('SIGTERM');
      await frozen.exited;
      await other.stop();
    }
  }, 60_000);
});
