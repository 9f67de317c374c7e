import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildWorkflowFailedError, NonRetriableError } from '../../lib/index.js';
import type { DurableFlow, Worker, WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;

beforeAll(async () => {
  ctx = await setupDatabase('children');
  flow = ctx.flow({ backoff: { initial: 10, jitter: 0 } });
  worker = flow.worker({ concurrency: 20, pollInterval: 50 });
  await worker.start();
});
afterAll(async () => {
  await ctx.cleanup();
});

const statusOf = async (runId: string) => (await flow.getRun(runId))!.status;

describe('step.invoke', () => {
  it('starts a child once, waits for it, and returns its outcome; parent and child are linked', async () => {
    let childBodies = 0;
    let parentFlaky = 0;
    const child = flow.workflow('child-double', async ({ input, step }: WorkflowContext<number>) => {
      return step.run('double', () => {
        childBodies++;
        return input * 2;
      });
    });
    const parent = flow.workflow('parent-double', async ({ step }: WorkflowContext) => {
      const outcome = await step.invoke<number>('double_it', child, 21);
      await step.run('after', { retries: 1 }, () => {
        if (++parentFlaky === 1) throw new Error('replay the parent');
      });
      return outcome;
    });
    const run = await parent.start({});
    const outcome = await run.result();
    expect(outcome).toMatchObject({ workflow: 'child-double', status: 'completed', result: 42 });
    expect(childBodies).toBe(1);
    const info = await flow.getRun(run.runId);
    expect(info!.childRunIds).toEqual([outcome.runId]);
    expect((await flow.getRun(outcome.runId))!.parentRunId).toBe(run.runId);
    const steps = (await flow.timeline(run.runId))!.steps.map((s) => s.step.name);
    expect(steps).toEqual(['double_it_start', 'double_it_wait', 'after']);
  });

  it('throws ChildWorkflowFailedError for a failed child, or returns the failure with onFailure: return', async () => {
    const failing = flow.workflow('child-fails', async ({ step }: WorkflowContext) => {
      await step.run('boom', () => {
        throw new NonRetriableError('card declined');
      });
    });
    const raising = flow.workflow('parent-raises', async ({ step }: WorkflowContext) => {
      try {
        await step.invoke('charge', failing, {});
        return 'no error';
      } catch (error) {
        return { caught: error instanceof ChildWorkflowFailedError, message: (error as Error).message };
      }
    });
    const returning = flow.workflow('parent-returns', async ({ step }: WorkflowContext) =>
      step.invoke('charge', failing, {}, { onFailure: 'return' }),
    );
    const a = (await (await raising.start({})).result()) as { caught: boolean; message: string };
    expect(a.caught).toBe(true);
    expect(a.message).toMatch(/^Child workflow child-fails [\w-]+ failed: NonRetriableError - card declined$/);
    const b = await (await returning.start({})).result();
    expect(b).toMatchObject({ workflow: 'child-fails', status: 'failed', error: { class: 'NonRetriableError', message: 'card declined' } });
  });

  it('wakes when the watched run finishes even if it finished before the wait existed', async () => {
    const quick = flow.workflow('quick', async () => 'quick result');
    const watcher = flow.workflow('watcher', async ({ step, input }: WorkflowContext<{ runId: string }>) => {
      await step.run('something', () => 1);
      return step.waitForWorkflow('watch', input.runId);
    });
    const done = await quick.start({});
    await done.result();
    const run = await watcher.start({ runId: done.runId });
    expect(await run.result()).toMatchObject({ runId: done.runId, status: 'completed', result: 'quick result' });
  });

  it('wakes a waitForWorkflow when the watched run fails, and when it is cancelled', async () => {
    const gated = flow.workflow('gated', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('open_gate', { timeout: '1 hour' });
      throw new NonRetriableError('closed for good');
    });
    const watcher = flow.workflow('watch-failure', async ({ step, input }: WorkflowContext<{ runId: string }>) =>
      step.waitForWorkflow('watch', input.runId),
    );
    const target = await gated.start({});
    const run = await watcher.start({ runId: target.runId });
    await eventually(async () => (await statusOf(run.runId)) === 'waiting');
    await flow.notify('open_gate', {});
    expect(await run.result()).toMatchObject({ status: 'failed', error: { class: 'NonRetriableError', message: 'closed for good' } });

    const second = await gated.start({});
    const run2 = await watcher.start({ runId: second.runId });
    await eventually(async () => (await statusOf(run2.runId)) === 'waiting');
    await flow.cancel(second.runId);
    expect(await run2.result()).toMatchObject({ status: 'cancelled', error: { class: 'RunCancelled' } });
  });

  it('cancels running children when the parent is cancelled', async () => {
    const sleeper = flow.workflow('child-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const parent = flow.workflow('parent-of-sleepers', async ({ step }: WorkflowContext) =>
      step.invokeMany('naps', [1, 2, 3], {}, () => ({ workflow: sleeper, input: {} })),
    );
    const run = await parent.start({});
    await eventually(async () => (await flow.getRun(run.runId))!.childRunIds.length === 3);
    const { childRunIds } = (await flow.getRun(run.runId))!;
    await eventually(async () => (await Promise.all(childRunIds.map(statusOf))).every((s) => s === 'sleeping'));
    await flow.cancel(run.runId);
    expect(await Promise.all(childRunIds.map(statusOf))).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(await statusOf(run.runId)).toBe('cancelled');
  });
});

