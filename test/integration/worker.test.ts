import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('worker');
  flow = ctx.flow({ leaseTtl: '2 seconds' });
});
afterAll(() => ctx.cleanup());

describe('claims and leases', () => {

  it('hands running runs back when stop() is called in-process', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const wf = flow.workflow('stop-me', async ({ step }: WorkflowContext) => {
      await step.run('gate', () => gate);
      await step.run('next', () => 'never here');
    });
    const worker = flow.worker({ pollInterval: 100 });
    await worker.start();
    const run = await wf.start({});
    await eventually(async () => (await flow.getRun(run.runId))!.status === 'running');
    const stopped = worker.stop();
    release();
    await stopped;
    const info = await flow.getRun(run.runId);
    expect(info!.status).toBe('ready');
    expect(info!.lease).toBeNull();
    const timeline = await flow.timeline(run.runId);
    expect(timeline!.steps.map((s) => [s.step.name, s.step.status])).toEqual([['gate', 'succeeded']]);
  });

  it('takes every time decision with the database clock, whatever the app clock says', async () => {
    const wf = flow.workflow('clock', async ({ step }: WorkflowContext) => {
      await step.run('hold', () => new Promise((resolve) => setTimeout(resolve, 300)));
      await step.sleep('nap', '10 minutes');
    });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 5 * 60_000 });
    const worker = flow.worker({ pollInterval: 100 });
    try {
      await worker.start();
      const run = await wf.start({});
      const lease = await eventually(async () => {
        const { rows } = await flow.pool.query(
          `SELECT extract(epoch FROM lease_expires_at - now()) AS s FROM durable_flow_workflow_runs WHERE run_id = $1 AND lease_owner IS NOT NULL`,
          [run.runId],
        );
        return rows[0];
      });
      expect(Number(lease.s)).toBeGreaterThan(1);
      expect(Number(lease.s)).toBeLessThanOrEqual(2.1);
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'sleeping');
      const { rows } = await flow.pool.query(
        `SELECT extract(epoch FROM wake_at - now()) AS s FROM durable_flow_workflow_runs WHERE run_id = $1`,
        [run.runId],
      );
      expect(Number(rows[0].s)).toBeGreaterThan(590);
      expect(Number(rows[0].s)).toBeLessThan(601);
    } finally {
      vi.useRealTimers();
      await worker.stop();
    }
  });
});


describe('runs nobody can execute', () => {
  it('warns, naming the workflow and the fix, when due runs of an unregistered workflow pile up', async () => {
    const other = ctx.flow();
    const ghost = other.workflow('ghost', async () => 1);
    const run = await ghost.start({});
    await flow.pool.query(`UPDATE durable_flow_workflow_runs SET wake_at = now() - interval '2 minutes' WHERE run_id = $1`, [run.runId]);
    const warnings: string[] = [];
    const watcher = ctx.flow({ logger: { warn: (message) => warnings.push(message), error: () => undefined } });
    watcher.workflow('something-else', async () => 1);
    const worker = watcher.worker({ pollInterval: 100 });
    await worker.start();
    try {
      await eventually(() => warnings.length > 0);
      expect(warnings[0]).toMatch(/1 run\(s\) of workflow "ghost" have been due for over a minute and no worker claims them/);
      expect(warnings[0]).toMatch(/Register it with flow.workflow\('ghost', …\)/);
      expect((await flow.getRun(run.runId))!.status).toBe('enqueued');
    } finally {
      await worker.stop();
    }
  });
});

