import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
/** A second flow on the same database: another process's operator. */
let other: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('repair');
  flow = ctx.flow();
  other = ctx.flow();
});
afterAll(async () => {
  await ctx.cleanup();
});

async function step(runId: string, name: string): Promise<{ status: string; result: unknown; error: unknown; metadata: Record<string, unknown> }> {
  const { rows } = await flow.pool.query(
    `SELECT s.status, s.result, s.error, s.metadata FROM durable_flow_workflow_steps s
     JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.name = $2`,
    [runId, name],
  );
  return rows[0];
}

async function waitStatuses(runId: string, name: string): Promise<string[]> {
  const { rows } = await flow.pool.query(
    `SELECT w.status FROM durable_flow_workflow_waits w JOIN durable_flow_workflow_steps s ON s.id = w.workflow_step_id
     JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.name = $2 ORDER BY w.id`,
    [runId, name],
  );
  return rows.map((row) => row.status);
}

const statusIs = (runId: string, status: string) => eventually(async () => (await flow.getRun(runId))?.status === status);

function latch(): { promise: Promise<void>; release: () => void } {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  return { promise, release };
}

describe('flow.resolveWait', () => {
  it('completes a pending wait as if its event came, once: a later real event matches nothing of that run', async () => {
    const wf = flow.workflow('approve', async ({ step, input }: WorkflowContext<{ id: string }>) => {
      const decision = await step.waitForEvent('approval', { event: 'approved', match: { id: input.id } });
      return { decision };
    });
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({ id: 'a1' });
      await statusIs(run.runId, 'waiting');
      await other.resolveWait(run.runId, 'approval', { by: 'ops' }, { actor: 'alice', reason: 'approved by phone' });
      expect(await run.result()).toEqual({ decision: { by: 'ops' } });
      expect(await waitStatuses(run.runId, 'approval')).toEqual(['matched']);

      const event = await flow.notify('approved', { id: 'a1', by: 'webhook' });
      expect(event.matchedWaits).toBe(0);
      expect((await step(run.runId, 'approval')).result).toEqual({ by: 'ops' });
      await expect(flow.resolveWait(run.runId, 'approval', {})).rejects.toMatchObject({
        code: 'WAIT_NOT_FOUND',
        message: `Step "approval" of run ${run.runId} has no pending wait: its wait is matched`,
      });

      const audit = await flow.audit({ runId: run.runId });
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ action: 'resolve_wait', actor: 'alice', reason: 'approved by phone', stepName: 'approval', workflow: 'approve' });
    } finally {
      await worker.stop();
    }
  });

  it('refuses what is not a pending wait, naming what it found, and bad arguments', async () => {
    const wf = flow.workflow('refusals', async ({ step }: WorkflowContext) => {
      await step.run('plain', () => 1);
      await step.waitForEvent('later', { timeout: '1 minute' });
    });
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await statusIs(run.runId, 'waiting');
      await expect(flow.resolveWait('nope', 'later')).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
      await expect(flow.resolveWait(run.runId, 'missing')).rejects.toMatchObject({ code: 'WAIT_NOT_FOUND', message: `Run ${run.runId} has no step "missing"` });
      await expect(flow.resolveWait(run.runId, 'plain')).rejects.toMatchObject({ code: 'WAIT_NOT_FOUND', message: `Step "plain" of run ${run.runId} has no wait` });
      await expect(flow.resolveWait(run.runId, 7 as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('`stepName`') });
      await expect(flow.resolveWait(run.runId, 'later', { n: 1n })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('payload') });
      await expect(flow.resolveWait(run.runId, 'later', {}, { reason: 5 as never })).rejects.toMatchObject({ code: 'INVALID_OPTION' });

      // Its timeout passed on the flow's clock (no worker has settled it yet): it timed out.
      const late = ctx.flow();
      late.setClockOffset(2 * 60_000);
      await expect(late.resolveWait(run.runId, 'later')).rejects.toMatchObject({ code: 'WAIT_NOT_FOUND', message: expect.stringContaining('timed out') });

      expect(await flow.cancel(run.runId)).toBe(true);
      await expect(flow.resolveWait(run.runId, 'later')).rejects.toMatchObject({ code: 'WAIT_NOT_FOUND', message: expect.stringContaining('its wait is cancelled') });
      expect((await flow.audit({ runId: run.runId })).map((entry) => entry.action)).toEqual(['cancel']);
    } finally {
      await worker.stop();
    }
  });

  it("refuses a payload or result larger than the flow's maxPayloadSize, storing nothing", async () => {
    const small = ctx.flow({ maxPayloadSize: 1024 });
    const big = { text: 'x'.repeat(2048) };
    await expect(small.resolveWait('any-run', 'go', big)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(small.completeStep('any-run', 'step', big)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await small.audit({ runId: 'any-run' })).toEqual([]);
  });

  it('leaves a paused run paused (its step settled), and it goes on with the payload once resumed', async () => {
    const wf = flow.workflow('paused-wait', async ({ step }: WorkflowContext) => step.waitForEvent('go'));
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await statusIs(run.runId, 'waiting');
      expect(await flow.pause(run.runId)).toBe(true);
      await flow.resolveWait(run.runId, 'go', 'went');
      expect((await flow.getRun(run.runId))!.status).toBe('paused');
      expect(await step(run.runId, 'go')).toMatchObject({ status: 'succeeded', result: 'went' });
      expect(await flow.resume(run.runId)).toBe(true);
      expect(await run.result()).toBe('went');
    } finally {
      await worker.stop();
    }
  });

  it('completes an invoke wait as if the child had completed with the payload as its result', async () => {
    const child = flow.workflow('stuck-child', async ({ step }: WorkflowContext) => step.waitForEvent('never'));
    const parent = flow.workflow('parent', async ({ step }: WorkflowContext) => step.invoke('kid', child, {}));
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await parent.start({});
      await statusIs(run.runId, 'waiting');
      const childRunId = ((await step(run.runId, 'kid_start')).result as { runId: string }).runId;
      await statusIs(childRunId, 'waiting');
      await flow.resolveWait(run.runId, 'kid_wait', { shipped: true });
      expect(await run.result()).toEqual({ runId: childRunId, workflow: 'stuck-child', status: 'completed', result: { shipped: true } });
      // The child itself is left alone; when it ends, the parent's settled wait takes nothing more.
      expect((await flow.getRun(childRunId))!.status).toBe('waiting');
      await flow.cancel(childRunId);
      expect((await step(run.runId, 'kid_wait')).result).toMatchObject({ result: { shipped: true } });
    } finally {
      await worker.stop();
    }
  });

  it('a run its worker holds finds its wait resolved at its next suspension', async () => {
    const slow = latch();
    let entered = 0;
    const wf = flow.workflow('held-wait', async ({ step, input }: WorkflowContext<{ id: string }>) => {
      const [decision, done] = await Promise.all([
        step.waitForEvent('sig', { event: 'held-signal', match: { id: input.id } }),
        (async () => {
          await step.sleep('nap', 30);
          return step.run('slow', async () => {
            entered++;
            await slow.promise;
            return 'slow done';
          });
        })(),
      ]);
      return { decision, done };
    });
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({ id: 'h1' });
      await eventually(() => entered === 1);
      expect(await waitStatuses(run.runId, 'sig')).toEqual(['pending']);
      await other.resolveWait(run.runId, 'sig', { ok: true });
      expect((await flow.getRun(run.runId))!.status).toBe('running');
      slow.release();
      expect(await run.result({ timeout: '20 seconds' })).toEqual({ decision: { ok: true }, done: 'slow done' });
      expect(entered).toBe(1);
      expect((await flow.audit({ runId: run.runId }))[0]!.details).toMatchObject({ runStatus: 'running', woken: false });
    } finally {
      await worker.stop();
    }
  });

  it('races a real event: each time exactly one of notify and resolveWait matches the wait, and the result is the winner’s', async () => {
    const wf = flow.workflow('race-wait', async ({ step, input }: WorkflowContext<{ id: string }>) =>
      step.waitForEvent('race', { event: 'race-event', match: { id: input.id } }),
    );
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const wins = { event: 0, operator: 0 };
      for (let i = 0; i < 20; i++) {
        const id = `race-${i}`;
        const run = await wf.start({ id });
        await statusIs(run.runId, 'waiting');
        // notify is one round trip, resolveWait a few: the event goes out up to 5 ms later, so both win some.
        const [notified, resolved] = await Promise.allSettled([
          new Promise((resolve) => setTimeout(resolve, i % 6)).then(() => flow.notify('race-event', { id, from: 'event' })),
          other.resolveWait(run.runId, 'race', { from: 'operator' }),
        ]);
        if (notified.status !== 'fulfilled') throw notified.reason;
        const result = await run.result();
        expect(await waitStatuses(run.runId, 'race')).toEqual(['matched']);
        if (resolved.status === 'fulfilled') {
          wins.operator++;
          expect(notified.value.matchedWaits).toBe(0);
          expect(result).toEqual({ from: 'operator' });
        } else {
          wins.event++;
          expect(resolved.reason).toMatchObject({ code: 'WAIT_NOT_FOUND', message: expect.stringContaining('its wait is matched') });
          expect(notified.value.matchedWaits).toBe(1);
          expect(result).toEqual({ id, from: 'event' });
        }
        expect((await flow.audit({ runId: run.runId })).length).toBe(resolved.status === 'fulfilled' ? 1 : 0);
      }
      expect(wins.event + wins.operator).toBe(20);
    } finally {
      await worker.stop();
    }
  });
});

