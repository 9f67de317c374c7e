import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('rerun');
  flow = ctx.flow({ maxPayloadSize: 1024 });
});
afterAll(async () => {
  await ctx.cleanup();
});

async function stepRows(runId: string): Promise<{ name: string; status: string; result: unknown; exec_snapshot: string }[]> {
  const { rows } = await flow.pool.query(
    `SELECT s.name, s.status, s.result, s.exec_snapshot FROM durable_flow_workflow_steps s
     JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id WHERE r.run_id = $1 ORDER BY s.position, s.id`,
    [runId],
  );
  return rows;
}

async function runCount(workflow: string): Promise<number> {
  const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1`, [workflow]);
  return rows[0].n;
}

describe('flow.replay', () => {
  it('starts a new run of the same workflow that runs every step again, with the original input or the given one', async () => {
    const calls = { a: 0, b: 0 };
    const wf = flow.workflow('replay-all', async ({ step, input }: WorkflowContext<{ n: number }>) => {
      const a = await step.run('a', () => ++calls.a);
      const b = await step.run('b', () => ++calls.b);
      return { n: input?.n, a, b };
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({ n: 1 }, { idempotencyKey: 'replay-all-1' });
      expect(await run.result()).toEqual({ n: 1, a: 1, b: 1 });

      const again = await flow.replay(run.runId, { actor: 'ops@example.com', reason: 'bad deploy' });
      expect(again.runId).not.toBe(run.runId);
      expect(await again.result()).toEqual({ n: 1, a: 2, b: 2 });
      const info = (await flow.getRun(again.runId))!;
      expect(info.replayOf).toBe(run.runId);
      expect(info.workflow).toBe('replay-all');
      expect((await flow.getRun(run.runId))!.replayOf).toBeNull();
      const { rows } = await flow.pool.query(`SELECT idempotency_key FROM durable_flow_workflow_runs WHERE run_id = $1`, [again.runId]);
      expect(rows[0].idempotency_key).toBeNull();

      const edited = await flow.replay(run.runId, { input: { n: 7 } });
      expect(await edited.result()).toEqual({ n: 7, a: 3, b: 3 });
      // `input` present but undefined: the new run has no input.
      const empty = await flow.replay(run.runId, { input: undefined });
      expect(await empty.result()).toEqual({ a: 4, b: 4 });

      const audit = await flow.audit({ runId: run.runId });
      expect(audit.map((entry) => entry.action)).toEqual(['replay', 'replay', 'replay']);
      expect(audit[2]).toMatchObject({ actor: 'ops@example.com', reason: 'bad deploy', workflow: 'replay-all', details: { newRunId: again.runId } });
      expect(audit[0]!.details).toEqual({ newRunId: empty.runId });
    } finally {
      await worker.stop();
    }
  });

  it('refuses an unknown run, bad options and an input over maxPayloadSize, starting nothing and auditing nothing', async () => {
    const wf = flow.workflow('replay-refused', async () => 'ok');
    const run = await wf.start({});
    await expect(flow.replay('no-such-run')).rejects.toMatchObject({ code: 'RUN_NOT_FOUND', message: 'No run with id "no-such-run"' });
    await expect(flow.replay(run.runId, { input: 'x'.repeat(2000) })).rejects.toThrow(/over the limit of 1024 bytes/);
    await expect(flow.replay(run.runId, { actor: '' })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(flow.replay(run.runId, null as never)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    expect(await runCount('replay-refused')).toBe(1);
    expect(await flow.audit({ runId: run.runId })).toEqual([]);
  });
});

describe('flow.rerunFrom', () => {
  it('a completed step before the chosen step never runs again; the chosen step and the later ones run with the new input', async () => {
    const calls = { a: 0, b: 0, c: 0 };
    const wf = flow.workflow('rerun-from', async ({ step, input }: WorkflowContext<{ x: number }>) => {
      const a = await step.run('a', () => {
        calls.a++;
        return `a(${input.x})`;
      });
      await step.sleep('nap', 1);
      const b = await step.run('b', () => {
        calls.b++;
        return `b(${input.x})`;
      });
      const c = await step.run('c', () => {
        calls.c++;
        return `c(${input.x})`;
      });
      return [a, b, c];
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({ x: 1 });
      expect(await run.result()).toEqual(['a(1)', 'b(1)', 'c(1)']);
      expect(calls).toEqual({ a: 1, b: 1, c: 1 });

      const rerun = await flow.rerunFrom(run.runId, 'b', { input: { x: 2 }, actor: 'ops', reason: 'fix b' });
      expect(await rerun.result()).toEqual(['a(1)', 'b(2)', 'c(2)']);
      expect(calls).toEqual({ a: 1, b: 2, c: 2 });
      expect((await flow.getRun(rerun.runId))!.replayOf).toBe(run.runId);
      expect((await flow.getRun(rerun.runId))!.input).toEqual({ x: 2 });
      const steps = await stepRows(rerun.runId);
      expect(steps.map((s) => [s.name, s.status])).toEqual([['a', 'succeeded'], ['nap', 'succeeded'], ['b', 'succeeded'], ['c', 'succeeded']]);
      // The copies carry the new run's mark, not the original's.
      const original = await stepRows(run.runId);
      expect(steps[0]!.exec_snapshot).not.toBe(original[0]!.exec_snapshot);

      // From the first step: nothing is copied, every step runs (with the original input).
      const fromStart = await flow.rerunFrom(run.runId, 'a');
      expect(await fromStart.result()).toEqual(['a(1)', 'b(1)', 'c(1)']);
      expect(calls).toEqual({ a: 2, b: 3, c: 3 });

      const audit = await flow.audit({ runId: run.runId, action: 'rerun_from' });
      expect(audit).toHaveLength(2);
      expect(audit[1]).toMatchObject({ actor: 'ops', reason: 'fix b', stepName: 'b', workflow: 'rerun-from', details: { newRunId: rerun.runId } });
    } finally {
      await worker.stop();
    }
  });

  it('never runs a copied step again with two worker flows taking the reruns', async () => {
    const calls = { a: 0, b: 0 };
    const define = (f: DurableFlow) =>
      f.workflow('rerun-two', async ({ step, input }: WorkflowContext<number>) => {
        const a = await step.run('a', () => {
          calls.a++;
          return input;
        });
        const b = await step.run('b', () => {
          calls.b++;
          return input * 10;
        });
        return a + b;
      });
    const other = ctx.flow();
    const wf = define(flow);
    define(other);
    const workers = [flow.worker({ pollInterval: 20 }), other.worker({ pollInterval: 20 })];
    await Promise.all(workers.map((w) => w.start()));
    try {
      const run = await wf.start(1);
      expect(await run.result()).toBe(11);
      const reruns = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? flow : other).rerunFrom(run.runId, 'b', { input: i })));
      const results = await Promise.all(reruns.map((r) => flow.handle(r.runId).result()));
      expect(results).toEqual(Array.from({ length: 10 }, (_, i) => 1 + i * 10));
      expect(calls).toEqual({ a: 1, b: 11 });
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  });

  it('a wait right after a copied step matches only events sent after the rerun', async () => {
    const calls = { a: 0 };
    const wf = flow.workflow('rerun-wait', async ({ step, input }: WorkflowContext<{ id: string }>) => {
      await step.run('a', () => ++calls.a);
      const paid = await step.waitForEvent('paid', { match: { id: input.id } });
      return step.run('after', () => paid);
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({ id: 'o1' });
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      await flow.notify('paid', { id: 'o1', amount: 1 });
      expect(await run.result()).toEqual({ id: 'o1', amount: 1 });

      // Rerun from the wait: the event the original took does not count; a new one does.
      const rerun = await flow.rerunFrom(run.runId, 'paid');
      await eventually(async () => (await flow.getRun(rerun.runId))!.status === 'waiting');
      expect(calls.a).toBe(1);
      await flow.notify('paid', { id: 'o1', amount: 2 });
      expect(await rerun.result()).toEqual({ id: 'o1', amount: 2 });

      // Rerun from the step after the wait: the matched wait is copied with its payload.
      const later = await flow.rerunFrom(run.runId, 'after');
      expect(await later.result()).toEqual({ id: 'o1', amount: 1 });
      expect(calls.a).toBe(1);
    } finally {
      await worker.stop();
    }
  });

  it('refuses a step the run does not have, naming its steps, and bad arguments; nothing is started', async () => {
    const wf = flow.workflow('rerun-refused', async ({ step }: WorkflowContext) => {
      await step.run('first', () => 1);
      await step.run('second', () => 2);
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    try {
      const run = await wf.start({});
      await run.result();
      await expect(flow.rerunFrom(run.runId, 'third')).rejects.toMatchObject({
        code: 'STEP_NOT_FOUND',
        message: `Run ${run.runId} has no step "third"; its steps are: "first", "second"`,
      });
      await expect(flow.rerunFrom(run.runId, 42 as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('`stepName`') });
      await expect(flow.rerunFrom('nope', 'first')).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
      await expect(flow.rerunFrom(run.runId, 'second', { input: 'y'.repeat(2000) })).rejects.toThrow(/over the limit/);
      expect(await runCount('rerun-refused')).toBe(1);
      expect(await flow.audit({ runId: run.runId })).toEqual([]);
    } finally {
      await worker.stop();
    }
  });
});
