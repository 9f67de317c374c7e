import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, Worker, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;

beforeAll(async () => {
  ctx = await setupDatabase('sleep');
  flow = ctx.flow();
  worker = flow.worker({ concurrency: 8, pollInterval: 50 });
  await worker.start();
});
afterAll(async () => {
  await ctx.cleanup();
});

const DAY = 24 * 3600 * 1000;

async function statusOf(runId: string) {
  return (await flow.getRun(runId))!.status;
}

async function stepOf(runId: string, name: string) {
  const timeline = await flow.timeline(runId);
  return timeline!.steps.find((s) => s.step.name === name);
}

describe('step.sleep', () => {
  it('sleeps durably, stores the wake time once and wakes when the clock reaches it', async () => {
    // Driven by the test harness on its own flow: no worker, no waiting for time to pass.
    const own = ctx.flow();
    const harness = createTestHarness(own);
    let after = 0;
    const wf = own.workflow('nap', async ({ step }: WorkflowContext) => {
      await step.sleep('trial', '3 days');
      return step.run('after', () => ++after);
    });
    const run = await wf.start({});
    await harness.drain();
    const wakeAt = await harness.assertSleeping(run, { step: 'trial' });
    const info = await own.getRun(run.runId);
    expect(info!.wakeAt!.getTime()).toBe(wakeAt.getTime());
    expect(wakeAt.getTime() - Date.now()).toBeGreaterThan(3 * DAY - 60_000);
    expect(info!.lease).toBeNull();

    await harness.travel('1 day'); // still asleep, wake time unchanged
    expect(await harness.drain()).toBe(0);
    await harness.assertSleeping(run, { step: 'trial' });
    expect(after).toBe(0);

    await harness.travel('2 days');
    expect(await harness.drain()).toBe(1);
    await harness.assertCompleted(run, 1);
    expect((await stepOf(run.runId, 'trial'))!.step.metadata.wakeAt).toBe(wakeAt.toISOString());
  });

  it('passes straight through a sleepUntil in the past, and sleeps until a future time', async () => {
    const past = new Date(Date.now() - 60_000);
    const wf = flow.workflow('until', async ({ step, input }: WorkflowContext<{ at: string }>) => {
      await step.sleepUntil('past', past);
      await step.sleepUntil('future', input.at);
      return 'woke';
    });
    const at = new Date(Date.now() + 300);
    const run = await wf.start({ at: at.toISOString() });
    expect(await run.result()).toBe('woke');
    const future = await stepOf(run.runId, 'future');
    expect(future!.step.metadata.wakeAt).toBe(at.toISOString());
    expect((await stepOf(run.runId, 'past'))!.step.status).toBe('succeeded');
  });
});

