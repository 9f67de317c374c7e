import express from 'express';
import request from 'supertest';
import { Sequelize } from 'sequelize';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let n = 0;
/** A workflow name of its own per test (the database is shared by the file). */
const fresh = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  ctx = await setupDatabase('startctl');
  await ctx.flow().migrate();
  await ctx.closeFlows();
});
afterEach(async () => {
  await ctx.closeFlows();
});
afterAll(async () => {
  await ctx.cleanup();
});

function newFlow(): DurableFlow {
  flow = ctx.flow();
  harness = createTestHarness(flow);
  return flow;
}

async function row(runId: string) {
  const { rows } = await flow.pool.query(
    `SELECT status, input, error, wake_at, singleton_key, rate_limit_key, admitted_at, debounce_key, debounce_deadline, priority
     FROM durable_flow_workflow_runs WHERE run_id = $1`,
    [runId],
  );
  return rows[0];
}

describe('singleton', () => {
  it("mode 'skip': while a run of the key is not finished, start() returns its id; after it finishes, a new run", async () => {
    newFlow();
    const name = fresh('single-skip');
    const wf = flow.workflow(name, { singleton: { mode: 'skip', key: (input: { account: string; n: number }) => input.account } }, async ({ input, step }) => {
      await step.waitForEvent('go', { event: `go-${name}` });
      return input.n;
    });
    const a = await wf.start({ account: 'acme', n: 1 });
    const b = await wf.start({ account: 'acme', n: 2 });
    const other = await wf.start({ account: 'globex', n: 3 });
    expect(b.runId).toBe(a.runId);
    expect(other.runId).not.toBe(a.runId);
    await harness.drain();
    const c = await wf.start({ account: 'acme', n: 4 });
    expect(c.runId).toBe(a.runId);
    expect((await row(a.runId)).singleton_key).toBe('acme');
    await flow.notify(`go-${name}`, {});
    await harness.drain();
    await harness.assertCompleted(a.runId, 1);
    const d = await wf.start({ account: 'acme', n: 5 });
    expect(d.runId).not.toBe(a.runId);
    await flow.notify(`go-${name}`, {});
    await harness.drain();
    expect(await d.result({ timeout: '5 seconds' })).toBe(5);
  });

  it("mode 'cancel': a start cancels the run in progress with its children and starts a new one", async () => {
    newFlow();
    const name = fresh('single-cancel');
    const child = flow.workflow(`${name}-child`, async ({ step }) => {
      await step.sleep('nap', '1 hour');
    });
    const wf = flow.workflow(name, { singleton: { mode: 'cancel' } }, async ({ input, step }) => {
      await step.invoke('kid', child, {});
      return input;
    });
    const first = await wf.start('first');
    await harness.drain();
    const { rows: kids } = await flow.pool.query(`SELECT run_id FROM durable_flow_workflow_runs WHERE parent_run_id = $1`, [first.runId]);
    expect(kids).toHaveLength(1);
    const second = await wf.start('second');
    expect(second.runId).not.toBe(first.runId);
    const cancelled = await flow.getRun(first.runId);
    expect(cancelled!.status).toBe('cancelled');
    expect(cancelled!.error!.message).toContain(`run ${second.runId}`);
    expect((await flow.getRun(kids[0].run_id))!.status).toBe('cancelled');
    expect((await flow.getRun(second.runId))!.status).toBe('enqueued');
    const { rows } = await flow.pool.query(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND status NOT IN ('completed', 'failed', 'cancelled')`,
      [name],
    );
    expect(rows[0].n).toBe(1);
  });

  it('an idempotency key repeated returns its run and cancels nothing', async () => {
    newFlow();
    const name = fresh('single-idem');
    const wf = flow.workflow(name, { singleton: { mode: 'cancel' } }, async ({ step }) => {
      await step.sleep('nap', '1 hour');
    });
    const a = await wf.start({}, { idempotencyKey: 'k1' });
    const again = await wf.start({}, { idempotencyKey: 'k1' });
    expect(again.runId).toBe(a.runId);
    expect((await flow.getRun(a.runId))!.status).toBe('enqueued');
    // A run id repeated: that run; a run id of another workflow's run: RUN_ID_CONFLICT, nothing cancelled.
    expect((await wf.start({}, { runId: a.runId })).runId).toBe(a.runId);
    const other = flow.workflow(fresh('plain'), async () => undefined);
    const taken = await other.start({});
    await expect(wf.start({}, { runId: taken.runId })).rejects.toMatchObject({ code: 'RUN_ID_CONFLICT' });
    expect((await flow.getRun(a.runId))!.status).toBe('enqueued');
  });
});

describe('rateLimit', () => {
  it('accepts `limit` starts per sliding period; the excess is a run cancelled with RATE_LIMITED, never silent', async () => {
    newFlow();
    const name = fresh('rate');
    const wf = flow.workflow(name, { rateLimit: { limit: 2, period: '1 minute', key: (input: { to: string }) => input.to } }, async ({ input }) => input.to);
    const a = await wf.start({ to: 'x' });
    await harness.travel('20 seconds');
    const b = await wf.start({ to: 'x' });
    const c = await wf.start({ to: 'x' });
    const y = await wf.start({ to: 'y' });
    const cancelled = await flow.getRun(c.runId);
    expect(cancelled!.status).toBe('cancelled');
    expect(cancelled!.error!.code).toBe('RATE_LIMITED');
    expect(cancelled!.error!.message).toMatch(/Rate limited: workflow ".*" \(key "x"\) accepts 2 starts per 60000 ms/);
    await expect(c.result({ timeout: '2 seconds' })).rejects.toMatchObject({ code: 'RUN_CANCELLED' });
    expect((await row(c.runId)).admitted_at).toBeNull();
    // 41 s after the first start it has left the window: one more is accepted, then none again until b leaves.
    await harness.travel('41 seconds');
    const d = await wf.start({ to: 'x' });
    const e = await wf.start({ to: 'x' });
    await harness.drain();
    for (const accepted of [a, b, d, y]) expect((await flow.getRun(accepted.runId))!.status).toBe('completed');
    expect((await flow.getRun(e.runId))!.error!.code).toBe('RATE_LIMITED');
    // The viewer's run list shows the code.
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND error->>'code' = 'RATE_LIMITED'`, [name]);
    expect(rows[0].n).toBe(2);
    // The model reads the new columns (migration 012).
    const model = await flow.models.WorkflowRun.findOne({ where: { runId: c.runId } });
    expect(model!.get('rateLimitKey')).toBe('x');
    expect(model!.get('admittedAt')).toBeNull();
    const admitted = await flow.models.WorkflowRun.findOne({ where: { runId: a.runId } });
    expect(admitted!.get('admittedAt')).toBeInstanceOf(Date);
  });

  it('a rate-limited start leaves a singleton in progress alone', async () => {
    newFlow();
    const name = fresh('rate-single');
    const wf = flow.workflow(name, { singleton: { mode: 'cancel' }, rateLimit: { limit: 1, period: '1 hour' } }, async ({ step }) => {
      await step.sleep('nap', '1 day');
    });
    const a = await wf.start({});
    const b = await wf.start({});
    expect((await flow.getRun(a.runId))!.status).toBe('enqueued');
    expect((await flow.getRun(b.runId))!.error!.code).toBe('RATE_LIMITED');
  });
});

