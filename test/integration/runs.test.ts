import { Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow, DurableFlowError } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('runs');
  flow = ctx.flow({ backoff: { initial: 10, jitter: 0 } });
});
afterAll(async () => {
  await ctx.cleanup();
});

describe('starting runs', () => {
  it('returns the first run for a repeated runId or idempotencyKey', async () => {
    const wf = flow.workflow('idem', async ({ input }: WorkflowContext<number>) => input);
    const a = await wf.start(1, { runId: 'order-1' });
    const b = await wf.start(2, { runId: 'order-1' });
    expect(b.runId).toBe('order-1');
    const c = await wf.start(3, { idempotencyKey: 'key-1' });
    const d = await wf.start(4, { idempotencyKey: 'key-1' });
    expect(d.runId).toBe(c.runId);
    expect((await flow.getRun(a.runId))!.input).toBe(1);
    expect((await flow.getRun(c.runId))!.input).toBe(3);
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'idem'`);
    expect(rows[0].n).toBe(2);
  });

  it('starts concurrently with one idempotency key exactly once', async () => {
    const wf = flow.workflow('idem-race', async () => 1);
    const handles = await Promise.all(Array.from({ length: 20 }, (_, i) => wf.start(i, { idempotencyKey: 'race' })));
    expect(new Set(handles.map((h) => h.runId)).size).toBe(1);
  });

  it('exists exactly when the caller’s Sequelize transaction commits', async () => {
    const sequelize = new Sequelize(ctx.db.url, { logging: false });
    try {
      const wf = flow.workflow('in-tx', async () => 'ok');
      let rolledBack = '';
      await sequelize
        .transaction(async (transaction) => {
          rolledBack = (await wf.start({}, { transaction })).runId;
          expect(await flow.getRun(rolledBack)).toBeNull(); // not committed yet
          throw new Error('rollback');
        })
        .catch(() => undefined);
      expect(await flow.getRun(rolledBack)).toBeNull();
      const committed = await sequelize.transaction(async (transaction) => (await wf.start({}, { transaction })).runId);
      expect((await flow.getRun(committed))!.status).toBe('enqueued');
      // Events too.
      await sequelize.transaction(async (transaction) => {
        await flow.notify('in_tx_event', { a: 1 }, { transaction, id: 'tx-evt' });
      });
      const again = await flow.notify('in_tx_event', { a: 1 }, { id: 'tx-evt' });
      expect(again).toMatchObject({ duplicate: true, payload: { a: 1 } });
    } finally {
      await sequelize.close();
    }
  });

  it('honours delay and priority', async () => {
    const order: number[] = [];
    const wf = flow.workflow('prio', async ({ input, step }: WorkflowContext<number>) => step.run('record', () => order.push(input)));
    await wf.start(1, { priority: 5 });
    await wf.start(2, { priority: 1 });
    await wf.start(3, { priority: 3 });
    const delayed = await wf.start(99, { delay: '1 hour' });
    const worker = flow.worker({ concurrency: 1, pollInterval: 50 });
    await worker.start();
    try {
      await eventually(() => order.length === 3);
      expect(order).toEqual([2, 3, 1]);
      const info = await flow.getRun(delayed.runId);
      expect(info!.status).toBe('enqueued');
      expect(info!.wakeAt!.getTime() - Date.now()).toBeGreaterThan(3500_000);
    } finally {
      await worker.stop();
    }
  });
});

describe('cancel and retry', () => {
  it('cancels a waiting run: its wait is cancelled and result() rejects', async () => {
    const wf = flow.workflow('cancel-me', async ({ step }: WorkflowContext) => step.waitForEvent('never'));
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      expect(await flow.cancel(run.runId)).toBe(true);
      expect(await flow.cancel(run.runId)).toBe(false);
      await expect(run.result()).rejects.toThrow(/was cancelled/);
      const timeline = await flow.timeline(run.runId);
      expect(timeline!.steps[0]!.waits[0]!.status).toBe('cancelled');
      expect((await flow.notify('never', {})).matchedWaits).toBe(0);
      await expect(flow.cancel('no-such-run')).rejects.toThrow(/No run with id "no-such-run"/);
    } finally {
      await worker.stop();
    }
  });

  it('stops a running run at its next step when cancelled', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let after = 0;
    const wf = flow.workflow('cancel-running', async ({ step }: WorkflowContext) => {
      await step.run('slow', () => gate);
      await step.run('after', () => ++after);
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'running');
      await flow.cancel(run.runId);
      release();
      await expect(run.result()).rejects.toThrow(/cancelled/);
      await new Promise((r) => setTimeout(r, 100));
      expect(after).toBe(0);
      expect((await flow.getRun(run.runId))!.status).toBe('cancelled');
    } finally {
      await worker.stop();
    }
  });

  it('retries a failed run from its failed step, keeping completed steps', async () => {
    const calls = { a: 0, b: 0 };
    let broken = true;
    const wf = flow.workflow('retry-me', async ({ step }: WorkflowContext) => {
      await step.run('a', () => ++calls.a);
      return step.run('b', { retries: 1 }, () => {
        calls.b++;
        if (broken) throw new Error('still broken');
        return 'fixed';
      });
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await expect(run.result()).rejects.toThrow(/still broken/);
      expect(calls).toEqual({ a: 1, b: 2 });
      await expect(flow.retry('no-such-run')).rejects.toThrow(/No run/);
      broken = false;
      await flow.retry(run.runId);
      expect(await flow.handle(run.runId).result()).toBe('fixed');
      expect(calls).toEqual({ a: 1, b: 3 });
      await expect(flow.retry(run.runId)).rejects.toThrow(/is completed; only failed runs can be retried/);
    } finally {
      await worker.stop();
    }
  });

  it('takes concurrent retries and cancels of one failed run in turn: exactly one retry acts, from any process', async () => {
    const wf = flow.workflow('retry-race', async ({ step }: WorkflowContext) =>
      step.run('boom', { retries: 0 }, () => {
        throw new Error('boom');
      }),
    );
    const other = ctx.flow();
    for (let round = 0; round < 5; round++) {
      const worker = flow.worker({ pollInterval: 50 });
      await worker.start();
      const run = await wf.start({ round });
      try {
        await expect(run.result()).rejects.toThrow(/boom/);
      } finally {
        await worker.stop();
      }
      {
        const epoch = async () =>
          (await flow.pool.query(`SELECT lease_epoch::int AS e FROM durable_flow_workflow_runs WHERE run_id = $1`, [run.runId]))
            .rows[0].e as number;
        const before = await epoch();
        // Four retries and a cancel at once, from two flows (two sets of connections).
        const outcomes = await Promise.allSettled([
          flow.retry(run.runId),
          other.retry(run.runId),
          flow.retry(run.runId),
          other.retry(run.runId),
        ]);
        const done = outcomes.filter((o) => o.status === 'fulfilled');
        expect(done).toHaveLength(1);
        for (const o of outcomes.filter((o) => o.status === 'rejected')) {
          expect((o as PromiseRejectedResult).reason).toMatchObject({ code: 'INVALID_STATE' });
          expect(String((o as PromiseRejectedResult).reason.message)).toMatch(/is ready; only failed runs can be retried/);
        }
        expect(await epoch()).toBe(before + 1);
        const step = await flow.pool.query(
          `SELECT s.status, s.attempts FROM durable_flow_workflow_steps s JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.name = 'boom'`,
          [run.runId],
        );
        expect(step.rows).toEqual([{ status: 'pending', attempts: 0 }]);
        // A cancel racing a retry of the run it cancels: whichever goes second sees the other's outcome.
        expect(await other.cancel(run.runId, { reason: 'stop it' })).toBe(true);
        await expect(flow.retry(run.runId)).rejects.toThrow(/is cancelled; only failed runs can be retried/);
        expect(await flow.cancel(run.runId)).toBe(false);
        expect((await flow.getRun(run.runId))!.status).toBe('cancelled');
      }
    }
  });

  it('retries a run that failed on a wait timeout by waiting again', async () => {
    const wf = flow.workflow('retry-wait', async ({ step }: WorkflowContext) => step.waitForEvent('late', { timeout: '1 minute' }));
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      flow.setClockOffset(120_000);
      await expect(run.result()).rejects.toThrow(/Timed out waiting for event "late"/);
      flow.setClockOffset(0);
      await flow.retry(run.runId);
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      await flow.notify('late', { finally: true });
      expect(await flow.handle(run.runId).result()).toEqual({ finally: true });
    } finally {
      flow.setClockOffset(0);
      await worker.stop();
    }
  });
});

describe('getRun and timeline', () => {
  it('returns null for an unknown run and the full story of a known one', async () => {
    expect(await flow.getRun('missing')).toBeNull();
    expect(await flow.timeline('missing')).toBeNull();
    const wf = flow.workflow('story', async ({ step, log }: WorkflowContext<{ who: string }>) => {
      log.info('hello');
      await step.run('greet', () => 'hi');
      const evt = await step.waitForEvent('go', { match: { ok: true } });
      log.info('got', { evt });
      return 'done';
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({ who: 'ana' });
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      await flow.notify('go', { ok: true });
      await run.result();
      const info = await flow.getRun(run.runId);
      expect(info).toMatchObject({ runId: run.runId, workflow: 'story', status: 'completed', input: { who: 'ana' }, output: 'done', error: null, parentRunId: null, childRunIds: [] });
      expect(info!.completedAt).toBeInstanceOf(Date);
      const timeline = await flow.timeline(run.runId);
      expect(timeline!.items.map((i) => `${i.type}:${i.name}`)).toEqual(['log:hello', 'step:greet', 'step:go', 'wait:go', 'event:go', 'log:got']);
      expect(timeline!.steps[1]!.events[0]!.payload).toEqual({ ok: true });
    } finally {
      await worker.stop();
    }
  });
});

describe('options', () => {
  it('refuses bad options naming the option, the value and what was expected', () => {
    expect(() => new DurableFlow({ databaseUrl: ctx.db.url, leaseTtl: -5 })).toThrow('Expected `leaseTtl` to be a positive duration such as 5000 (ms)');
    expect(() => new DurableFlow({ databaseUrl: ctx.db.url, leaseTtl: 'soon' })).toThrow(/Expected `leaseTtl` to be .*got `"soon"` \(string\)/);
    expect(() => new DurableFlow({ databaseUrl: ctx.db.url, retries: 1.5 })).toThrow('Expected `retries` to be an integer from 0 to 1000, got `1.5` (number)');
    expect(() => new DurableFlow({ databaseUrl: ctx.db.url, schema: 'x; drop' })).toThrow(/Expected `schema` to be a plain Postgres identifier/);
    expect(() => new DurableFlow({ databaseUrl: ctx.db.url, leaseTtl: '10 seconds', heartbeatInterval: '20 seconds' })).toThrow(/shorter than `leaseTtl`/);
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      expect(() => new DurableFlow({})).toThrow(/durable-flow needs a database: pass `databaseUrl`/);
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
    expect(() => flow.worker({ concurrency: 0 })).toThrow('Expected `concurrency` to be an integer from 1 to 10000, got `0` (number)');
    const error = (() => {
      try {
        new DurableFlow({ databaseUrl: ctx.db.url, poolSize: 1 });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(DurableFlowError);
    expect((error as DurableFlowError).code).toBe('INVALID_OPTION');
  });
});
