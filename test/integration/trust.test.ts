/**
 * The promises of DESIGN.md "Trust", each broken once by a hostile tester: a test per defect, written
 * before its fix. Crash windows are covered with real child processes in test/chaos/crash-points.test.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError, WaitTimeoutError, signatureHeader } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const SECRET = 'whsec_trust_0123456789abcdef';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let server: http.Server;
let base: string;

beforeAll(async () => {
  ctx = await setupDatabase('trust');
  flow = ctx.flow();
  harness = createTestHarness(flow);
  const app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true, eventSecret: SECRET }));
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/df`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await ctx.cleanup();
});

async function ingest(body: string, header = signatureHeader(SECRET, body)) {
  const response = await fetch(`${base}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'DurableFlow-Signature': header },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params);
  return rows[0]!.n;
}

describe('expired waits', () => {
  const waiter = () =>
    flow.workflow(`expiring-${Math.random()}`, async ({ step, input }: WorkflowContext<{ k: string }>) => {
      try {
        return await step.waitForEvent<{ k: string }>('expiring', { match: { k: input.k }, timeout: '1 minute' });
      } catch (error) {
        if (error instanceof WaitTimeoutError) return 'timed out';
        throw error;
      }
    });

  it('a notify after the timeout on the database clock does not match, though no worker has processed the timeout', async () => {
    const wf = waiter();
    const run = await wf.start({ k: 'late-1' });
    await harness.drain();
    await harness.assertWaitingFor(run, 'expiring');
    await harness.travel('2 minutes'); // no drain: the timeout is past but nobody has noticed it
    const event = await flow.notify('expiring', { k: 'late-1' });
    expect(event.matchedWaits).toBe(0);
    await harness.drain();
    expect(await run.result()).toBe('timed out');
  });

  it('an event stored after the deadline is not picked up by the suspension either', async () => {
    // The wait exists and is past its deadline; the event is stored (unmatched) before the run is
    // claimed again: the replay must still take the timeout branch, not match the stored event.
    const wf = waiter();
    const run = await wf.start({ k: 'late-2' });
    await harness.drain();
    await harness.travel('61 seconds');
    await flow.notify('expiring', { k: 'late-2' });
    await harness.drain();
    expect(await run.result()).toBe('timed out');
  });

  it('an event stored before the deadline still matches when the run is claimed after it', async () => {
    const wf = waiter();
    const run = await wf.start({ k: 'on-time' });
    await harness.drain();
    await harness.travel('30 seconds');
    const event = await flow.notify('expiring', { k: 'on-time' });
    expect(event.matchedWaits).toBe(1);
    await harness.travel('1 minute');
    await harness.drain();
    expect(await run.result()).toEqual({ k: 'on-time' });
  });
});

describe('idempotency keys and run ids', () => {
  it('an idempotency key is scoped to its workflow', async () => {
    const refund = flow.workflow('trust-refund', async () => 'refund');
    const invoice = flow.workflow('trust-invoice', async () => 'invoice');
    const a = await refund.start({}, { idempotencyKey: 'order-7' });
    const b = await invoice.start({}, { idempotencyKey: 'order-7' });
    expect(b.runId).not.toBe(a.runId);
    expect((await refund.start({}, { idempotencyKey: 'order-7' })).runId).toBe(a.runId);
    expect((await invoice.start({}, { idempotencyKey: 'order-7' })).runId).toBe(b.runId);
    await harness.drain();
    expect(await a.result()).toBe('refund');
    expect(await b.result()).toBe('invoice');
  });

  it('a run id that belongs to another workflow is refused with RUN_ID_CONFLICT; the same workflow gets its run back', async () => {
    const one = flow.workflow('trust-one', async () => 1);
    const two = flow.workflow('trust-two', async () => 2);
    const first = await one.start({}, { runId: 'shared-id' });
    expect((await one.start({}, { runId: 'shared-id' })).runId).toBe(first.runId);
    const error = await two.start({}, { runId: 'shared-id' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DurableFlowError);
    expect((error as DurableFlowError).code).toBe('RUN_ID_CONFLICT');
    expect((error as Error).message).toMatch(/shared-id.*trust-one/);
    expect(await count(`${flow.tables.runs} WHERE run_id = 'shared-id'`)).toBe(1);
    // Also when both arrive in one group-committed batch of starts.
    const results = await Promise.allSettled([one.start({}, { runId: 'batch-id' }), two.start({}, { runId: 'batch-id' })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as DurableFlowError).code).toBe('RUN_ID_CONFLICT');
  });
});

describe('event ids', () => {
  it('a used id with another payload or name is refused with EVENT_ID_CONFLICT; an exact redelivery is a duplicate', async () => {
    const first = await flow.notify('paid', { order: 1 }, { id: 'evt-conflict' });
    const again = await flow.notify('paid', { order: 1 }, { id: 'evt-conflict' });
    expect(again.duplicate).toBe(true);
    expect(again.id).toBe(first.id);
    for (const [name, payload] of [['paid', { order: 2 }], ['refunded', { order: 1 }]] as const) {
      const error = await flow.notify(name, payload, { id: 'evt-conflict' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DurableFlowError);
      expect((error as DurableFlowError).code).toBe('EVENT_ID_CONFLICT');
      expect((error as Error).message).toContain('evt-conflict');
    }
    expect(await count(`${flow.tables.events} WHERE event_id = 'evt-conflict'`)).toBe(1);
  });

  it('ingest answers 409 naming the id, stores nothing of that request; a redelivery is 202 with duplicate: true', async () => {
    const wf = flow.workflow('trust-ingest-wait', async ({ step }: WorkflowContext) => step.waitForEvent('shipped', { match: { n: 1 } }));
    const run = await wf.start({});
    await harness.drain();
    const ok = await ingest(JSON.stringify({ name: 'shipped', payload: { n: 0 }, id: 'evt-409' }));
    expect(ok.status).toBe(202);
    const conflict = await ingest(JSON.stringify([{ name: 'shipped', payload: { n: 1 }, id: 'evt-ok-in-batch' }, { name: 'shipped', payload: { n: 1 }, id: 'evt-409' }]));
    expect(conflict.status).toBe(409);
    expect(String(conflict.body.error)).toContain('evt-409');
    expect(await count(`${flow.tables.events} WHERE event_id = 'evt-ok-in-batch'`)).toBe(0);
    await harness.assertWaitingFor(run, 'shipped');
    const redelivered = await ingest(JSON.stringify({ name: 'shipped', payload: { n: 0 }, id: 'evt-409' }));
    expect(redelivered.status).toBe(202);
    expect((redelivered.body.events as { duplicate: boolean }[])[0]!.duplicate).toBe(true);
  });

  it('a signed request without ids replayed inside the tolerance window stores nothing new and wakes nothing', async () => {
    const wf = flow.workflow('trust-replay', async ({ step }: WorkflowContext) => {
      const one = await step.waitForEvent('replayed-1', { event: 'replayed' });
      const two = await step.waitForEvent('replayed-2', { event: 'replayed' });
      return [one, two];
    });
    const run = await wf.start({});
    await harness.drain();
    const body = JSON.stringify([{ name: 'replayed', payload: { n: 1 } }, { name: 'replayed', payload: { n: 1 } }]);
    const header = signatureHeader(SECRET, body);
    const first = await ingest(body, header);
    expect(first.status).toBe(202);
    const replay = await ingest(body, header);
    expect(replay.status).toBe(202);
    const events = replay.body.events as { id: string; duplicate: boolean }[];
    expect(events.map((e) => e.duplicate)).toEqual([true, true]);
    expect(events.map((e) => e.id)).toEqual((first.body.events as { id: string }[]).map((e) => e.id));
    expect(await count(`${flow.tables.events} WHERE name = 'replayed'`)).toBe(2);
    // The same body signed again later is a new request: stored again.
    const later = await ingest(body, signatureHeader(SECRET, body, Math.floor(Date.now() / 1000) + 1));
    expect((later.body.events as { duplicate: boolean }[]).map((e) => e.duplicate)).toEqual([false, false]);
    await harness.drain();
    await harness.assertCompleted(run);
  });
});

describe('derived ids', () => {
  it('step.invoke and step.sendEvent work for the longest run id and step name', async () => {
    const child = flow.workflow('trust-child', async ({ input }: WorkflowContext<{ n: number }>) => input.n);
    const longName = 's'.repeat(480);
    const parent = flow.workflow('trust-parent', async ({ step }: WorkflowContext) => {
      const invoked = await step.invoke(longName.slice(0, 100), child, { n: 1 });
      const sent = await step.sendEvent(longName, 'trust-derived', { ok: true });
      const key = await step.run(longName.slice(0, 200), ({ idempotencyKey }) => idempotencyKey);
      return { result: invoked.result, sent: sent.eventId, key };
    });
    const run = await parent.start({}, { runId: 'r'.repeat(255) });
    await harness.drain();
    const output = (await run.result()) as { result: number; sent: string; key: string };
    expect(output.result).toBe(1);
    expect(output.sent.length).toBeLessThanOrEqual(255);
    expect(output.key.length).toBeLessThanOrEqual(255);
    // Stable: a replay derives the same ids (the child was started once, the event sent once).
    expect(await count(`${flow.tables.runs} WHERE workflow_name = 'trust-child'`)).toBe(1);
    expect(await count(`${flow.tables.events} WHERE name = 'trust-derived'`)).toBe(1);
  });
});

describe('cancelled runs', () => {
  it('a cancelled sleeping or waiting run keeps no live-looking step or wait', async () => {
    const sleeper = flow.workflow('trust-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const waiter = flow.workflow('trust-waiter', async ({ step }: WorkflowContext) => step.waitForEvent('never', { timeout: '1 day' }));
    const a = await sleeper.start({});
    const b = await waiter.start({});
    await harness.drain();
    expect(await flow.cancel(a.runId)).toBe(true);
    expect(await flow.cancel(b.runId)).toBe(true);
    for (const run of [a, b]) {
      const timeline = (await flow.timeline(run.runId))!;
      expect(timeline.run.status).toBe('cancelled');
      for (const { step, waits } of timeline.steps) {
        expect(step.status).toBe('cancelled');
        for (const wait of waits) expect(wait.status).toBe('cancelled');
      }
      const page = await (await fetch(`${base}/runs/${encodeURIComponent(run.runId)}`)).text();
      expect(page).not.toMatch(/Wakes |Waiting for|Sleeping until|waiting since|sleeping since|running for/i);
      // Steps without an error show none (not an empty error box).
      expect(page).not.toMatch(/<strong><\/strong>:/);
      for (const { step } of timeline.steps) expect(step.completedAt).not.toBeNull();
    }
  });
});

describe('onChange', () => {
  const register = (own: DurableFlow) =>
    own.workflow('trust-changes', async ({ step, log }: WorkflowContext) => {
      await step.run('one', () => 1);
      log.info('between');
      await step.run('two', () => 2);
      return 'done';
    });

  /** Every change of `runId` a subscriber saw, as `type:status-or-message`. */
  const expectEveryChange = async (seen: { runId: string | null; text: string }[], runId: string) => {
    const mine = () => seen.filter((c) => c.runId === runId).map((c) => c.text);
    const complete = () =>
      mine().includes('workflow_run.updated:completed') &&
      mine().includes('workflow_log.created:between') &&
      mine().filter((s) => s.startsWith('workflow_step.')).length >= 2;
    await eventually(complete, 5000).catch(() => undefined);
    expect(mine().some((s) => s.startsWith('workflow_run.created:'))).toBe(true);
    expect(mine()).toContain('workflow_run.updated:completed');
    expect(mine()).toContain('workflow_log.created:between');
    expect(mine().filter((s) => s.startsWith('workflow_step.')).length).toBeGreaterThanOrEqual(2);
  };
  const subscribe = (own: DurableFlow, seen: { runId: string | null; text: string }[]) =>
    own.onChange((change) => void seen.push({ runId: change.runId, text: `${change.type}:${String(change.snapshot.status ?? change.snapshot.message ?? '')}` }));

  it('a subscriber added just before a run starts gets every change of that run (a fresh flow each time: no subscription yet)', async () => {
    // With the worker in this process (its LISTEN connection already open) and in another one (the
    // subscription must open a connection first).
    const elsewhere = ctx.flow();
    register(elsewhere);
    const remote = elsewhere.worker({ concurrency: 2, pollInterval: 20 });
    await remote.start();
    for (let attempt = 0; attempt < 16; attempt++) {
      const own = ctx.flow();
      const wf = register(own);
      const worker = attempt % 2 === 0 ? own.worker({ concurrency: 2, pollInterval: 50 }) : undefined;
      await worker?.start();
      // The hostile case: nobody has live mode on, this flow's pool is warm and its LISTEN connection cold.
      await own.pool.query(`UPDATE ${own.tables.live} SET live_until = NULL`);
      const seen: { runId: string | null; text: string }[] = [];
      const unsubscribe = subscribe(own, seen);
      const run = await wf.start({});
      await run.result();
      await expectEveryChange(seen, run.runId);
      unsubscribe();
      await own.close();
    }
    await remote.stop();
  });

  it('changes committed by another process after changesReady() resolves reach the subscriber', async () => {
    const watching = ctx.flow();
    const working = ctx.flow();
    const wf = register(working);
    const worker = working.worker({ concurrency: 2, pollInterval: 50 });
    await worker.start();
    const seen: { runId: string | null; text: string }[] = [];
    const unsubscribe = subscribe(watching, seen);
    await watching.changesReady();
    const run = await wf.start({});
    await run.result();
    await expectEveryChange(seen, run.runId);
    unsubscribe();
    await worker.stop();
  });
});
