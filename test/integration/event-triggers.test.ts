import express from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError, signatureHeader } from '../../lib/index.js';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let n = 0;
/** A name of its own per test (the database is shared by the file, and so is its trigger table). */
const fresh = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  ctx = await setupDatabase('triggers');
  await ctx.flow().migrate();
  await ctx.closeFlows();
});
afterEach(async () => {
  await ctx.closeFlows();
});
afterAll(async () => {
  await ctx.cleanup();
});

interface RunRow {
  run_id: string;
  workflow_name: string;
  status: string;
  input: unknown;
  idempotency_key: string;
  queue_name: string;
  priority: number;
  version: string | null;
  pinned_version: string | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  deadline_at: Date | null;
  created_at: Date;
}

async function runsOf(flow: DurableFlow, workflow: string): Promise<RunRow[]> {
  const { rows } = await flow.pool.query<RunRow>(
    `SELECT run_id, workflow_name, status, input, idempotency_key, queue_name, priority, version, pinned_version, concurrency_key,
            concurrency_limit, deadline_at, created_at
     FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY id`,
    [workflow],
  );
  return rows;
}

async function eventPk(flow: DurableFlow, eventId: string): Promise<string> {
  const { rows } = await flow.pool.query(`SELECT id::text AS id FROM durable_flow_workflow_events WHERE event_id = $1`, [eventId]);
  return rows[0].id as string;
}