describe('flow.completeStep', () => {
  it('completeStep on a retrying step stops its retries: the run completes with the given result', async () => {
    let attempts = 0;
    const wf = flow.workflow('stuck-retry', async ({ step }: WorkflowContext) => {
      const got = await step.run('flaky', { retries: 5, backoff: { initial: '1 hour', jitter: 0 } }, () => {
        attempts++;
        throw new Error('still down');
      });
      return { got };
    });
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await statusIs(run.runId, 'retrying');
      expect(attempts).toBe(1);
      expect((await step(run.runId, 'flaky')).metadata.retryAt).toBeDefined();
      await other.completeStep(run.runId, 'flaky', 42, { actor: 'bob', reason: 'done by hand' });
      expect(await run.result()).toEqual({ got: 42 });
      expect(attempts).toBe(1);
      const stored = await step(run.runId, 'flaky');
      expect(stored).toMatchObject({ status: 'succeeded', result: 42, error: null });
      expect(stored.metadata.retryAt).toBeUndefined();
      const audit = await flow.audit({ runId: run.runId });
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ action: 'complete_step', actor: 'bob', reason: 'done by hand', stepName: 'flaky', details: { stepStatus: 'retrying', runStatus: 'retrying' } });
      await expect(flow.completeStep(run.runId, 'flaky', 1)).rejects.toMatchObject({ code: 'INVALID_STATE', message: expect.stringContaining('is succeeded') });
    } finally {
      await worker.stop();
    }
  });

  it('puts a failed run back in the queue with the step’s result; completed steps do not run again', async () => {
    const calls = { before: 0, boom: 0 };
    const wf = flow.workflow('failed-step', async ({ step }: WorkflowContext) => {
      const before = await step.run('before', () => ++calls.before);
      const fixed = await step.run('boom', { retries: 0 }, () => {
        calls.boom++;
        throw new Error('boom');
      });
      return { before, fixed };
    });
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await expect(run.result()).rejects.toThrow('boom');
      await expect(flow.completeStep(run.runId, 'nope', 1)).rejects.toMatchObject({ code: 'STEP_NOT_FOUND', message: `Run ${run.runId} has no step "nope"` });
      await expect(flow.completeStep(run.runId, 'before', 1)).rejects.toMatchObject({ code: 'INVALID_STATE' });
      await expect(flow.completeStep(run.runId, 'boom', () => 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(flow.completeStep('nope', 'boom', 1)).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
      await flow.completeStep(run.runId, 'boom', 'fixed by hand');
      expect(await flow.handle(run.runId).result()).toEqual({ before: 1, fixed: 'fixed by hand' });
      expect(calls).toEqual({ before: 1, boom: 1 });
      const info = (await flow.getRun(run.runId))!;
      expect(info.error).toBeNull();
      expect((await flow.audit({ runId: run.runId })).map((entry) => entry.action)).toEqual(['complete_step']);
      await expect(flow.completeStep(run.runId, 'boom', 1)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    } finally {
      await worker.stop();
    }
  });

  it('takes the run from a worker running the retry attempt: that attempt’s result never lands', async () => {
    const gate = latch();
    let attempts = 0;
    const wf = flow.workflow('held-retry', async ({ step }: WorkflowContext) =>
      step.run('flaky', { retries: 3, backoff: { initial: 1, jitter: 0 } }, async () => {
        attempts++;
        if (attempts === 1) throw new Error('first attempt fails');
        await gate.promise;
        return 'from the worker';
      }),
    );
    const worker = flow.worker({ pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(() => attempts === 2);
      expect((await flow.getRun(run.runId))!.status).toBe('running');
      await other.completeStep(run.runId, 'flaky', 'from the operator');
      expect((await flow.audit({ runId: run.runId }))[0]!.details).toMatchObject({ stepStatus: 'retrying', leaseTaken: true });
      gate.release();
      expect(await run.result()).toBe('from the operator');
      expect((await step(run.runId, 'flaky')).result).toBe('from the operator');
      expect(attempts).toBe(2);
    } finally {
      await worker.stop();
    }
  });
});
