/**
 * Break-it tests of issue 16's merged pieces where they meet (brief H6): deadlines, start control,
 * throttle, event triggers. Each test proved a bug before its fix.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let n = 0;
const fresh = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  ctx = await setupDatabase('review');
  await ctx.flow().migrate();
  await ctx.closeFlows();
});
afterEach(async () => {
  await ctx.closeFlows();
});
afterAll(async () => {
  await ctx.cleanup();
});

async function runOfEvent(flow: DurableFlow, workflow: string): Promise<{ status: string; deadline_at: Date | null; occurred_at: Date; error: { code?: string } | null }> {
  const { rows } = await flow.pool.query(
    `SELECT r.status, r.deadline_at, e.occurred_at, r.error FROM durable_flow_workflow_runs r
     JOIN durable_flow_workflow_events e ON r.idempotency_key = 'event:' || e.id::text
     WHERE r.workflow_name = $1`,
    [workflow],
  );
  expect(rows).toHaveLength(1);
  return rows[0];
}

describe('event triggers × deadlines', () => {
  it("a deferred trigger start (throttle) counts the workflow's timeout from the event, as a direct trigger start does", async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('order.placed');
    const direct = fresh('on-direct');
    const deferred = fresh('on-deferred');
    flow.workflow(direct, { on: [{ event }], timeout: '1 hour' }, async ({ input }) => input);
    flow.workflow(deferred, { on: [{ event }], timeout: '1 hour', throttle: { limit: 10, period: '1 hour' } }, async ({ input }) => input);
    await flow.migrate();
    await ctx.flow().notify(event, { n: 1 });
    // No worker of the workflows for 50 minutes (a deploy, an outage): the pending start waits.
    await harness.travel('50 minutes');
    await flow.pool.query(`UPDATE durable_flow_workflow_runs SET wake_at = wake_at + interval '1 day' WHERE workflow_name = $1`, [direct]);
    await harness.drain();
    const a = await runOfEvent(flow, direct);
    const b = await runOfEvent(flow, deferred);
    expect(a.deadline_at!.getTime() - a.occurred_at.getTime()).toBe(3_600_000);
    expect(Math.abs(b.deadline_at!.getTime() - b.occurred_at.getTime() - 3_600_000)).toBeLessThan(1000);
    expect(b.status).toBe('completed');
  });

  it('a deferred trigger start made after its timeout passed since the event ends with RUN_TIMEOUT without running', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('order.placed');
    const name = fresh('on-late');
    let ran = 0;
    flow.workflow(name, { on: [{ event }], timeout: '10 minutes', debounce: { period: '1 second' } }, async ({ input }) => {
      ran++;
      return input;
    });
    await flow.migrate();
    await ctx.flow().notify(event, { n: 1 });
    await harness.travel('20 minutes');
    await harness.drain();
    await harness.travel('2 seconds');
    await harness.drain();
    const run = await runOfEvent(flow, name);
    expect(run.status).toBe('failed');
    expect(run.error?.code).toBe('RUN_TIMEOUT');
    expect(ran).toBe(0);
  });
});

/** One claim of `workflow`'s queue, as a worker's (lease of a day), on the flow's clock plus `offsetMs`; the run ids leased. */
async function claim(flow: DurableFlow, workflow: string, offsetMs: number, limit = 10): Promise<string[]> {
  const { rows } = await flow.pool.query(
    `SELECT runs FROM durable_flow_claim($1::text[], $2::text[], $3, 'review-worker', 86400000, $4, 'v')`,
    [['default'], [workflow], limit, offsetMs],
  );
  return ((rows[0].runs ?? []) as { run_id?: string; runId?: string }[]).map((r) => r.run_id ?? r.runId!);
}

