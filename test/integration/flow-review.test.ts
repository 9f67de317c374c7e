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