describe('with other options', () => {
  it('a rate-limited child fails its parent\'s step.invoke with the child\'s error; a repeated idempotency key returns the RATE_LIMITED run', async () => {
    newFlow();
    const name = fresh('rate-child');
    const child = flow.workflow(`${name}-child`, { rateLimit: { limit: 1, period: '1 hour' } }, async () => 'sent');
    const parent = flow.workflow(name, { retries: 0 }, async ({ step }) => step.invoke('send', child, {}));
    const first = await parent.start({});
    const second = await parent.start({});
    await harness.drain();
    await harness.assertCompleted(first.runId);
    const failed = await flow.getRun(second.runId);
    expect(failed!.status).toBe('failed');
    expect(failed!.error!.class).toBe('ChildWorkflowFailedError');
    expect(failed!.error!.message).toContain('Rate limited');
    const limited = await child.start({}, { idempotencyKey: 'once' });
    expect((await flow.getRun(limited.runId))!.error!.code).toBe('RATE_LIMITED');
    expect((await child.start({}, { idempotencyKey: 'once' })).runId).toBe(limited.runId);
  });

  it('a folded start moves the run to the concurrency key of its input', async () => {
    newFlow();
    const name = fresh('debounce-conc');
    const wf = flow.workflow(name, { debounce: { period: '1 minute' }, concurrency: { limit: 1, key: (input: { shard: string }) => input.shard } }, async () => undefined);
    const a = await wf.start({ shard: 's1' });
    await wf.start({ shard: 's2' });
    const { rows } = await flow.pool.query('SELECT concurrency_key FROM durable_flow_workflow_runs WHERE run_id = $1', [a.runId]);
    expect(rows[0].concurrency_key).toBe(`${name}:s2`);
    await harness.travel('61 seconds');
    expect(await harness.drain()).toBe(1);
    await harness.assertCompleted(a.runId);
  });
});

