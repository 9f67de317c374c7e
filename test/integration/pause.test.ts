import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError } from '../../lib/index.js';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await setupDatabase('pause');
  await ctx.flow().migrate();
});
afterAll(async () => {
  await ctx?.cleanup();
});

let seq = 0;
const name = (base: string) => `${base}_${++seq}`;

/** A promise and its resolve, to hold a step body until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function status(flow: DurableFlow, runId: string): Promise<string | undefined> {
  return (await flow.getRun(runId))?.status;
}

describe('flow.pause / flow.resume of a run no worker holds', () => {
  it('a waiting run stays paused when its event comes (the wait is matched), and resumes with it', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const workflow = name('pause_wait');
    const wf = flow.workflow(workflow, async ({ step, runId }) => step.waitForEvent('go', { match: { runId } }));
    const { runId } = await wf.start({});
    await harness.drain();
    expect(await status(flow, runId)).toBe('waiting');

    expect(await flow.pause(runId, { actor: 'ops@example.com', reason: 'investigating' })).toBe(true);
    expect(await flow.pause(runId)).toBe(false); // already paused
    expect(await flow.getRun(runId)).toMatchObject({ status: 'paused', wakeAt: null, lease: null });

    const event = await flow.notify('go', { runId, n: 1 });
    expect(event.matchedWaits).toBe(1);
    await harness.drain();
    expect(await status(flow, runId)).toBe('paused');

    expect(await flow.resume(runId, { actor: 'ops@example.com' })).toBe(true);
    expect(await flow.resume(runId)).toBe(false);
    await harness.drain();
    expect(await flow.getRun(runId)).toMatchObject({ status: 'completed', output: { runId, n: 1 } });

    const audit = await flow.audit({ runId });
    expect(audit.map((e) => [e.action, e.actor, e.reason])).toEqual([
      ['resume', 'ops@example.com', null],
      ['pause', 'ops@example.com', 'investigating'],
    ]);
    expect(audit[1]).toMatchObject({ workflow, runId, details: { status: 'waiting' } });
  });

  it('a sleeping run is not woken while paused, even past its time; resumed, it sleeps on only if time remains', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    let after = 0;
    const wf = flow.workflow(name('pause_sleep'), async ({ step }) => {
      await step.sleep('nap', '1 hour');
      return step.run('after', () => ++after);
    });
    const { runId } = await wf.start({});
    await harness.drain();
    expect(await status(flow, runId)).toBe('sleeping');
    await flow.pause(runId);
    await harness.travel('2 hours');
    await harness.drain();
    expect(await status(flow, runId)).toBe('paused');
    expect(after).toBe(0);
    await flow.resume(runId);
    await harness.drain();
    expect(await status(flow, runId)).toBe('completed');
    expect(after).toBe(1);
  });

  it('a queued run is never claimed while paused; a cancelled paused run is cancelled', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    let ran = 0;
    const wf = flow.workflow(name('pause_queued'), async () => ++ran);
    const a = await wf.start({});
    const b = await wf.start({});
    await flow.pause(a.runId);
    await flow.pause(b.runId);
    await harness.drain();
    expect(ran).toBe(0);
    expect(await flow.cancel(b.runId, { reason: 'not needed' })).toBe(true);
    expect(await status(flow, b.runId)).toBe('cancelled');
    await flow.resume(a.runId);
    await harness.drain();
    expect(ran).toBe(1);
    expect(await status(flow, a.runId)).toBe('completed');
    expect(await flow.pause(a.runId)).toBe(false); // finished
  });

  it('refuses an unknown run and bad options, naming them', async () => {
    const flow = ctx.flow();
    await expect(flow.pause('no-such-run')).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
    await expect(flow.resume('no-such-run')).rejects.toBeInstanceOf(DurableFlowError);
    await expect(flow.pause('x', { actor: 42 } as never)).rejects.toThrow(/Expected `actor` to be a non-empty string/);
    await expect(flow.pause('x', { reason: 'y'.repeat(3000) })).rejects.toThrow(/`reason`/);
    await expect(flow.pauseWorkflow('')).rejects.toThrow(/`workflow`/);
  });
});

describe('flow.pause of a run a worker is executing', () => {
  it('lets the running step finish and store its result, runs nothing after it, and resume goes on without running it again', async () => {
    const flow = ctx.flow();
    const held = gate();
    const started = gate();
    const calls = { first: 0, second: 0 };
    const wf = flow.workflow(name('pause_mid_step'), async ({ step }) => {
      const a = await step.run('first', async () => {
        calls.first++;
        started.open();
        await held.promise;
        return 'a';
      });
      const b = await step.run('second', () => {
        calls.second++;
        return 'b';
      });
      return a + b;
    });
    const worker = flow.worker({ concurrency: 2, pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await started.promise;
      expect(await flow.pause(run.runId, { reason: 'deploy' })).toBe(true);
      expect(await flow.getRun(run.runId)).toMatchObject({ status: 'running', pauseRequested: true });
      held.open();
      await eventually(async () => (await status(flow, run.runId)) === 'paused');
      const timeline = await flow.timeline(run.runId);
      expect(timeline!.steps.map((s) => [s.step.name, s.step.status])).toEqual([['first', 'succeeded']]);
      expect(calls).toEqual({ first: 1, second: 0 });
      expect((await flow.getRun(run.runId))!.pauseRequested).toBe(false);

      await flow.resume(run.runId);
      expect(await run.result({ timeout: '10 s' })).toBe('ab');
      expect(calls).toEqual({ first: 1, second: 1 });
    } finally {
      await worker.stop();
    }
  });

  it('a pause asked during a step followed by a wait that settles at once (its event already stored) still stops before the next step', async () => {
    const flow = ctx.flow();
    const held = gate();
    const started = gate();
    let second = 0;
    const wf = flow.workflow(name('pause_then_wait'), async ({ step, runId }) => {
      await step.run('first', async () => {
        started.open();
        await held.promise;
      });
      const event = await step.waitForEvent<{ n: number }>('ready', { match: { runId } });
      await step.run('second', () => ++second);
      return event.n;
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await started.promise;
      await flow.notify('ready', { runId: run.runId, n: 5 }); // stored before the wait begins: it settles in memory
      await flow.pause(run.runId);
      held.open();
      await eventually(async () => (await status(flow, run.runId)) === 'paused');
      const timeline = await flow.timeline(run.runId);
      expect(timeline!.steps.map((s) => [s.step.name, s.step.status])).toEqual([['first', 'succeeded'], ['ready', 'succeeded']]);
      expect(second).toBe(0);
      await flow.resume(run.runId);
      expect(await run.result({ timeout: '10 s' })).toBe(5);
      expect(second).toBe(1);
    } finally {
      await worker.stop();
    }
  });

  it('resume before the step ends withdraws the pause: the run goes straight on', async () => {
    const flow = ctx.flow();
    const held = gate();
    const started = gate();
    const wf = flow.workflow(name('pause_withdrawn'), async ({ step }) => {
      await step.run('first', async () => {
        started.open();
        await held.promise;
      });
      return step.run('second', () => 'done');
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await started.promise;
      await flow.pause(run.runId);
      expect(await flow.resume(run.runId)).toBe(true);
      expect((await flow.audit({ runId: run.runId }))[0]).toMatchObject({ action: 'resume', details: { withdrawn: true } });
      held.open();
      expect(await run.result({ timeout: '10 s' })).toBe('done');
    } finally {
      await worker.stop();
    }
  });
});

describe('flow.pauseWorkflow / resumeWorkflow', () => {
  it("claims none of the workflow's runs meanwhile, new or due, other workflows untouched; resumed, every one runs once", async () => {
    const flow = ctx.flow();
    const paused = name('wf_paused');
    const other = name('wf_other');
    const ran = new Map<string, number>();
    const count = (runId: string): void => {
      ran.set(runId, (ran.get(runId) ?? 0) + 1);
    };
    const wf = flow.workflow(paused, async ({ runId, step }) => {
      await step.sleep('short', 10);
      count(runId);
    });
    const otherWf = flow.workflow(other, async ({ runId }) => count(runId));
    const sleeping = await wf.start({}); // starts, then sleeps
    const worker = flow.worker({ concurrency: 4, pollInterval: 20 });
    await worker.start();
    try {
      await eventually(async () => ['sleeping', 'completed'].includes((await status(flow, sleeping.runId))!));
      expect(await flow.pauseWorkflow(paused, { actor: 'ops', reason: 'bad deploy' })).toBe(true);
      expect(await flow.pauseWorkflow(paused)).toBe(false);
      const fresh = await Promise.all(Array.from({ length: 20 }, () => wf.start({})));
      const unrelated = await otherWf.start({});
      await unrelated.result({ timeout: '10 s' });
      // Claims set the due runs aside: wake_at moved to held_wake_at.
      await eventually(async () => {
        const { rows } = await flow.pool.query(
          `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND held_wake_at IS NOT NULL AND wake_at IS NULL`,
          [paused],
        );
        return rows[0].n >= 20;
      });
      for (const run of fresh) expect(await status(flow, run.runId)).toBe('enqueued');
      expect(fresh.every((run) => !ran.has(run.runId))).toBe(true);

      expect(await flow.resumeWorkflow(paused, { actor: 'ops' })).toBe(true);
      expect(await flow.resumeWorkflow(paused)).toBe(false);
      await Promise.all([...fresh, sleeping].map((run) => run.result({ timeout: '20 s' })));
      for (const run of [...fresh, sleeping]) expect(ran.get(run.runId)).toBe(1);
      expect((await flow.audit({ workflow: paused })).map((e) => e.action)).toEqual(['resume_workflow', 'pause_workflow']);
    } finally {
      await worker.stop();
    }
  });

  it('a run set aside whose resume did not put it back is put back by the claims', async () => {
    const flow = ctx.flow();
    const harness = createTestHarness(flow);
    const workflow = name('wf_strand');
    const wf = flow.workflow(workflow, async () => 'ok');
    await flow.pauseWorkflow(workflow);
    const run = await wf.start({});
    await harness.drain();
    expect(await status(flow, run.runId)).toBe('enqueued');
    // As if resumeWorkflow had crashed after deleting the pause and before putting the run back.
    await flow.pool.query(`DELETE FROM durable_flow_workflow_pauses WHERE workflow_name = $1`, [workflow]);
    await harness.drain();
    expect(await status(flow, run.runId)).toBe('completed');
  });
});
