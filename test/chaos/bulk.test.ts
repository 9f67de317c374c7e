/**
 * A bulk operation survives the SIGKILL of the process working on it (issue 14): a process cancels
 * 5,000 runs in batches (slowed between batches) and is killed mid-way; a worker in another process
 * takes the operation over once its lease expires and finishes it. Every selected run ends cancelled
 * with exactly one audit entry of the operation, done == total, and no other run is touched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('bulkchaos');
  flow = ctx.flow();
  await flow.migrate();
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const N = 5000;

describe('bulk operations under SIGKILL', () => {
  it('a bulk cancel of 5,000 runs whose process is killed mid-way is finished by another process, each run cancelled once', async () => {
    const doomed = flow.workflow('doomed', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    const spared = flow.workflow('spared', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    for (let from = 0; from < N; from += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, i) => doomed.start({ i: from + i }, { delay: '1 year' })));
    }
    for (let i = 0; i < 50; i++) await spared.start({ i }, { delay: '1 year' });
    const q = async <T = Record<string, unknown>>(sql: string, params: unknown[] = []) =>
      (await flow.pool.query(sql, params)).rows as T[];

    const finisher = spawnFixture('bulk-process.ts', { DATABASE_URL: ctx.db.url, WORKER: '1' });
    await finisher.waitFor(/^READY/);
    const starter = spawnFixture('bulk-process.ts', { DATABASE_URL: ctx.db.url, START: 'doomed', BATCH_DELAY_MS: '150' });
    const line = await starter.waitFor(/^OPERATION /);
    const [, operationId, total] = line.split(' ');
    expect(Number(total)).toBe(N);
    await starter.waitFor(/^BATCH \S+ 1500$/, 60_000);
    starter.child.kill('SIGKILL');
    await starter.exited;
    const killedAt = (await flow.operation(operationId!)).done;
    expect(killedAt).toBeGreaterThanOrEqual(1500);
    expect(killedAt).toBeLessThan(N);

    const op = await eventually(
      async () => {
        const info = await flow.operation(operationId!);
        return info.status === 'running' ? null : info;
      },
      60_000,
      100,
    );
    expect(op).toMatchObject({ status: 'completed', total: N, done: N, failed: 0, actor: 'chaos', reason: 'killed mid-way' });
    // The finisher did the rest: it reported batches of this operation after the kill.
    expect(finisher.output.some((l) => l.startsWith(`BATCH ${operationId} `) && Number(l.split(' ')[2]) > killedAt)).toBe(true);
    expect(starter.output.filter((l) => l.startsWith('BATCH ')).every((l) => Number(l.split(' ')[2]) <= killedAt)).toBe(true);

    expect(
      await q(`SELECT workflow_name, status, count(*)::int AS n FROM durable_flow_workflow_runs GROUP BY 1, 2 ORDER BY 1`),
    ).toEqual([
      { workflow_name: 'doomed', status: 'cancelled', n: N },
      { workflow_name: 'spared', status: 'enqueued', n: 50 },
    ]);
    // Exactly one audit entry of the operation per doomed run, and none for any other run.
    expect(
      await q(
        `SELECT count(DISTINCT run_id)::int AS runs, count(*)::int AS entries, count(*) FILTER (WHERE workflow_name <> 'doomed')::int AS others
         FROM durable_flow_audit WHERE operation_id = $1 AND run_id IS NOT NULL`,
        [operationId],
      ),
    ).toEqual([{ runs: N, entries: N, others: 0 }]);
    expect(
      await q(
        `SELECT count(*)::int AS n FROM durable_flow_workflow_runs r WHERE r.workflow_name = 'doomed'
           AND NOT EXISTS (SELECT 1 FROM durable_flow_audit a WHERE a.operation_id = $1 AND a.run_id = r.run_id)`,
        [operationId],
      ),
    ).toEqual([{ n: 0 }]);
    expect(
      await q(`SELECT lease_owner, completed_at IS NOT NULL AS completed FROM durable_flow_operations WHERE id = $1`, [
        operationId,
      ]),
    ).toEqual([{ lease_owner: null, completed: true }]);
  });
});