describe('the claim: throttle × concurrency keys', () => {
  it("a run waiting for its throttle, pulled in by another key's due run, still waits for its concurrency slot", async () => {
    const flow = ctx.flow();
    const name = fresh('throttle-keyed');
    const wf = flow.workflow(
      name,
      { throttle: { limit: 1, period: '1 hour' }, concurrency: { limit: 1, key: (input: { k: string }) => input.k } },
      async () => 'ok',
    );
    await flow.migrate();
    const hour = 3_600_000;
    const a = (await wf.start({ k: 'x' })).runId;
    expect(await claim(flow, name, 0)).toEqual([a]); // a begins (key x, a day's lease: still running below)
    const b1 = (await wf.start({ k: 'y' })).runId;
    const b2 = (await wf.start({ k: 'z' })).runId;
    const b3 = (await wf.start({ k: 'x' })).runId;
    expect(await claim(flow, name, 0)).toEqual([]); // all three wait for the throttle, in turn b1, b2, b3
    await flow.cancel(b1); // b2's turn moves earlier (the throttle_next trigger); b3's stays a later hint
    expect(await claim(flow, name, 0)).toEqual([]);
    expect(await claim(flow, name, hour + 1000)).toEqual([b2]);
    // A waiting run's wake_at is a hint (claim.sql: the runs waiting for the key are taken whatever their
    // wake_at, so the turn order holds): here, one later than its turn.
    await flow.pool.query(`UPDATE durable_flow_workflow_runs SET wake_at = wake_at + interval '1 hour' WHERE run_id = $1`, [b3]);
    // Two hours on, the window has room for b3 (first in turn), not due; a new run of key w is due and
    // makes the claim visit the throttle key, which pulls b3 in. Key x's one slot is a's (still running).
    const c = (await wf.start({ k: 'w' })).runId;
    const at = 2 * hour + 2000;
    const running = async (k: string) =>
      (await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE concurrency_key = $1 AND status = 'running'`, [`${name}:${k}`])).rows[0].n as number;
    expect(await claim(flow, name, at)).not.toContain(b3);
    expect(await running('x')).toBe(1);
    expect(await claim(flow, name, at)).toEqual([]); // b3 (its turn) now waits for key x's slot
    const state = async (id: string) =>
      (await flow.pool.query(`SELECT status, concurrency_waiting FROM durable_flow_workflow_runs WHERE run_id = $1`, [id])).rows[0];
    expect(await state(b3)).toEqual({ status: 'enqueued', concurrency_waiting: true });
    // Not lost: when a leaves, b3 takes the slot (and the throttle's room); c waits for the next window.
    await flow.cancel(a);
    expect(await claim(flow, name, at)).toEqual([b3]);
    expect(await running('x')).toBe(1);
    expect((await state(c)).status).toBe('enqueued');
  });
});

describe('throttle × operator reruns', () => {
  it("flow.rerunFrom of a throttled workflow's run is a new begin: it waits for the window like any start, and replays its copied steps", async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const name = fresh('throttle-rerun');
    const calls = { s1: 0, s2: 0 };
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour' } }, async ({ step }) => {
      const a = await step.run('s1', async () => ++calls.s1);
      const b = await step.run('s2', async () => ++calls.s2);
      return { a, b };
    });
    await flow.migrate();
    const original = (await wf.start({})).runId;
    await harness.drain();
    const first = await flow.rerunFrom(original, 's2');
    const second = await flow.rerunFrom(original, 's2');
    await harness.drain();
    const status = async (id: string) =>
      (await flow.pool.query(`SELECT status FROM durable_flow_workflow_runs WHERE run_id = $1`, [id])).rows[0].status as string;
    // One begin per hour: the original's took this hour's.
    expect([await status(first.runId), await status(second.runId)]).toEqual(['enqueued', 'enqueued']);
    await harness.travel('61 minutes');
    await harness.drain();
    expect([await status(first.runId), await status(second.runId)]).toEqual(['completed', 'enqueued']);
    await expect(first.result({ timeout: 5000 })).resolves.toEqual({ a: 1, b: 2 });
    expect(calls).toEqual({ s1: 1, s2: 2 });
  });
});

describe('debounce × deadlines × concurrency', () => {
  for (const timeout of [undefined, '1 hour'] as const) {
    it(`a start does not fold into a debounced run already waiting for its concurrency slot (its burst is over), timeout ${String(timeout)}`, async () => {
      const flow = ctx.flow();
      const name = fresh('debounce-slot');
      const wf = flow.workflow(
        name,
        { concurrency: 1, debounce: { period: '1 second', key: (input: { d: string; n?: number }) => input.d }, ...(timeout ? { timeout } : {}) },
        async ({ input }) => input,
      );
      await flow.migrate();
      const x = (await wf.start({ d: 'x' })).runId;
      const r = (await wf.start({ d: 'r', n: 1 })).runId;
      // Both bursts end; x takes the one slot (a day's lease), r waits for it.
      expect(await claim(flow, name, 2000)).toEqual([x]);
      const { rows } = await flow.pool.query(`SELECT concurrency_waiting, input FROM durable_flow_workflow_runs WHERE run_id = $1`, [r]);
      expect(rows[0]).toEqual({ concurrency_waiting: true, input: { d: 'r', n: 1 } });
      flow.setClockOffset(2000);
      const next = (await wf.start({ d: 'r', n: 2 })).runId;
      expect(next).not.toBe(r);
      const { rows: after } = await flow.pool.query(`SELECT concurrency_waiting, input FROM durable_flow_workflow_runs WHERE run_id = $1`, [r]);
      expect(after[0]).toEqual({ concurrency_waiting: true, input: { d: 'r', n: 1 } });
    });
  }
});

describe('debounce × deadlines × pause', () => {
  it("a start does not fold into a debounced run a paused workflow's claim set aside (with a timeout, its wake_at is the deadline)", async () => {
    const flow = ctx.flow();
    const name = fresh('debounce-paused');
    const wf = flow.workflow(name, { timeout: '1 hour', debounce: { period: '1 second' } }, async ({ input }) => input);
    await flow.migrate();
    const r = (await wf.start({ n: 1 })).runId;
    await flow.pauseWorkflow(name);
    expect(await claim(flow, name, 2000)).toEqual([]); // due: set aside (held_wake_at)
    const held = async () =>
      (await flow.pool.query(`SELECT held_wake_at IS NOT NULL AS held, input FROM durable_flow_workflow_runs WHERE run_id = $1`, [r])).rows[0];
    expect(await held()).toEqual({ held: true, input: { n: 1 } });
    flow.setClockOffset(2000);
    expect((await wf.start({ n: 2 })).runId).not.toBe(r);
    expect(await held()).toEqual({ held: true, input: { n: 1 } });
  });
});

describe('singleton × deadlines', () => {
  it("singleton 'skip': a run of the key past its timeout (not yet ended by a claim) does not swallow a new start", async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const name = fresh('singleton-late');
    const wf = flow.workflow(name, { singleton: { mode: 'skip' }, timeout: '1 minute' }, async ({ input }) => input);
    await flow.migrate();
    const old = (await wf.start({ n: 1 })).runId;
    // No worker for two minutes: the run's deadline passed, and no claim has ended it yet.
    await harness.travel('2 minutes');
    const next = (await wf.start({ n: 2 })).runId;
    expect(next).not.toBe(old);
    await harness.drain();
    const status = async (id: string) =>
      (await flow.pool.query(`SELECT status, error->>'code' AS code FROM durable_flow_workflow_runs WHERE run_id = $1`, [id])).rows[0];
    expect(await status(old)).toEqual({ status: 'failed', code: 'RUN_TIMEOUT' });
    expect(await status(next)).toEqual({ status: 'completed', code: null });
  });
});

describe('throttle × startBy (checked: fine)', () => {
  it('a run waiting for its throttle past its startBy is cancelled (DEADLINE_EXCEEDED) by a claim, and its turn passes to the next', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const name = fresh('throttle-startby');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour' } }, async ({ input }) => input);
    await flow.migrate();
    const a = (await wf.start({ n: 1 })).runId;
    const b = (await wf.start({ n: 2 }, { startBy: '30 minutes' })).runId;
    const c = (await wf.start({ n: 3 })).runId;
    await harness.drain();
    const state = async (id: string) =>
      (await flow.pool.query(`SELECT status, error->>'code' AS code FROM durable_flow_workflow_runs WHERE run_id = $1`, [id])).rows[0];
    expect([(await state(a)).status, (await state(b)).status, (await state(c)).status]).toEqual(['completed', 'enqueued', 'enqueued']);
    await harness.travel('31 minutes');
    await harness.drain();
    expect(await state(b)).toEqual({ status: 'cancelled', code: 'DEADLINE_EXCEEDED' });
    expect((await state(c)).status).toBe('enqueued');
    await harness.travel('30 minutes'); // 61 minutes after a began: c's turn (it would have been b's)
    await harness.drain();
    expect((await state(c)).status).toBe('completed');
  });
});