describe('step.invokeMany', () => {
  it('keeps at most `concurrency` children in flight, as a sliding window, with results in input order', async () => {
    let inFlight = 0;
    let peak = 0;
    // `a` holds its slot until b, c, d and e have all finished (or 20 s pass): they can only get there
    // through the other slot if the window slides; no timing involved.
    const finished = new Set<string>();
    const child = flow.workflow('window-child', async ({ input, step }: WorkflowContext<{ id: string }>) =>
      step.run('work', async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        const deadline = Date.now() + 20_000;
        while (input.id === 'a' && finished.size < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
        inFlight--;
        finished.add(input.id);
        return input.id.toUpperCase();
      }),
    );
    const parent = flow.workflow('window-parent', async ({ step }: WorkflowContext) => {
      const outcomes = await step.invokeMany(
        'fan',
        ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id })),
        { key: 'id', concurrency: 2 },
        (item) => ({ workflow: child, input: item }),
      );
      return outcomes.map((o) => [o.key, o.result]);
    });
    const run = await parent.start({});
    const result = await run.result();
    expect(result).toEqual([['a', 'A'], ['b', 'B'], ['c', 'C'], ['d', 'D'], ['e', 'E']]);
    expect(peak).toBeLessThanOrEqual(2);
    // Sliding window: b, c, d and e went through the second slot while the slow a held the first.
    const children = await Promise.all((await flow.getRun(run.runId))!.childRunIds.map((id) => flow.getRun(id)));
    const started = children.map((c) => ({ id: (c!.input as { id: string }).id, at: c!.createdAt.getTime(), done: c!.completedAt!.getTime() }));
    const a = started.find((c) => c.id === 'a')!;
    expect(started.filter((c) => c.id !== 'a' && c.at < a.done).map((c) => c.id).sort()).toEqual(['b', 'c', 'd', 'e']);
    const names = (await flow.timeline(run.runId))!.steps.map((s) => s.step.name);
    expect(names).toContain('fan_a_start');
    expect(names).toContain('fan_e_wait');
  });

  it('refuses duplicate keys, including 1 and "1"', async () => {
    const child = flow.workflow('dup-child', async () => 1);
    const parent = flow.workflow('dup-parent', async ({ step }: WorkflowContext) =>
      step.invokeMany('fan', [{ k: 1 }, { k: '1' }], { key: 'k' }, () => ({ workflow: child, input: {} })),
    );
    const run = await parent.start({});
    await expect(run.result()).rejects.toThrow(/Items 0 and 1 of step "fan" have the same key "1"/);
  });

  it('raises ChildWorkflowFailedError after all children finish when one failed', async () => {
    const child = flow.workflow('maybe-fail', async ({ input }: WorkflowContext<number>) => {
      if (input === 2) throw new NonRetriableError(`bad ${input}`);
      return input;
    });
    const parent = flow.workflow('fan-raise', async ({ step }: WorkflowContext) =>
      step.invokeMany('fan', [1, 2, 3], { concurrency: 1 }, (n) => ({ workflow: child, input: n })),
    );
    const run = await parent.start({});
    await expect(run.result()).rejects.toThrow(/ChildWorkflowFailedError: Child workflow maybe-fail .* failed: NonRetriableError - bad 2/);
    const children = (await flow.getRun(run.runId))!.childRunIds;
    expect(children).toHaveLength(3);
  });
});