describe('debounce', () => {
  it('folds starts within the period into one run with the last input, begun a period after the last; then a new burst', async () => {
    newFlow();
    const name = fresh('debounce');
    const wf = flow.workflow(name, { debounce: { period: '10 seconds', key: (input: { account: string; n: number }) => input.account } }, async ({ input }) => input.n);
    const a = await wf.start({ account: 'acme', n: 1 });
    await harness.travel('6 seconds');
    const b = await wf.start({ account: 'acme', n: 2 });
    await harness.travel('6 seconds');
    const c = await wf.start({ account: 'acme', n: 3 });
    const other = await wf.start({ account: 'globex', n: 9 });
    expect(b.runId).toBe(a.runId);
    expect(c.runId).toBe(a.runId);
    expect(other.runId).not.toBe(a.runId);
    // 12 s after the first start, not due: it begins 10 s after the last.
    expect(await harness.drain()).toBe(0);
    expect((await row(a.runId)).input).toEqual({ account: 'acme', n: 3 });
    await harness.travel('9 seconds');
    expect(await harness.drain()).toBe(0);
    await harness.travel('2 seconds');
    expect(await harness.drain()).toBe(2);
    await harness.assertCompleted(a.runId, 3);
    const d = await wf.start({ account: 'acme', n: 4 });
    expect(d.runId).not.toBe(a.runId);
  });

  it('maxWait bounds the delay from the first start', async () => {
    newFlow();
    const name = fresh('debounce-max');
    const wf = flow.workflow(name, { debounce: { period: '10 seconds', maxWait: '25 seconds' } }, async ({ input }) => input);
    const a = await wf.start(1);
    for (const i of [2, 3, 4]) {
      await harness.travel('8 seconds');
      expect((await wf.start(i)).runId).toBe(a.runId);
    }
    // 24 s: wake at 25 s (the deadline), not 34 s.
    const wake = (await row(a.runId)).wake_at as Date;
    const deadline = (await row(a.runId)).debounce_deadline as Date;
    expect(wake.getTime()).toBe(deadline.getTime());
    await harness.travel('1500 milliseconds');
    expect(await harness.drain()).toBe(1);
    await harness.assertCompleted(a.runId, 4);
    // Its time came: a start now is a new burst.
    expect((await wf.start(5)).runId).not.toBe(a.runId);
  });

  it('a start with delay is refused; the cancelOn matches follow the last input', async () => {
    newFlow();
    const name = fresh('debounce-cancel');
    const wf = flow.workflow(
      name,
      { debounce: { period: '10 seconds' }, cancelOn: [{ event: `stop-${name}`, match: (input: { id: string }) => ({ id: input.id }) }] },
      async ({ input }) => input.id,
    );
    await expect(wf.start({ id: 'a' }, { delay: '1 second' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('delay') });
    const a = await wf.start({ id: 'a' });
    await wf.start({ id: 'b' });
    await flow.notify(`stop-${name}`, { id: 'a' });
    expect((await flow.getRun(a.runId))!.status).toBe('enqueued');
    await flow.notify(`stop-${name}`, { id: 'b' });
    expect((await flow.getRun(a.runId))!.status).toBe('cancelled');
  });
});

describe('options', () => {
  it('refuses bad values (INVALID_OPTION) and nonsense combinations (INVALID_ARGUMENT) at flow.workflow()', () => {
    newFlow();
    const handler = async () => undefined;
    expect(() => flow.workflow(fresh('x'), { singleton: { mode: 'queue' as 'skip' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('singleton.mode') }));
    expect(() => flow.workflow(fresh('x'), { rateLimit: { limit: 0, period: '1 second' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('rateLimit.limit') }));
    expect(() => flow.workflow(fresh('x'), { rateLimit: { limit: 1, period: 'soon' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('rateLimit.period') }));
    expect(() => flow.workflow(fresh('x'), { debounce: { period: '1 minute', maxWait: '10 seconds' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('debounce.maxWait') }));
    expect(() => flow.workflow(fresh('x'), { debounce: { period: '1 minute', key: 'account' as never } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(() => flow.workflow(fresh('x'), { debounce: { period: '1 minute' }, singleton: { mode: 'skip' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('concurrency') }));
    expect(() => flow.workflow(fresh('x'), { debounce: { period: '1 minute' }, rateLimit: { limit: 1, period: '1 minute' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => flow.workflow(fresh('x'), { singleton: { mode: 'skip' }, schedule: { cron: '* * * * *' } }, handler)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('overlap') }));
  });

  it('a key function must return a non-empty string: a clear INVALID_ARGUMENT, nothing stored', async () => {
    newFlow();
    const name = fresh('badkey');
    const wf = flow.workflow(name, { singleton: { mode: 'skip', key: (input: { k: unknown }) => input.k as string } }, async () => undefined);
    await expect(wf.start({ k: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('singleton key function') });
    await expect(wf.start({ k: 7 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('got number') });
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1`, [name]);
    expect(rows[0].n).toBe(0);
  });

  it("composes with concurrency keys and priority: the singleton decides which runs exist, the claim when they run", async () => {
    newFlow();
    const name = fresh('compose');
    const order: string[] = [];
    const wf = flow.workflow(
      name,
      { singleton: { mode: 'skip', key: (input: { id: string }) => input.id }, concurrency: { limit: 1, key: () => 'all' } },
      async ({ input }) => {
        order.push(input.id);
      },
    );
    await wf.start({ id: 'low' }, { priority: 5 });
    await wf.start({ id: 'high' }, { priority: 1 });
    expect((await wf.start({ id: 'high' })).runId).toBeTruthy();
    await harness.drain();
    expect(order).toEqual(['high', 'low']);
  });

  it("starts inside the caller's transaction: the run exists when it commits, and a rollback leaves none", async () => {
    newFlow();
    const name = fresh('tx');
    const wf = flow.workflow(name, { singleton: { mode: 'skip' } }, async () => undefined);
    const client = await flow.pool.connect();
    try {
      await client.query('BEGIN');
      await wf.start({}, { transaction: client });
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      const kept = await wf.start({}, { transaction: client });
      await client.query('COMMIT');
      expect((await wf.start({})).runId).toBe(kept.runId);
    } finally {
      client.release();
    }
  });
});

describe("a caller's Sequelize transaction", () => {
  it('decides every option in it: a rollback leaves nothing, a commit the run', async () => {
    newFlow();
    const sequelize = new Sequelize(ctx.db.url, { logging: false });
    try {
      const rate = flow.workflow(fresh('sq-rate'), { rateLimit: { limit: 1, period: '1 hour', key: (input: { k: string }) => input.k } }, async () => undefined);
      const single = flow.workflow(fresh('sq-single'), { singleton: { mode: 'cancel' } }, async () => undefined);
      const debounced = flow.workflow(
        fresh('sq-debounce'),
        { debounce: { period: '1 minute' }, cancelOn: [{ event: 'sq-stop', match: (input: { k: string }) => ({ k: input.k }) }] },
        async () => undefined,
      );
      await sequelize
        .transaction(async (transaction) => {
          await rate.start({ k: 'a' }, { transaction });
          throw new Error('rollback');
        })
        .catch(() => undefined);
      const ids = await sequelize.transaction(async (transaction) => ({
        accepted: (await rate.start({ k: 'a' }, { transaction })).runId,
        limited: (await rate.start({ k: 'a' }, { transaction })).runId,
        first: (await single.start({}, { transaction })).runId,
        second: (await single.start({}, { transaction })).runId,
        burst: (await debounced.start({ k: '1' }, { transaction })).runId,
        folded: (await debounced.start({ k: '2' }, { transaction })).runId,
      }));
      expect((await flow.getRun(ids.accepted))!.status).toBe('enqueued');
      expect((await flow.getRun(ids.limited))!.error!.code).toBe('RATE_LIMITED');
      expect((await flow.getRun(ids.first))!.status).toBe('cancelled');
      expect((await flow.getRun(ids.second))!.status).toBe('enqueued');
      expect(ids.folded).toBe(ids.burst);
      expect((await flow.getRun(ids.burst))!.input).toEqual({ k: '2' });
      await flow.notify('sq-stop', { k: '2' });
      expect((await flow.getRun(ids.burst))!.status).toBe('cancelled');
    } finally {
      await sequelize.close();
    }
  });
});

describe('one process, many starts of one key', () => {
  it('queue in memory on one connection: a caller transaction holding the key leaves the rest of the pool free', async () => {
    flow = ctx.flow({ poolSize: 3 });
    harness = createTestHarness(flow);
    const name = fresh('burst');
    const wf = flow.workflow(name, { singleton: { mode: 'skip' } }, async () => undefined);
    const client = await flow.pool.connect();
    try {
      await client.query('BEGIN');
      const held = await wf.start({}, { transaction: client });
      // 20 starts wait for the key (the caller's transaction holds its lock): on one connection, not all.
      const waiting = Promise.all(Array.from({ length: 20 }, () => wf.start({})));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const { rows } = await flow.pool.query('SELECT 1 AS one');
      expect(rows[0].one).toBe(1);
      await client.query('COMMIT');
      const ids = new Set((await waiting).map((h) => h.runId));
      expect([...ids]).toEqual([held.runId]);
    } finally {
      client.release();
    }
  });
});

describe('one process, starts of one key at once (decided together)', () => {
  it('each sees the ones before it: 3 of 30 accepted, one singleton left, one debounced run', async () => {
    newFlow();
    const rate = flow.workflow(fresh('together-rate'), { rateLimit: { limit: 3, period: '1 hour' } }, async () => undefined);
    const single = flow.workflow(fresh('together-single'), { singleton: { mode: 'cancel' } }, async () => undefined);
    const debounced = flow.workflow(fresh('together-debounce'), { debounce: { period: '1 hour' } }, async () => undefined);
    const many = <T,>(fn: (i: number) => Promise<T>) => Promise.all(Array.from({ length: 30 }, (_, i) => fn(i)));
    const rated = await many(() => rate.start({}));
    const singles = await many(() => single.start({}));
    const folded = await many((i) => debounced.start({ i }));
    const status = async (name: string) => {
      const { rows } = await flow.pool.query(
        `SELECT status, error->>'code' AS code, count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 GROUP BY 1, 2 ORDER BY 1`,
        [name],
      );
      return rows;
    };
    expect(await status(rate.name)).toEqual([{ status: 'cancelled', code: 'RATE_LIMITED', n: 27 }, { status: 'enqueued', code: null, n: 3 }]);
    expect(new Set(rated.map((h) => h.runId)).size).toBe(30);
    expect(await status(single.name)).toEqual([{ status: 'cancelled', code: null, n: 29 }, { status: 'enqueued', code: null, n: 1 }]);
    expect(new Set(singles.map((h) => h.runId)).size).toBe(30);
    expect(new Set(folded.map((h) => h.runId)).size).toBe(1);
    expect((await flow.getRun(folded[0]!.runId))!.input).toEqual({ i: 29 });
  });
});

describe('the viewer', () => {
  it("shows each workflow's limits on the Workflows page, and a RATE_LIMITED run's code in the run list", async () => {
    newFlow();
    const name = fresh('shown');
    const wf = flow.workflow(name, { rateLimit: { limit: 1, period: '30 seconds', key: (input: { a: string }) => input.a }, concurrency: 2 }, async () => undefined);
    flow.workflow(fresh('shown-debounce'), { debounce: { period: '500 milliseconds', maxWait: '2 minutes' } }, async () => undefined);
    flow.workflow(fresh('shown-single'), { singleton: { mode: 'cancel' } }, async () => undefined);
    await wf.start({ a: 'x' });
    const limited = await wf.start({ a: 'x' });
    const app = express();
    app.use('/df', flow.router({ allowUnauthenticated: true }));
    const page = await request(app).get('/df/workflows');
    expect(page.status).toBe(200);
    const cell = (workflow: string) => new RegExp(`data-workflow="${workflow}"[\\s\\S]*?</td>`).exec(page.text)![0];
    expect(cell(name)).toContain('concurrency 2');
    expect(cell(name)).toContain('rate limit 1 per 30 s per key');
    expect(cell(`shown-debounce-${n - 1}`)).toContain('debounce 500 ms, max wait 2 min');
    expect(cell(`shown-single-${n}`)).toContain('singleton (cancel)');
    const list = await request(app).get(`/df/?workflow=${encodeURIComponent(name)}`);
    expect(list.status).toBe(200);
    expect(list.text).toContain(limited.runId);
    expect(list.text).toContain('RATE_LIMITED');
  });
});