describe('step.waitForEvent', () => {
  it('waits for a matching event and returns its payload; other payloads do not match', async () => {
    const wf = flow.workflow('approval', async ({ step, input }: WorkflowContext<{ id: number }>) => {
      const decision = await step.waitForEvent<{ approved: boolean }>('decision', { event: 'refund_decided', match: { refundId: input.id } });
      return decision.approved;
    });
    const run = await wf.start({ id: 7 });
    await eventually(async () => (await statusOf(run.runId)) === 'waiting');
    const other = await flow.notify('refund_decided', { refundId: 8, approved: false });
    expect(other.matchedWaits).toBe(0);
    expect(await statusOf(run.runId)).toBe('waiting');
    const event = await flow.notify('refund_decided', { refundId: 7, approved: true, by: 'ana' }, { id: 'evt-7' });
    expect(event.matchedWaits).toBe(1);
    expect(await run.result()).toBe(true);
    const wait = await stepOf(run.runId, 'decision');
    expect(wait!.waits[0]).toMatchObject({ event: 'refund_decided', status: 'matched', match: { refundId: 7 } });
    expect(wait!.events[0]).toMatchObject({ eventId: 'evt-7', payload: { refundId: 7, approved: true, by: 'ana' } });
  });

  it('times out with WaitTimeoutError, and the outcome is memoized', async () => {
    const own = ctx.flow({ backoff: { initial: 10 } });
    const harness = createTestHarness(own);
    let branches = 0;
    let flaky = 0;
    const wf = own.workflow('timeout', async ({ step }: WorkflowContext) => {
      let outcome: string;
      try {
        await step.waitForEvent('confirm', { timeout: '2 hours' });
        outcome = 'confirmed';
      } catch (error) {
        if (!(error instanceof WaitTimeoutError)) throw error;
        outcome = `timed out: ${error.message}`;
      }
      await step.run('branch', () => ++branches);
      await step.run('flaky', { retries: 1 }, () => {
        if (++flaky === 1) throw new Error('replay please');
      });
      return outcome;
    });
    const run = await wf.start({});
    await harness.drain();
    await harness.assertWaitingFor(run, 'confirm');
    await harness.travel('2 hours');
    await harness.drain(); // times out, then the flaky step fails once and waits 10 ms to retry
    await harness.travel('1 second');
    await harness.drain();
    await harness.assertCompleted(run, 'timed out: Timed out waiting for event "confirm" in step "confirm"');
    // A late event must not change the memoized branch.
    expect((await own.notify('confirm', {})).matchedWaits).toBe(0);
    expect(branches).toBe(1);
    const timeline = await harness.timeline(run);
    const wait = timeline.steps.find((s) => s.step.name === 'confirm')!;
    expect(wait.step.status).toBe('failed');
    expect(wait.waits[0]!.status).toBe('timed_out');
  });

  it('does not see events from before the wait began unless allowPastEvents', async () => {
    await flow.notify('announcement', { topic: 'launch' });
    const strict = flow.workflow('strict', async ({ step }: WorkflowContext) => {
      await step.run('before', () => 1);
      return step.waitForEvent('announcement', { match: { topic: 'launch' }, timeout: '1 hour' });
    });
    const lenient = flow.workflow('lenient', async ({ step }: WorkflowContext) => {
      await step.run('before', () => 1);
      return step.waitForEvent('announcement', { match: { topic: 'launch' }, allowPastEvents: true });
    });
    const a = await strict.start({});
    const b = await lenient.start({});
    expect(await b.result()).toEqual({ topic: 'launch' });
    await eventually(async () => (await statusOf(a.runId)) === 'waiting');
    await flow.notify('announcement', { topic: 'launch', second: true });
    expect(await a.result()).toEqual({ topic: 'launch', second: true });
  });

  it('treats a repeated notify id as a no-op that returns the first event', async () => {
    const wf = flow.workflow('once', async ({ step }: WorkflowContext) => {
      const first = await step.waitForEvent('ping', {});
      const second = await step.waitForEvent('ping-2', { event: 'ping' });
      return [first, second];
    });
    const run = await wf.start({});
    await eventually(async () => (await statusOf(run.runId)) === 'waiting');
    const a = await flow.notify('ping', { n: 1 }, { id: 'same' });
    expect(a.duplicate).toBe(false);
    await eventually(async () => (await stepOf(run.runId, 'ping-2'))?.step.status === 'waiting');
    const b = await flow.notify('ping', { n: 1 }, { id: 'same' });
    expect(b).toMatchObject({ duplicate: true, id: a.id, payload: { n: 1 }, matchedWaits: 0 });
    expect(await statusOf(run.runId)).toBe('waiting');
    await flow.notify('ping', { n: 3 });
    expect(await run.result()).toEqual([{ n: 1 }, { n: 3 }]);
  });

  it('matches an event inside a rolled-back transaction never, and inside a committed one at commit', async () => {
    const wf = flow.workflow('tx-event', async ({ step }: WorkflowContext) => step.waitForEvent('paid', { match: { order: 1 } }));
    const run = await wf.start({});
    await eventually(async () => (await statusOf(run.runId)) === 'waiting');
    const client = await flow.pool.connect();
    try {
      await client.query('BEGIN');
      await flow.notify('paid', { order: 1, attempt: 'rolled back' }, { transaction: client });
      await client.query('ROLLBACK');
      expect(await statusOf(run.runId)).toBe('waiting');
      await client.query('BEGIN');
      const event = await flow.notify('paid', { order: 1, attempt: 'committed' }, { transaction: client });
      expect(event.matchedWaits).toBe(1);
      expect(await statusOf(run.runId)).toBe('waiting'); // not visible before commit
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await run.result()).toEqual({ order: 1, attempt: 'committed' });
  });

  it('never loses an event fired by the step right before the wait (hundreds of races)', async () => {
    // The step before the wait fires the event itself, the way a webhook triggered by that step's
    // side effect would arrive: sometimes before the step's result is even stored.
    const wf = flow.workflow('race', async ({ step, input }: WorkflowContext<{ n: number; mode: number }>) => {
      await step.run('trigger', async () => {
        const fire = () => flow.notify('race_done', { n: input.n });
        if (input.mode === 0) await fire();
        else if (input.mode === 1) void fire();
        else setTimeout(() => void fire(), input.n % 7);
      });
      return step.waitForEvent<{ n: number }>('race_done', { match: { n: input.n } });
    });
    const races = Array.from({ length: 300 }, (_, n) => ({ n, mode: n % 3 }));
    const runs = await Promise.all(races.map((input) => wf.start(input)));
    const results = await Promise.all(runs.map((run) => run.result({ timeout: '60 seconds' })));
    expect(results).toEqual(races.map(({ n }) => ({ n })));
    // The test proves something only if many events really arrived before their wait existed.
    const { rows } = await flow.pool.query(`
      SELECT count(*) FILTER (WHERE e.id < (SELECT max(id) FROM durable_flow_workflow_events) AND e.created_at < w.created_at)::int AS early,
             count(*)::int AS total
      FROM durable_flow_workflow_waits w JOIN durable_flow_workflow_events e ON e.id = w.workflow_event_id
      WHERE w.event_name = 'race_done'`);
    expect(rows[0].total).toBe(300);
    expect(rows[0].early).toBeGreaterThan(50);
  }, 90_000);
});
