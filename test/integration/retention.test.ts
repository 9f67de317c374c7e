import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow, DurableFlowError } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { PRUNE_LOCK_NAMESPACE, pruneLocked } from '../../lib/retention/prune.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await setupDatabase('retention');
  await ctx.flow().migrate();
});
afterAll(async () => {
  await ctx.cleanup();
});

const DAY = 24 * 3600_000;

async function count(flow: DurableFlow, table: string, where = 'TRUE', params: unknown[] = []): Promise<number> {
  const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, params);
  return rows[0].n as number;
}

async function statuses(flow: DurableFlow, runIds: string[]): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const id of runIds) out[id] = (await flow.getRun(id))?.status ?? null;
  return out;
}

describe('retention', () => {
  it('prunes only finished runs past their age, with everything that belongs to them; a run of any age that has not finished stays', async () => {
    const flow = ctx.flow({ backoff: { initial: '1 year', jitter: 0 } });
    const harness = createTestHarness(flow);
    await harness.reset();
    const done = flow.workflow('r-done', async ({ step, log }: WorkflowContext) => {
      log.info('hello');
      await step.run('a', () => 1);
      return step.run('b', () => 2);
    });
    const boom = flow.workflow('r-boom', async ({ step }: WorkflowContext) =>
      step.run('x', { retries: 0 }, () => {
        throw new Error('boom');
      }),
    );
    const sleeper = flow.workflow('r-sleep', async ({ step }: WorkflowContext) => step.sleep('s', '1 year'));
    const waiter = flow.workflow('r-wait', async ({ step }: WorkflowContext) =>
      step.waitForEvent('never', { match: { k: 1 }, allowPastEvents: true }),
    );
    const retrier = flow.workflow('r-retry', async ({ step }: WorkflowContext) =>
      step.run('flaky', { retries: 3 }, () => {
        throw new Error('again');
      }),
    );
    const cancelMe = flow.workflow('r-cancel', { cancelOn: [{ event: 'stop-it', match: { k: 'input.k' } }] }, async ({ step }: WorkflowContext) =>
      step.sleep('z', '1 year'),
    );
    const runs = {
      completed: (await done.start({})).runId,
      failed: (await boom.start({})).runId,
      sleeping: (await sleeper.start({})).runId,
      waiting: (await waiter.start({})).runId,
      retrying: (await retrier.start({})).runId,
      cancelled: (await cancelMe.start({ k: 7 })).runId,
      enqueued: (await done.start({}, { delay: '1 year' })).runId,
    };
    await harness.drain();
    expect(await flow.cancel(runs.cancelled)).toBe(true);
    expect(await statuses(flow, Object.values(runs))).toEqual({
      [runs.completed]: 'completed',
      [runs.failed]: 'failed',
      [runs.sleeping]: 'sleeping',
      [runs.waiting]: 'waiting',
      [runs.retrying]: 'retrying',
      [runs.cancelled]: 'cancelled',
      [runs.enqueued]: 'enqueued',
    });
    const completedId = (await flow.pool.query(`SELECT id FROM durable_flow_workflow_runs WHERE run_id = $1`, [runs.completed])).rows[0].id;
    expect(await count(flow, 'durable_flow_workflow_steps', 'workflow_run_id = $1', [completedId])).toBe(2);
    expect(await count(flow, 'durable_flow_workflow_logs', 'workflow_run_id = $1', [completedId])).toBe(1);

    // Nothing is old yet.
    expect(await flow.prune({ dryRun: true })).toEqual({ runs: 0, events: 0, audit: 0 });
    expect(await flow.prune()).toEqual({ runs: 0, events: 0, audit: 0 });

    // 31 days on: completed and cancelled runs (30 days) go, the failed one (90 days) stays.
    await harness.travel(31 * DAY);
    expect(await flow.prune({ dryRun: true })).toEqual({ runs: 2, events: 0, audit: 0 });
    expect(await count(flow, 'durable_flow_workflow_runs')).toBe(7); // a dry run deletes nothing
    expect(await flow.prune()).toEqual({ runs: 2, events: 0, audit: 0 });
    expect(await statuses(flow, Object.values(runs))).toEqual({
      [runs.completed]: null,
      [runs.failed]: 'failed',
      [runs.sleeping]: 'sleeping',
      [runs.waiting]: 'waiting',
      [runs.retrying]: 'retrying',
      [runs.cancelled]: null,
      [runs.enqueued]: 'enqueued',
    });
    expect(await count(flow, 'durable_flow_workflow_steps', 'workflow_run_id = $1', [completedId])).toBe(0);
    expect(await count(flow, 'durable_flow_workflow_logs', 'workflow_run_id = $1', [completedId])).toBe(0);
    expect(await count(flow, 'durable_flow_cancel_triggers')).toBe(0);

    // 100 days on: the failed run goes; every run that has not finished is still there, with its steps and waits.
    await harness.travel(100 * DAY);
    expect(await flow.prune()).toEqual({ runs: 1, events: 0, audit: 0 });
    const left = await statuses(flow, Object.values(runs));
    expect(Object.values(left).filter((s) => s !== null).sort()).toEqual(['enqueued', 'retrying', 'sleeping', 'waiting']);
    expect(await count(flow, 'durable_flow_workflow_waits', `status = 'pending'`)).toBe(1);
    // The waiting run still wakes: its wait, even for a past event, was not pruned from under it.
    await harness.resumeWorkflowsFor('never', { k: 1 });
    expect((await flow.getRun(runs.waiting))!.status).toBe('completed');
  });

  it('prunes old events no kept run matched and no pending wait could still match', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    await harness.reset();
    const waiter = flow.workflow('e-wait', async ({ step }: WorkflowContext) => step.waitForEvent('paid', { match: { order: 1 } }));
    const pending = flow.workflow('e-pending', async ({ step }: WorkflowContext) =>
      step.waitForEvent('maybe', { match: { order: 99 }, allowPastEvents: true }),
    );
    const matched = await waiter.start({});
    await pending.start({});
    await harness.drain();
    await harness.resumeWorkflowsFor('paid', { order: 1 }); // matched by a run that is kept (failed-age policy below)
    await flow.notify('lonely', { any: 1 }); // nobody waits
    await flow.notify('maybe', { order: 1 }); // a pending wait of this name exists
    expect((await flow.getRun(matched.runId))!.status).toBe('completed');
    const keepRuns = new DurableFlow({ databaseUrl: ctx.db.url, logger: false, retention: { completed: false } });
    ctx.flows.push(keepRuns);
    await harness.travel(8 * DAY);
    keepRuns.setClockOffset(flow.clockOffsetMs);
    expect(await keepRuns.prune({ dryRun: true })).toEqual({ runs: 0, events: 1, audit: 0 });
    expect(await keepRuns.prune()).toEqual({ runs: 0, events: 1, audit: 0 });
    const names = (await flow.pool.query(`SELECT name FROM durable_flow_workflow_events ORDER BY id`)).rows.map((r) => r.name);
    expect(names).toEqual(['paid', 'maybe']);
    // The matched run's timeline still shows its event.
    const timeline = await flow.timeline(matched.runId);
    expect(timeline!.items.map((i) => i.type)).toContain('event');
    // Once the run that matched it is pruned, the event goes too (runs are pruned first, then events).
    await harness.travel(30 * DAY);
    expect(await flow.prune()).toEqual({ runs: 1, events: 1, audit: 0 });
    expect((await flow.pool.query(`SELECT name FROM durable_flow_workflow_events`)).rows.map((r) => r.name)).toEqual(['maybe']);
  });

  it('keeps a finished child while its parent runs; after the prune, the same idempotency key starts a new run', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    await harness.reset();
    const child = flow.workflow('c-child', async () => 'kid');
    const parent = flow.workflow('c-parent', async ({ step }: WorkflowContext) => {
      const out = await step.invoke('kid', child, {});
      await step.sleep('long', '1 year');
      return out;
    });
    const p = await parent.start({});
    await harness.drain();
    const [kid] = (await flow.getRun(p.runId))!.childRunIds;
    expect((await flow.getRun(kid!))!.status).toBe('completed');
    await harness.travel(31 * DAY);
    expect(await flow.prune()).toEqual({ runs: 0, events: 0, audit: 0 });
    expect((await flow.getRun(kid!))!.status).toBe('completed');

    const keyed = await child.start({}, { idempotencyKey: 'once' });
    await harness.drain();
    expect((await child.start({}, { idempotencyKey: 'once' })).runId).toBe(keyed.runId);
    await harness.travel(31 * DAY);
    await flow.prune();
    expect(await flow.getRun(keyed.runId)).toBeNull();
    const again = await child.start({}, { idempotencyKey: 'once' });
    expect(again.runId).not.toBe(keyed.runId);
  });

  it('prunes nothing with retention: false, and refuses a bad retention naming what is wrong', async () => {
    const flow = ctx.flow({ retention: false });
    const harness = createTestHarness(flow);
    await harness.reset();
    const wf = flow.workflow('k-keep', async () => 1);
    await wf.start({});
    await harness.drain();
    await harness.travel(3650 * DAY);
    expect(await flow.prune({ dryRun: true })).toEqual({ runs: 0, events: 0, audit: 0 });
    expect(await flow.prune()).toEqual({ runs: 0, events: 0, audit: 0 });
    expect(await count(flow, 'durable_flow_workflow_runs')).toBe(1);
    const bad = (retention: unknown) => () => new DurableFlow({ databaseUrl: ctx.db.url, retention: retention as never });
    expect(bad({ completed: 'soon' })).toThrow(/`retention.completed`.*or false to keep them for ever/);
    expect(bad({ complete: '1 day' })).toThrow(/Unknown `retention` key "complete": expected completed, cancelled, failed, events, audit/);
    expect(bad({ failed: 10 })).toThrow(/`retention.failed` to be at least 1 second/);
    expect(bad('30 days')).toThrow(/Expected `retention` to be an object/);
    expect(bad({ events: [] })).toThrow(DurableFlowError);
    expect(bad({ completed: '1 day', failed: false })).not.toThrow();
  });

  it('keeps the audit trail longer than the runs it names (400 days by default), then prunes it', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    await harness.reset();
    const wf = flow.workflow('audited', async () => 1);
    const run = await wf.start({});
    expect(await flow.cancel(run.runId, { actor: 'ops', reason: 'not wanted' })).toBe(true);
    await harness.travel(31 * DAY);
    expect(await flow.prune()).toMatchObject({ runs: 1, audit: 0 });
    expect(await flow.getRun(run.runId)).toBeNull();
    expect(await flow.audit({ runId: run.runId })).toMatchObject([{ action: 'cancel', actor: 'ops', reason: 'not wanted', workflow: 'audited' }]);
    await harness.travel(370 * DAY);
    expect(await flow.prune({ dryRun: true })).toMatchObject({ audit: 1 });
    expect(await flow.prune()).toMatchObject({ audit: 1 });
    expect(await flow.audit({ runId: run.runId })).toEqual([]);
    const keep = ctx.flow({ retention: { audit: false } });
    const keepHarness = createTestHarness(keep);
    await keep.pause((await wf.start({})).runId);
    await keepHarness.travel(4000 * DAY);
    expect(await keep.prune()).toMatchObject({ audit: 0 });
  });

  it('prunes one process at a time: a held prune lock makes a background pass give up, and flow.prune wait for it', async () => {
    const flow = ctx.flow();
    const holder = await flow.pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1, hashtext($2))', [PRUNE_LOCK_NAMESPACE, 'public']);
      const retention = { completedMs: 1000, cancelledMs: 1000, failedMs: 1000, eventsMs: 1000, auditMs: 1000 };
      expect(await pruneLocked(flow.pool, flow.tables, { retention, offsetMs: 0, wait: false })).toBeNull();
      let finished = false;
      const waiting = flow.prune().then((result) => {
        finished = true;
        return result;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(finished).toBe(false);
      await holder.query('SELECT pg_advisory_unlock($1, hashtext($2))', [PRUNE_LOCK_NAMESPACE, 'public']);
      expect(await waiting).toEqual({ runs: expect.any(Number), events: expect.any(Number), audit: expect.any(Number) });
    } finally {
      holder.release();
    }
  });

  it('loses nothing when pruning runs while runs flow: every run finishes, only finished runs go', async () => {
    // Events are kept longer: an event sent before its wait exists is matched only while it is kept
    // (a documented limit of allowPastEvents), and this test sends them early on purpose.
    const flow = ctx.flow({ retention: { completed: '1 second', cancelled: '1 second', failed: '1 second', events: '1 hour' } });
    const harness = createTestHarness(flow);
    await harness.reset();
    const wf = flow.workflow('flow-through', async ({ step, input }: WorkflowContext<{ n: number }>) => {
      const a = await step.run('a', () => input.n);
      await step.sleep('pause', 1500);
      const e = await step.waitForEvent<{ n: number }>('go', { match: { n: input.n }, allowPastEvents: true });
      return step.run('b', () => a + e.n);
    });
    const worker = flow.worker({ concurrency: 20, pollInterval: 50 });
    await worker.start();
    let pruned = 0;
    let stop = false;
    const pruner = (async () => {
      while (!stop) {
        pruned += (await flow.prune()).runs;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const handles = await Promise.all(Array.from({ length: 60 }, (_, n) => wf.start({ n })));
      const results = handles.map((h) => h.result({ timeout: '60 seconds' }));
      // Each run's event comes while it sleeps or waits (older than the events' retention by the time it waits, for some).
      for (let n = 0; n < 60; n++) {
        await flow.notify('go', { n });
        if (n % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 300));
      }
      expect(await Promise.all(results)).toEqual(Array.from({ length: 60 }, (_, n) => 2 * n));
      await eventually(() => pruned >= 60, 20_000);
    } finally {
      stop = true;
      await pruner;
      await worker.stop();
    }
    expect(await count(flow, 'durable_flow_workflow_runs', `workflow_name = 'flow-through'`)).toBe(0);
    expect(await count(flow, 'durable_flow_workflow_steps')).toBe(0);
  });

  it('a prune killed mid-way (SIGKILL) leaves whole runs, and the next prune finishes the job', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    await harness.reset();
    // 4,000 old finished runs with 3 steps and a log each, and 50 old runs that have not finished.
    await flow.pool.query(`
      WITH r AS (
        INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, created_at, completed_at, cancelled_at, wake_at)
        SELECT 'old-' || g, 'bulk', CASE WHEN g <= 4000 THEN 'completed' ELSE 'sleeping' END,
               now() - interval '60 days', CASE WHEN g <= 4000 THEN now() - interval '59 days' END, NULL,
               CASE WHEN g > 4000 THEN now() + interval '1 year' END
        FROM generate_series(1, 4050) g RETURNING id),
      s AS (INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, position)
            SELECT r.id, 's' || i, 'succeeded', i FROM r CROSS JOIN generate_series(1, 3) i RETURNING workflow_run_id)
      INSERT INTO durable_flow_workflow_logs (workflow_run_id, key, level, message)
      SELECT r.id, 'k', 'info', 'hello' FROM r`);
    const child = spawnFixture('prune-process.ts', { DATABASE_URL: ctx.db.url });
    try {
      await eventually(async () => (await count(flow, 'durable_flow_workflow_runs')) < 4050 - 500, 30_000, 5);
      child.child.kill('SIGKILL');
      await child.exited;
    } finally {
      child.child.kill('SIGKILL');
    }
    // Its backend may finish the statement in flight before it notices its client is gone: wait until
    // the session is over (its prune lock is free).
    await eventually(
      async () => (await count(flow, 'pg_locks', `locktype = 'advisory' AND classid::bigint = $1 AND granted`, [PRUNE_LOCK_NAMESPACE])) === 0,
      10_000,
    );
    const after = await count(flow, 'durable_flow_workflow_runs');
    expect(after).toBeGreaterThan(50);
    // Whole runs: every remaining run has its 3 steps and its log; no step or log lost its run.
    expect(await count(flow, 'durable_flow_workflow_steps')).toBe(after * 3);
    expect(await count(flow, 'durable_flow_workflow_logs')).toBe(after);
    const rest = await flow.prune();
    expect(rest.runs).toBe(after - 50);
    expect(await count(flow, 'durable_flow_workflow_runs', `status = 'sleeping'`)).toBe(50);
    expect(await count(flow, 'durable_flow_workflow_runs')).toBe(50);
    expect(await count(flow, 'durable_flow_workflow_steps')).toBe(150);
  });
});
