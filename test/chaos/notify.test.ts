/**
 * LISTEN/NOTIFY faults (reliability.md C1, C3, C4, C6): the listener's connection killed, NOTIFY
 * never arriving, oversized event names and payloads, malformed notifications.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { killAllChildren } from '../helpers/child.js';
import { crashSetup, crashWorker } from '../helpers/crash.js';
import { admin } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => ({ ctx, flow } = await crashSetup('notify')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const child = (env: Record<string, string> = {}) => crashWorker(ctx.db.url, env);

describe('LISTEN/NOTIFY', () => {
  it('C1: wakes an idle worker at once, and again after its LISTEN connection is killed', async () => {
    const wf = flow.workflow('wake', async ({ input }: WorkflowContext<number>) => input);
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // let the first (empty) claim pass
      expect(await (await wf.start(1)).result({ timeout: '5 seconds' })).toBe(1);
      const pid = flow.listener.pid!;
      await flow.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(() => flow.listener.reconnects >= 1 && flow.listener.pid !== undefined && flow.listener.pid !== pid);
      expect(await (await wf.start(2)).result({ timeout: '5 seconds' })).toBe(2);
    } finally {
      await worker.stop();
    }
  });

  it('wakes a run waiting in another process when this one notifies', async () => {
    const worker = child();
    await worker.waitFor(/^READY/);
    const runId = await flow.startRun(flow.definitions.get('waiter')!, { k: 5 });
    await eventually(async () => (await flow.getRun(runId))!.status === 'waiting');
    const event = await flow.notify('go', { k: 5, note: 'from the parent' });
    expect(event.matchedWaits).toBe(1);
    expect(await flow.handle(runId).result({ timeout: '10 seconds' })).toEqual({ note: 'from the parent', pid: worker.pid });
  });

  it('C3: still completes runs by polling when NOTIFY never arrives', async () => {
    const wf = flow.workflow('no-notify', async ({ input }: WorkflowContext<number>) => input);
    const worker = flow.worker({ pollInterval: 200 });
    await worker.start();
    try {
      // Hold the wake trigger off: runs are inserted already claimable but nothing NOTIFYs.
      await flow.pool.query('ALTER TABLE durable_flow_workflow_runs DISABLE TRIGGER durable_flow_wake_on_insert');
      const runs = await Promise.all([1, 2, 3].map((n) => wf.start(n)));
      expect(await Promise.all(runs.map((r) => r.result({ timeout: '10 seconds' })))).toEqual([1, 2, 3]);
    } finally {
      await flow.pool.query('ALTER TABLE durable_flow_workflow_runs ENABLE TRIGGER durable_flow_wake_on_insert');
      await worker.stop();
    }
  });

  it('C6: ignores malformed notifications on its channels', async () => {
    const wf = flow.workflow('after-junk', async () => 'fine');
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    const changes: unknown[] = [];
    const unsubscribe = flow.onChange((change) => void changes.push(change));
    try {
      await flow.changesReady();
      await flow.pool.query(`SELECT pg_notify('durable_flow_changes', 'not json at all'), pg_notify('durable_flow_wake', repeat('x', 7000))`);
      expect(await (await wf.start({})).result({ timeout: '5 seconds' })).toBe('fine');
      await eventually(() => changes.length > 0);
    } finally {
      unsubscribe();
      await worker.stop();
    }
  });

  it('C1: catches up after a reconnect: a run started while the listener was down starts at once, not at the next poll', async () => {
    const wf = flow.workflow('missed', async ({ input }: WorkflowContext<number>) => input);
    const workerFlow = ctx.flow();
    workerFlow.workflow('missed', async ({ input }: WorkflowContext<number>) => input);
    const worker = workerFlow.worker({ pollInterval: '1 minute' });
    await worker.start();
    try {
      // Both pools hold a live connection; then nobody may connect, and the listener loses its own.
      expect(await (await wf.start(1)).result({ timeout: '5 seconds' })).toBe(1);
      const pid = workerFlow.listener.pid!;
      await admin(async (client) => {
        await client.query(`ALTER DATABASE ${ctx.db.name} ALLOW_CONNECTIONS false`);
        await client.query('SELECT pg_terminate_backend($1)', [pid]);
      });
      await eventually(() => workerFlow.listener.state !== 'listening');
      const run = await wf.start(2); // its NOTIFY reaches nobody
      await new Promise((resolve) => setTimeout(resolve, 700)); // reconnect attempts fail meanwhile
      expect((await flow.getRun(run.runId))!.status).toBe('enqueued');
      await admin((client) => client.query(`ALTER DATABASE ${ctx.db.name} ALLOW_CONNECTIONS true`));
      expect(await run.result({ timeout: '10 seconds' })).toBe(2);
      expect(workerFlow.listener.pid).not.toBe(pid);
    } finally {
      await admin((client) => client.query(`ALTER DATABASE ${ctx.db.name} ALLOW_CONNECTIONS true`));
      await worker.stop();
    }
  });

  it('C4: huge event names and payloads never break NOTIFY; names over the limit are refused, storing nothing', async () => {
    const cjk = '漢'.repeat(255); // 765 bytes, the longest name allowed
    const wf = flow.workflow('big-waiter', { queue: '隊'.repeat(255) }, async ({ step }: WorkflowContext) => {
      const event = await step.waitForEvent<{ blob: string }>(cjk);
      return event.blob.length;
    });
    const worker = flow.worker({ queues: ['隊'.repeat(255)], pollInterval: '1 minute' });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      const blob = 'x'.repeat(1024 * 1024);
      await flow.notify(cjk, { blob });
      expect(await run.result({ timeout: '10 seconds' })).toBe(blob.length);

      const before = await flow.pool.query('SELECT count(*)::int AS n FROM durable_flow_workflow_events');
      const error = await flow.notify('漢'.repeat(3000), {}).catch((e: Error) => e);
      expect((error as Error).message).toMatch(/event name to be a non-empty string of at most 255 characters, got a string of 3000/);
      const after = await flow.pool.query('SELECT count(*)::int AS n FROM durable_flow_workflow_events');
      expect(after.rows[0].n).toBe(before.rows[0].n);
      expect(() => flow.workflow('long-queue', { queue: 'q'.repeat(256) }, async () => 1)).toThrow(/queue.*at most 255 characters/);
    } finally {
      await worker.stop();
    }
  });

  it('C4: a NOTIFY payload never exceeds its limit, even for a queue name written straight into the table', async () => {
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, queue_name, status, wake_at) VALUES ('long-queue-row', 'nobody', repeat('隊', 4000), 'enqueued', now())`,
    );
    expect((await flow.getRun('long-queue-row'))!.status).toBe('enqueued');
  });
});