describe('event triggers (`on`)', () => {
  it('flow.notify of a matching event starts one run, input = the payload, idempotency key event:<event db id>; it runs to completion', async () => {
    const flow = ctx.flow();
    const event = fresh('order.created');
    const name = fresh('on-notify');
    flow.workflow(name, { on: [{ event }], queue: 'orders', priority: 3 }, async ({ input }) => ({ got: input }));
    await flow.migrate();
    const stored = await flow.notify(event, { order: 7 });
    const runs = await runsOf(flow, name);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'enqueued', input: { order: 7 }, idempotency_key: `event:${stored.id}`, queue_name: 'orders', priority: 3, version: flow.version });
    expect(runs[0]!.pinned_version).toBeNull();
    const worker = flow.worker({ queues: ['orders'] });
    await worker.start();
    try {
      await expect(flow.handle(runs[0]!.run_id).result({ timeout: 10_000 })).resolves.toEqual({ got: { order: 7 } });
    } finally {
      await worker.stop();
    }
  });

  it('a duplicate event id starts nothing again; a second event with another id starts a second run', async () => {
    const flow = ctx.flow();
    const event = fresh('paid');
    const name = fresh('on-dup');
    flow.workflow(name, { on: [{ event }] }, async () => 'ok');
    await flow.migrate();
    const first = await flow.notify(event, { n: 1 }, { id: `${event}-a` });
    const again = await flow.notify(event, { n: 1 }, { id: `${event}-a` });
    expect(again.duplicate).toBe(true);
    expect(await runsOf(flow, name)).toHaveLength(1);
    await flow.notify(event, { n: 2 }, { id: `${event}-b` });
    const runs = await runsOf(flow, name);
    expect(runs.map((r) => [r.input, r.idempotency_key])).toEqual([
      [{ n: 1 }, `event:${first.id}`],
      [{ n: 2 }, `event:${await eventPk(flow, `${event}-b`)}`],
    ]);
  });

  it('only an event whose payload contains the match starts a run; another name starts nothing', async () => {
    const flow = ctx.flow();
    const event = fresh('signup');
    const name = fresh('on-match');
    flow.workflow(name, { on: [{ event, match: { plan: 'pro', region: { eu: true } } }] }, async () => 'ok');
    await flow.migrate();
    await flow.notify(event, { plan: 'free', region: { eu: true } });
    await flow.notify(event, { plan: 'pro' });
    await flow.notify(`${event}-other`, { plan: 'pro', region: { eu: true } });
    expect(await runsOf(flow, name)).toHaveLength(0);
    await flow.notify(event, { plan: 'pro', region: { eu: true, city: 'Lyon' }, user: 1 });
    const runs = await runsOf(flow, name);
    expect(runs.map((r) => r.input)).toEqual([{ plan: 'pro', region: { eu: true, city: 'Lyon' }, user: 1 }]);
  });

  it('two workflows on one event: one run each; two entries of one workflow that both match: still one run', async () => {
    const flow = ctx.flow();
    const event = fresh('shipped');
    const a = fresh('on-two-a');
    const b = fresh('on-two-b');
    flow.workflow(a, { on: [{ event }] }, async () => 'a');
    flow.workflow(b, { on: [{ event, match: { carrier: 'ups' } }, { event }] }, async () => 'b');
    await flow.migrate();
    await flow.notify(event, { carrier: 'ups' });
    expect(await runsOf(flow, a)).toHaveLength(1);
    expect(await runsOf(flow, b)).toHaveLength(1);
    const [ra, rb] = [(await runsOf(flow, a))[0]!, (await runsOf(flow, b))[0]!];
    expect(ra.idempotency_key).toBe(rb.idempotency_key);
    expect(ra.run_id).not.toBe(rb.run_id);
  });

  it('an event stored in a transaction that rolls back starts nothing; one that commits starts its run with it', async () => {
    const flow = ctx.flow();
    const event = fresh('tx');
    const name = fresh('on-tx');
    flow.workflow(name, { on: [{ event }] }, async () => 'ok');
    await flow.migrate();
    const client = await flow.pool.connect();
    try {
      await client.query('BEGIN');
      await flow.notify(event, { n: 1 }, { transaction: client });
      await client.query('ROLLBACK');
      expect(await runsOf(flow, name)).toHaveLength(0);
      await client.query('BEGIN');
      await flow.notify(event, { n: 2 }, { transaction: client });
      expect(await runsOf(flow, name)).toHaveLength(0); // not visible before the commit
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect((await runsOf(flow, name)).map((r) => r.input)).toEqual([{ n: 2 }]);
  });

  it('signed ingest by a process that registers no workflow starts the runs (the triggers are in the database), once per event id', async () => {
    const worker = ctx.flow();
    const event = fresh('webhook');
    const name = fresh('on-ingest');
    worker.workflow(name, { on: [{ event }] }, async ({ input }) => input);
    await worker.migrate();
    const web = ctx.flow();
    const app = express();
    app.use('/df', web.router({ allowUnauthenticated: true, eventSecret: 'whsec_triggers_0123' }));
    const body = JSON.stringify([
      { name: event, payload: { n: 1 }, id: `${event}-1` },
      { name: event, payload: { n: 2 }, id: `${event}-2` },
      { name: `${event}-unrelated`, payload: { n: 3 } },
    ]);
    const send = () => request(app).post('/df/events').set('Content-Type', 'application/json').set('DurableFlow-Signature', signatureHeader('whsec_triggers_0123', body)).send(body);
    expect((await send()).status).toBe(202);
    expect((await send()).status).toBe(202); // a replayed request: duplicates
    const runs = await runsOf(web, name);
    expect(runs.map((r) => r.input)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(runs.map((r) => r.version)).toEqual([worker.version, worker.version]);
    const harness = createTestHarness(worker);
    await harness.drain();
    await harness.assertCompleted(runs[0]!.run_id, { n: 1 });
    await harness.assertCompleted(runs[1]!.run_id, { n: 2 });
  });

  it('step.sendEvent from a run starts a triggered run, once, even when the sending step replays', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('invoice.sent');
    const sender = fresh('on-sender');
    const name = fresh('on-sent');
    const send = flow.workflow(sender, async ({ step }) => {
      await step.sendEvent('announce', event, { invoice: 'i-1' });
      await step.sleep('pause', '1 minute');
      return 'sent';
    });
    flow.workflow(name, { on: [{ event }] }, async ({ input }) => input);
    await flow.migrate();
    const run = await send.start({});
    await harness.drain();
    await harness.travel('2 minutes');
    await harness.drain();
    await harness.assertCompleted(run, 'sent');
    const runs = await runsOf(flow, name);
    expect(runs).toHaveLength(1);
    await harness.assertCompleted(runs[0]!.run_id, { invoice: 'i-1' });
  });

  it("the run carries what start() would give it: timeout's deadline, pinned version, concurrency, cancelOn (and a paused workflow's run waits)", async () => {
    const flow = ctx.flow({ version: 'v-trig' });
    const harness = createTestHarness(flow);
    const event = fresh('job');
    const stop = fresh('stop');
    const name = fresh('on-options');
    flow.workflow(
      name,
      { on: [{ event }], timeout: '1 hour', versioning: 'pinned', concurrency: 2, cancelOn: [{ event: stop, match: { all: true } }] },
      async ({ step }) => {
        await step.sleep('nap', '10 minutes');
        return 'done';
      },
    );
    await flow.migrate();
    const stored = await flow.notify(event, { id: 1 });
    const [run] = await runsOf(flow, name);
    expect(run).toMatchObject({ version: 'v-trig', pinned_version: 'v-trig', concurrency_key: name, concurrency_limit: 2 });
    expect(run!.deadline_at!.getTime() - stored.occurredAt.getTime()).toBe(3_600_000);
    const { rows } = await flow.pool.query(
      `SELECT t.event_name, t.match FROM durable_flow_cancel_triggers t JOIN durable_flow_workflow_runs r ON r.id = t.workflow_run_id WHERE r.run_id = $1`,
      [run!.run_id],
    );
    expect(rows).toEqual([{ event_name: stop, match: { all: true } }]);
    await harness.drain();
    await harness.assertSleeping(run!.run_id);
    await flow.notify(stop, { all: true });
    await harness.assertCancelled(run!.run_id);

    // Paused: the triggered run is stored and not claimed until the workflow resumes.
    await flow.pauseWorkflow(name);
    await flow.notify(event, { id: 2 });
    const second = (await runsOf(flow, name))[1]!;
    await harness.drain();
    expect((await flow.getRun(second.run_id))!.startedAt).toBeNull();
    await flow.resumeWorkflow(name);
    await harness.drain();
    await harness.assertSleeping(second.run_id);
  });

  it('an event that both triggers the workflow and matches its cancelOn cancels the run it started (the cancel comes after the insert)', async () => {
    const flow = ctx.flow();
    const event = fresh('both');
    const name = fresh('on-cancel-self');
    flow.workflow(name, { on: [{ event }], cancelOn: [{ event, match: { stop: true } }] }, async () => 'ok');
    await flow.migrate();
    await flow.notify(event, { stop: false });
    await flow.notify(event, { stop: true });
    const runs = await runsOf(flow, name);
    // The first run is cancelled by the second event; the second run by its own.
    expect(runs.map((r) => [r.input, r.status])).toEqual([
      [{ stop: false }, 'cancelled'],
      [{ stop: true }, 'cancelled'],
    ]);
  });

  it('removing the option (or an entry) from the code deletes its triggers at the next migrate(): no run starts', async () => {
    const event = fresh('removed');
    const name = fresh('on-removed');
    const before = ctx.flow();
    before.workflow(name, { on: [{ event, match: { a: 1 } }, { event: `${event}-2` }] }, async () => 'ok');
    await before.migrate();
    const triggers = async () =>
      (await before.pool.query(`SELECT position, event_name, match FROM durable_flow_event_triggers WHERE workflow_name = $1 ORDER BY position`, [name])).rows;
    expect(await triggers()).toEqual([
      { position: 0, event_name: event, match: { a: 1 } },
      { position: 1, event_name: `${event}-2`, match: {} },
    ]);
    const fewer = ctx.flow();
    fewer.workflow(name, { on: [{ event }] }, async () => 'ok');
    await fewer.migrate();
    expect(await triggers()).toEqual([{ position: 0, event_name: event, match: {} }]);
    await before.notify(`${event}-2`, {});
    expect(await runsOf(before, name)).toHaveLength(0);

    const after = ctx.flow();
    after.workflow(name, async () => 'ok');
    // A process that does not register the workflow leaves its triggers alone.
    const other = ctx.flow();
    other.workflow(fresh('unrelated'), async () => 'ok');
    await other.migrate();
    expect(await triggers()).toHaveLength(1);
    await after.migrate();
    expect(await triggers()).toEqual([]);
    await before.notify(event, { a: 1 });
    expect(await runsOf(before, name)).toHaveLength(0);
  });

  it('a worker starting syncs the triggers too (no migrate() in that process)', async () => {
    const event = fresh('worker-sync');
    const name = fresh('on-worker-sync');
    const flow = ctx.flow();
    flow.workflow(name, { on: [{ event }] }, async ({ input }) => input);
    const worker = flow.worker();
    await worker.start();
    try {
      expect(await waitForTrigger(flow, name)).toBe(true);
      const stored = await flow.notify(event, { w: 1 });
      const [run] = await runsOf(flow, name);
      expect(run!.idempotency_key).toBe(`event:${stored.id}`);
      await expect(flow.handle(run!.run_id).result({ timeout: 10_000 })).resolves.toEqual({ w: 1 });
    } finally {
      await worker.stop();
    }
  });

  it("migrate() does not fix the flow's version when no registered workflow has `on` (workflows registered after it still count)", async () => {
    const a = fresh('ver-a');
    const b = fresh('ver-b');
    const early = ctx.flow();
    early.workflow(a, async () => 'a');
    await early.migrate();
    early.workflow(b, async () => 'b');
    const both = ctx.flow();
    both.workflow(a, async () => 'a');
    both.workflow(b, async () => 'b');
    const onlyA = ctx.flow();
    onlyA.workflow(a, async () => 'a');
    expect(early.version).toBe(both.version);
    expect(early.version).not.toBe(onlyA.version);
  });

  it('malformed entries are INVALID_OPTION at flow.workflow; the resolved option is the definition\'s `on`', () => {
    const flow = ctx.flow();
    const refused = (options: object) => {
      try {
        flow.workflow(fresh('refused'), options, async () => 'x');
      } catch (error) {
        return error as DurableFlowError;
      }
      throw new Error('not refused');
    };
    for (const on of [{ event: 'e' }, [{ event: '' }], [{ event: 'e', match: () => ({}) }], [{ event: 'e', match: [1] }], ['e']]) {
      const error = refused({ on });
      expect(error).toBeInstanceOf(DurableFlowError);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(/`on/);
    }
    const ok = fresh('allowed');
    flow.workflow(ok, { on: [{ event: 'e', match: { a: 1 } }, { event: 'f' }], concurrency: 3 }, async () => 'x');
    expect(flow.definitions.get(ok)!.on).toEqual([{ event: 'e', match: { a: 1 } }, { event: 'f', match: {} }]);
  });
});

describe('event triggers composed with options whose start needs the code (deferred: a worker of the workflow starts the run)', () => {
  async function pending(flow: DurableFlow, workflow: string) {
    const { rows } = await flow.pool.query(
      `SELECT workflow_event_id::text AS event, payload, attempts, error FROM durable_flow_trigger_starts WHERE workflow_name = $1 ORDER BY id`,
      [workflow],
    );
    return rows;
  }

  it('debounce with a key function: a burst of webhooks per account is one run per account, with the last payload ("one sync per account")', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('account.changed');
    const name = fresh('on-debounce');
    flow.workflow(name, { on: [{ event }], debounce: { period: '30 seconds', key: (input: { account: string }) => input.account } }, async ({ input }) => input);
    await flow.migrate();
    const web = ctx.flow(); // stores the events; registers nothing
    for (let i = 1; i <= 4; i++) await web.notify(event, { account: 'acme', n: i });
    await web.notify(event, { account: 'globex', n: 5 });
    // The event's transaction stored pending starts, no run.
    expect((await pending(flow, name)).map((p) => p.payload)).toEqual([
      { account: 'acme', n: 1 }, { account: 'acme', n: 2 }, { account: 'acme', n: 3 }, { account: 'acme', n: 4 }, { account: 'globex', n: 5 },
    ]);
    expect(await runsOf(flow, name)).toHaveLength(0);
    await harness.drain(); // the firing makes the starts (in order), then nothing is due
    expect(await pending(flow, name)).toEqual([]);
    const runs = await runsOf(flow, name);
    expect(runs.map((r) => [r.input, r.status])).toEqual([
      [{ account: 'acme', n: 4 }, 'enqueued'],
      [{ account: 'globex', n: 5 }, 'enqueued'],
    ]);
    // The first start of a burst names the run (its idempotency key); the folded ones return it.
    const events = (await flow.pool.query(`SELECT id::text AS id FROM durable_flow_workflow_events WHERE name = $1 ORDER BY id`, [event])).rows;
    expect(runs.map((r) => r.idempotency_key)).toEqual([`event:${events[0].id}`, `event:${events[4].id}`]);
    await harness.travel('31 seconds');
    await harness.drain();
    await harness.assertCompleted(runs[0]!.run_id, { account: 'acme', n: 4 });
    await harness.assertCompleted(runs[1]!.run_id, { account: 'globex', n: 5 });
  });

  it('a throttled workflow: each event starts its run (deferred to a worker, which sets the throttle), and the throttle holds', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('order.placed');
    const name = fresh('on-throttle');
    flow.workflow(name, { on: [{ event }], throttle: { limit: 2, period: '1 hour' } }, async ({ input }) => input);
    await flow.migrate();
    const web = ctx.flow();
    for (let i = 1; i <= 5; i++) await web.notify(event, { n: i });
    expect(await pending(flow, name)).toHaveLength(5);
    await harness.drain();
    const runs = await runsOf(flow, name);
    expect(runs.map((r) => r.status)).toEqual(['completed', 'completed', 'enqueued', 'enqueued', 'enqueued']);
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND throttle_key = $1`, [name]);
    expect(rows[0].n).toBe(5);
    await harness.travel('61 minutes');
    await harness.drain();
    expect((await runsOf(flow, name)).map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'enqueued']);
  });

  it("singleton 'skip' and rateLimit with key functions: one run per key in progress; starts over the limit are RATE_LIMITED runs", async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('tick');
    const single = fresh('on-singleton');
    const limited = fresh('on-rate');
    flow.workflow(single, { on: [{ event }], singleton: { mode: 'skip', key: (input: { k: string }) => input.k } }, async ({ step }) => {
      await step.sleep('hold', '1 minute');
    });
    flow.workflow(limited, { on: [{ event }], rateLimit: { limit: 2, period: '1 hour', key: (input: { k: string }) => input.k } }, async () => 'ok');
    await flow.migrate();
    for (let i = 0; i < 4; i++) await flow.notify(event, { k: 'x', i });
    await harness.drain();
    const singles = await runsOf(flow, single);
    expect(singles).toHaveLength(1);
    expect(singles[0]!.input).toEqual({ k: 'x', i: 0 });
    const { rows } = await flow.pool.query(
      `SELECT input->>'i' AS i, status, error->>'code' AS code FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY id`,
      [limited],
    );
    expect(rows).toEqual([
      { i: '0', status: 'completed', code: null },
      { i: '1', status: 'completed', code: null },
      { i: '2', status: 'cancelled', code: 'RATE_LIMITED' },
      { i: '3', status: 'cancelled', code: 'RATE_LIMITED' },
    ]);
  });

  it("cancelOn counts from the trigger's event, as for a direct start: a matching event stored after it (or the event itself) cancels the deferred run when it is made; one stored before it does not", async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const start = fresh('order.opened');
    const stop = fresh('order.closed');
    const name = fresh('on-deferred-cancel');
    // A match function makes the start need the code: deferred.
    flow.workflow(name, { on: [{ event: start }], cancelOn: [{ event: stop, match: (input: { order: string }) => ({ order: input.order }) }] }, async ({ input }) => input);
    const both = fresh('order.both');
    const self = fresh('on-deferred-self-cancel');
    flow.workflow(self, { on: [{ event: both }], cancelOn: [{ event: both, match: () => ({ stop: true }) }] }, async ({ input }) => input);
    await flow.migrate();
    const web = ctx.flow();
    await web.notify(stop, { order: 'o4' }); // before o4's trigger: does not cancel it
    for (const order of ['o1', 'o2', 'o3', 'o4']) await web.notify(start, { order });
    await web.notify(stop, { order: 'o2' }); // after o2's trigger, before its run exists
    await web.notify(both, { stop: false });
    await web.notify(both, { stop: true });
    expect(await pending(flow, name)).toHaveLength(4);
    await harness.drain();
    const runs = await runsOf(flow, name);
    expect(runs.map((r) => [(r.input as { order: string }).order, r.status])).toEqual([
      ['o1', 'completed'],
      ['o2', 'cancelled'],
      ['o3', 'completed'],
      ['o4', 'completed'],
    ]);
    const { rows } = await flow.pool.query(`SELECT error->>'message' AS message FROM durable_flow_workflow_runs WHERE run_id = $1`, [runs[1]!.run_id]);
    expect(rows[0].message).toBe(`Cancelled by event "${stop}"`);
    // As the direct test above: the second event cancels the first run, and its own.
    expect((await runsOf(flow, self)).map((r) => [r.input, r.status])).toEqual([
      [{ stop: false }, 'cancelled'],
      [{ stop: true }, 'cancelled'],
    ]);
  });

  it('the harness makes the deferred starts of events its runs send in the same drain()', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('sent.deferred');
    const sender = flow.workflow(fresh('on-deferred-sender'), async ({ step }) => {
      await step.sendEvent('tell', event, { account: 'acme' });
      return 'told';
    });
    const name = fresh('on-deferred-target');
    flow.workflow(name, { on: [{ event }], singleton: { mode: 'skip', key: (input: { account: string }) => input.account } }, async ({ input }) => input);
    await flow.migrate();
    const run = await sender.start({});
    expect(await harness.drain()).toBe(2);
    await harness.assertCompleted(run, 'told');
    const [target] = await runsOf(flow, name);
    await harness.assertCompleted(target!.run_id, { account: 'acme' });
  });

  it('a concurrency key function applies; a duplicate event stores no second pending start; a key function that throws is retried, then left with its error', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const event = fresh('keyed');
    const name = fresh('on-keyed');
    flow.workflow(
      name,
      {
        on: [{ event }],
        concurrency: {
          limit: 1,
          key: (input: { tenant?: string }) => {
            if (!input.tenant) throw new Error('no tenant');
            return input.tenant;
          },
        },
      },
      async ({ input }) => input,
    );
    await flow.migrate();
    await flow.notify(event, { tenant: 't1' }, { id: `${event}-1` });
    await flow.notify(event, { tenant: 't1' }, { id: `${event}-1` });
    expect(await pending(flow, name)).toHaveLength(1);
    await harness.drain();
    const [run] = await runsOf(flow, name);
    expect(run!.concurrency_key).toBe(`${name}:t1`);
    await harness.assertCompleted(run!.run_id, { tenant: 't1' });

    await flow.notify(event, {});
    for (let i = 0; i < 5; i++) await harness.drain();
    const [left] = await pending(flow, name);
    expect(left).toMatchObject({ attempts: 5, error: expect.stringMatching(/no tenant/) });
    expect(await runsOf(flow, name)).toHaveLength(1);
    // Left alone: later events of the workflow still start.
    await flow.notify(event, { tenant: 't2' });
    await harness.drain();
    expect((await runsOf(flow, name)).map((r) => r.input)).toEqual([{ tenant: 't1' }, { tenant: 't2' }]);
    // A start that fails once (its transaction rolled back) is made at the next firing: one run, nothing lost.
    let failOnce = true;
    const flaky = fresh('on-flaky');
    flow.workflow(flaky, { on: [{ event }], singleton: { mode: 'skip', key: (input: { tenant?: string }) => {
      if (failOnce) {
        failOnce = false;
        throw new Error('flaky');
      }
      return input.tenant ?? 'none';
    } } }, async ({ input }) => input);
    await flow.migrate();
    await flow.notify(event, { tenant: 't3' });
    await harness.drain();
    expect(await pending(flow, flaky)).toMatchObject([{ attempts: 1, error: expect.stringMatching(/flaky/) }]);
    expect(await runsOf(flow, flaky)).toHaveLength(0);
    await harness.drain();
    expect(await pending(flow, flaky)).toEqual([]);
    const [made] = await runsOf(flow, flaky);
    await harness.assertCompleted(made!.run_id, { tenant: 't3' });
    // The harness's reset() deletes pending starts with the events.
    await harness.reset();
    expect(await pending(flow, name)).toEqual([]);
  });
});

async function waitForTrigger(flow: DurableFlow, name: string): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { rows } = await flow.pool.query(`SELECT 1 FROM durable_flow_event_triggers WHERE workflow_name = $1`, [name]);
    if (rows.length > 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}
