import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createEffectsTable, registerCrashWorkflows } from '../fixtures/crash-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('control');
  flow = ctx.flow();
  registerCrashWorkflows(flow);
  await createEffectsTable(flow);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

/** The most intervals of one key that overlap at any instant. */
async function maxOverlap(): Promise<Record<string, number>> {
  const { rows } = await flow.pool.query(`
    SELECT a.key, max(c)::int AS peak FROM (
      SELECT a.key, a.id, count(*) AS c FROM test_intervals a
      JOIN test_intervals b ON a.key = b.key AND b.started_at <= a.started_at AND b.ended_at > a.started_at
      GROUP BY a.key, a.id) a
    GROUP BY a.key`);
  return Object.fromEntries(rows.map((r) => [r.key, r.peak]));
}

async function workers(n: number): Promise<ChildWorker[]> {
  const children = Array.from({ length: n }, () => spawnFixture('worker-process.ts', { DATABASE_URL: ctx.db.url, CONCURRENCY: '10' }));
  await Promise.all(children.map((c) => c.waitFor(/^READY/)));
  return children;
}

describe('concurrency limits (three worker processes)', () => {
  it('never runs more than the limit per key at once, across processes', async () => {
    const children = await workers(3);
    try {
      const limited = flow.definitions.get('limited')!;
      const runIds = await Promise.all(
        Array.from({ length: 24 }, (_, i) => flow.startRun(limited, { account: ['acme', 'globex', 'initech'][i % 3], ms: 120 })),
      );
      const results = await Promise.all(runIds.map((id) => flow.handle(id).result({ timeout: '60 seconds' })));
      expect(results.filter((r) => r === 'acme')).toHaveLength(8);
      const peaks = await maxOverlap();
      expect(peaks).toEqual({ acme: 2, globex: 2, initech: 2 });
      // Several processes really took part.
      const { rows } = await flow.pool.query('SELECT count(DISTINCT pid)::int AS n FROM test_intervals');
      expect(rows[0].n).toBeGreaterThan(1);
      const { rows: parked } = await flow.pool.query('SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE concurrency_waiting');
      expect(parked[0].n).toBe(0);
    } finally {
      children.forEach((c) => c.child.kill('SIGKILL'));
    }
  });

  it('runs a workflow with concurrency 1 strictly one at a time', async () => {
    await flow.pool.query('DELETE FROM test_intervals');
    const children = await workers(2);
    const local = flow.worker({ concurrency: 10, pollInterval: 100 });
    await local.start();
    try {
      const serial = flow.definitions.get('serial')!;
      const runIds = await Promise.all(Array.from({ length: 8 }, () => flow.startRun(serial, { ms: 50 })));
      await Promise.all(runIds.map((id) => flow.handle(id).result({ timeout: '60 seconds' })));
      expect(await maxOverlap()).toEqual({ serial: 1 });
    } finally {
      await local.stop();
      children.forEach((c) => c.child.kill('SIGKILL'));
    }
  });

  it('refuses a concurrency key function that throws, storing nothing', async () => {
    const wf = flow.workflow('bad-key', { concurrency: { limit: 1, key: () => { throw new Error('no account'); } } }, async () => 1);
    await expect(wf.start({})).rejects.toThrow('The concurrency key function of workflow "bad-key" threw: no account');
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'bad-key'`);
    expect(rows[0].n).toBe(0);
  });
});

describe('cancelOn', () => {
  it('cancels the runs (and their children) a matching event names, and only those', async () => {
    const child = flow.workflow('cancel-child', async ({ step }: WorkflowContext) => step.sleep('long', '1 day'));
    const order = flow.workflow(
      'order',
      { cancelOn: [{ event: 'order_cancelled', match: (input: { orderId: number }) => ({ orderId: input.orderId }) }] },
      async ({ step }: WorkflowContext<{ orderId: number }>) => {
        await step.invoke('ship', child, {});
        return 'shipped';
      },
    );
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const one = await order.start({ orderId: 1 });
      const two = await order.start({ orderId: 2 });
      await eventually(async () => (await flow.getRun(one.runId))!.status === 'waiting');
      await eventually(async () => (await flow.getRun(two.runId))!.status === 'waiting');
      const [childOfOne] = (await flow.getRun(one.runId))!.childRunIds;
      await flow.notify('order_cancelled', { orderId: 1, reason: 'customer' });
      await expect(one.result()).rejects.toThrow(/was cancelled/);
      const info = await flow.getRun(one.runId);
      expect(info!.error).toMatchObject({ class: 'RunCancelled', message: 'Cancelled by event "order_cancelled"' });
      expect((await flow.getRun(childOfOne!))!.status).toBe('cancelled');
      expect((await flow.getRun(two.runId))!.status).toBe('waiting');
    } finally {
      await worker.stop();
    }
  });
});
