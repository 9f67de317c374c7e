import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { databasePerFile, eventually } from '../helpers/flow.js';

const files = databasePerFile('wait_groups');
const harnessed = () => files.ctx.harnessed({ backoff: { initial: 10 } });

/** The wait rows of a run's step, by branch: status and stored value. */
async function branches(flow: DurableFlow, runId: string, step: string) {
  const { rows } = await flow.pool.query<{ branch: string; status: string; result: unknown; is_sleep: boolean }>(
    `SELECT w.branch, w.status, w.result, w.is_sleep FROM ${flow.tables.waits} w
     JOIN ${flow.tables.steps} s ON s.id = w.workflow_step_id JOIN ${flow.tables.runs} r ON r.id = w.workflow_run_id
     WHERE r.run_id = $1 AND s.name = $2 ORDER BY w.id`,
    [runId, step],
  );
  return Object.fromEntries(rows.map((r) => [r.branch, r.status]));
}

describe('step.waitAny', () => {
  it('returns the branch an event took, cancels the others at once, and no later event or timer touches the run', async () => {
    const { flow, harness } = await harnessed();
    let after = 0;
    const wf = flow.workflow('decide', async ({ input, step }: WorkflowContext<{ id: number }>) => {
      const first = await step.waitAny('decision', {
        approved: { event: 'approved', match: { id: input.id } },
        rejected: { event: 'rejected', match: { id: input.id } },
        expired: { sleep: '2 days' },
      });
      await step.run('after', () => ++after);
      return first;
    });
    const run = await wf.start({ id: 7 });
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    // The run sleeps until the sleep branch at the latest.
    const wake = await harness.nextWakeAt(run);
    expect(wake).not.toBeNull();
    expect(await branches(flow, run.runId, 'decision')).toEqual({ approved: 'pending', rejected: 'pending', expired: 'pending' });
    expect((await flow.notify('approved', { id: 8 })).matchedWaits).toBe(0);
    expect((await flow.notify('approved', { id: 7, by: 'ops' })).matchedWaits).toBe(1);
    // The losers were settled by that notify's transaction, before any worker ran the run.
    expect(await branches(flow, run.runId, 'decision')).toEqual({ approved: 'matched', rejected: 'cancelled', expired: 'cancelled' });
    expect((await flow.notify('rejected', { id: 7 })).matchedWaits).toBe(0);
    await harness.drain();
    await harness.assertCompleted(run, { key: 'approved', value: { id: 7, by: 'ops' } });
    expect(after).toBe(1);
    // Past the sleep branch: nothing wakes, nothing changes.
    await harness.travel('3 days');
    expect(await harness.drain()).toBe(0);
    expect(await harness.nextWakeAt(run)).toBeNull();
    await harness.assertStepResult(run, 'decision', { key: 'approved', value: { id: 7, by: 'ops' } });
  });

  it('takes the sleep branch when its time passes first (value null); a later event matches nothing', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('expire', async ({ step }: WorkflowContext) => step.waitAny('decision', { approved: { event: 'approved' }, expired: { sleep: '1 hour' } }));
    const run = await wf.start({});
    await harness.drain();
    await harness.travel('61 minutes');
    await harness.drain();
    await harness.assertCompleted(run, { key: 'expired', value: null });
    expect(await branches(flow, run.runId, 'decision')).toEqual({ approved: 'cancelled', expired: 'matched' });
    expect((await flow.notify('approved', {})).matchedWaits).toBe(0);
  });

  it('refuses an event stored after the sleep branch ended, even before any worker noticed', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('late', async ({ step }: WorkflowContext) => step.waitAny('decision', { approved: { event: 'approved' }, expired: { until: new Date(Date.now() + 3_600_000) } }));
    const run = await wf.start({});
    await harness.drain();
    await harness.travel('2 hours');
    // No worker has run since the deadline: the event is too late all the same.
    expect((await flow.notify('approved', {})).matchedWaits).toBe(0);
    await harness.drain();
    await harness.assertCompleted(run, { key: 'expired', value: null });
  });

  it('finds an event stored before the run reached the wait (sent right after start)', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('early', async ({ step }: WorkflowContext) => step.waitAny('decision', { a: { event: 'a' }, b: { event: 'b' } }));
    const run = await wf.start({});
    await flow.notify('b', { n: 2 });
    await harness.drain();
    await harness.assertCompleted(run, { key: 'b', value: { n: 2 } });
    expect(await branches(flow, run.runId, 'decision')).toEqual({ a: 'cancelled', b: 'matched' });
  });

  it('takes the branch that ended first when several ended before the run reached the wait, whatever their order of declaration', async () => {
    const { flow, harness } = await harnessed();
    const child = flow.workflow('fast-child', async () => 'done');
    const wf = flow.workflow('earliest', async ({ input, step }: WorkflowContext<{ child: string }>) => {
      await step.run('busy', () => 1);
      return step.waitAny('decision', { a: { event: 'a' }, child: { workflow: input.child }, b: { event: 'b' } });
    });
    const c = await child.start({});
    const run = await wf.start({ child: c.runId });
    await flow.notify('b', { n: 1 });
    await flow.notify('a', { n: 2 });
    await harness.drain();
    await harness.assertCompleted(run, { key: 'b', value: { n: 1 } });
    expect(await branches(flow, run.runId, 'decision')).toEqual({ a: 'cancelled', child: 'cancelled', b: 'matched' });
  });

  it('gives an event that matches two branches to the first declared', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('overlap', async ({ step }: WorkflowContext) =>
      step.waitAny('decision', { wide: { event: 'x' }, narrow: { event: 'x', match: { n: 1 } } }),
    );
    const run = await wf.start({});
    await harness.drain();
    expect((await flow.notify('x', { n: 1 })).matchedWaits).toBe(1);
    await harness.drain();
    await harness.assertCompleted(run, { key: 'wide', value: { n: 1 } });
  });

  it('takes a child run that finishes first, with its outcome as waitForWorkflow returns it', async () => {
    const { flow, harness } = await harnessed();
    const child = flow.workflow('child', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('go');
      return 'done';
    });
    const parent = flow.workflow('parent', async ({ input, step }: WorkflowContext<{ child: string }>) =>
      step.waitAny('race', { child: { workflow: input.child }, cancelled: { event: 'stop' } }),
    );
    const c = await child.start({});
    const run = await parent.start({ child: c.runId });
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    await flow.notify('go', {});
    await harness.drain();
    await harness.assertCompleted(run, { key: 'child', value: { runId: c.runId, workflow: 'child', status: 'completed', result: 'done' } });
    expect(await branches(flow, run.runId, 'race')).toEqual({ child: 'matched', cancelled: 'cancelled' });
    expect((await flow.notify('stop', {})).matchedWaits).toBe(0);
  });

  it('takes a run that had already finished when the wait began', async () => {
    const { flow, harness } = await harnessed();
    const child = flow.workflow('quick', async () => 42);
    const parent = flow.workflow('late-parent', async ({ input, step }: WorkflowContext<{ child: string }>) =>
      step.waitAny('race', { stop: { event: 'stop' }, child: { workflow: input.child } }),
    );
    const c = await child.start({});
    await harness.drain();
    const run = await parent.start({ child: c.runId });
    await harness.drain();
    await harness.assertCompleted(run, { key: 'child', value: { runId: c.runId, workflow: 'quick', status: 'completed', result: 42 } });
  });

  it('throws WaitTimeoutError when its timeout ends before any branch, and every replay throws it again', async () => {
    const { flow, harness } = await harnessed();
    let replays = 0;
    const wf = flow.workflow('timeout', { retries: 0 }, async ({ step }: WorkflowContext) => {
      replays++;
      try {
        await step.waitAny('decision', { a: { event: 'a' }, later: { sleep: '1 day' } }, { timeout: '1 hour' });
      } catch (error) {
        await step.run('caught', () => (error instanceof WaitTimeoutError ? (error as WaitTimeoutError).code : 'other'));
        throw error;
      }
    });
    const run = await wf.start({});
    await harness.drain();
    await harness.travel('2 hours');
    await harness.drain();
    const failed = await harness.assertFailed(run, WaitTimeoutError);
    expect(failed.error!.message).toContain('"decision"');
    await harness.assertStepResult(run, 'caught', 'WAIT_TIMEOUT');
    expect(await branches(flow, run.runId, 'decision')).toEqual({ a: 'timed_out', later: 'cancelled' });
    expect(replays).toBeGreaterThanOrEqual(2);
  });

  it('keeps the branch across replays: a step after it that fails and retries sees the same winner', async () => {
    const { flow, harness } = await harnessed();
    let attempts = 0;
    const seen: string[] = [];
    const wf = flow.workflow('replayed', async ({ step }: WorkflowContext) => {
      const first = await step.waitAny('decision', { a: { event: 'a' }, b: { event: 'b' } });
      seen.push(first.key);
      await step.run('flaky', { retries: 3 }, () => {
        if (++attempts < 3) throw new Error('not yet');
        return attempts;
      });
      return first.key;
    });
    const run = await wf.start({});
    await harness.drain();
    await flow.notify('b', {});
    await harness.drain();
    // Another branch's event in between changes nothing.
    await flow.notify('a', {});
    for (let i = 0; i < 5; i++) {
      await harness.travelToNextWake(run).catch(() => undefined);
      await harness.drain();
    }
    await harness.assertCompleted(run, 'b');
    expect(new Set(seen)).toEqual(new Set(['b']));
  });

  it('refuses bad branches with an error that says what is wrong', async () => {
    const { flow, harness } = await harnessed();
    const cases: [unknown, RegExp][] = [
      [[], /branches of step\.waitAny "w" to be an object/],
      [{}, /between 1 and 32 branches, got 0/],
      [{ a: { sleep: '1 hour', event: 'x' } }, /branch "a" of step\.waitAny "w" to be one of/],
      [{ a: { nothing: 1 } }, /branch "a" of step\.waitAny "w" to be one of/],
      [{ a: { event: '' } }, /`event` of branch "a"/],
      [{ a: { event: 'x', match: [1] } }, /`match` of branch "a" .* plain object/],
      [{ a: { workflow: 3 } }, /`workflow` of branch "a" .* run id/],
      [{ a: { sleep: 'soon' } }, /sleep of branch "a"/],
    ];
    for (const [index, [value, message]] of cases.entries()) {
      const wf = flow.workflow(`bad-${index}`, { retries: 0 }, async ({ step }: WorkflowContext) => step.waitAny('w', value as never));
      const run = await wf.start({});
      await harness.drain();
      const failed = await harness.assertFailed(run);
      expect(failed.error!.message).toMatch(message);
    }
  });
});

describe('the run page', () => {
  it('shows each branch, the one a waitAny took and the ones it did not; a waitAll counts the branches that ended', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('shown', async ({ step }: WorkflowContext) => {
      const first = await step.waitAny('decision', { approved: { event: 'approved', match: { id: 1 } }, expired: { sleep: '2 days' } });
      const all = await step.waitAll('papers', { id: { event: 'id_doc' }, proof: { event: 'proof_doc' } });
      return { first, all };
    });
    const run = await wf.start({});
    await harness.drain();
    const app = express().use('/df', flow.router({ allowUnauthenticated: true }));
    const waiting = await request(app).get(`/df/runs/${run.runId}`);
    expect(waiting.status).toBe(200);
    expect(waiting.text).toContain('waitAny over 2 branches');
    expect(waiting.text).toMatch(/Branch <strong>approved<\/strong>:\s*waits for <strong>approved<\/strong>/);
    expect(waiting.text).toMatch(/Branch <strong>expired<\/strong>:\s*sleeps until/);
    expect(waiting.text).not.toContain('durable_flow.sleep');
    // An operator can send the event of a branch, but not of a sleep, and resolveWait does not pick a branch.
    expect(waiting.text.match(/Send matching event/g)?.length).toBe(1);
    expect(waiting.text).not.toContain('Resolve wait');
    // One box per wait row (two branches each), never two for one.
    expect(waiting.text.match(/<div class="wait[^"]*" id="wait-\d+"/g)?.length).toBe(2);
    await flow.notify('approved', { id: 1, by: 'ops' });
    await harness.drain();
    await flow.notify('proof_doc', { f: 1 });
    const page = await request(app).get(`/df/runs/${run.runId}`);
    expect(page.text).toMatch(/took <strong class="branch-taken">approved<\/strong>/);
    expect(page.text).toMatch(/data-branch="approved"[\s\S]*?class="badge success">taken<\/span>/);
    expect(page.text).toMatch(/data-branch="expired"[\s\S]*?class="badge neutral">not taken<\/span>/);
    expect(page.text).toContain('waitAll over 2 branches: 1 of 2 ended');
    const timeline = (await flow.timeline(run.runId))!;
    const branchesOf = (step: string) => timeline.steps.find((s) => s.step.name === step)!.waits.map((w) => [w.branch?.key, w.branch?.mode, w.status, w.branch?.value]);
    expect(branchesOf('decision')).toEqual([['approved', 'any', 'matched', { id: 1, by: 'ops' }], ['expired', 'any', 'cancelled', null]]);
    expect(branchesOf('papers')).toEqual([['id', 'all', 'pending', null], ['proof', 'all', 'matched', { f: 1 }]]);
    await expect(flow.resolveWait(run.runId, 'papers', {}, { actor: 'ops', reason: 'test' })).rejects.toThrow(/step\.waitAll with several branches/);
  });
});

describe('step.waitAll', () => {
  it('completes once every branch ended, in any order, with an object of their values; one branch does not wake the run', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('documents', async ({ input, step }: WorkflowContext<{ id: number }>) =>
      step.waitAll('documents', {
        id: { event: 'id_uploaded', match: { id: input.id } },
        proof: { event: 'proof_uploaded', match: { id: input.id } },
        cooling: { sleep: '1 hour' },
      }),
    );
    const run = await wf.start({ id: 1 });
    await harness.drain();
    await flow.notify('proof_uploaded', { id: 1, file: 'p.pdf' });
    // Not complete: the run is not made due.
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    expect(await branches(flow, run.runId, 'documents')).toEqual({ id: 'pending', proof: 'matched', cooling: 'pending' });
    await harness.travel('2 hours');
    await harness.drain();
    // The sleep ended; the run waits again for the id, with no timer left.
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    expect(await harness.nextWakeAt(run)).toBeNull();
    expect(await branches(flow, run.runId, 'documents')).toEqual({ id: 'pending', proof: 'matched', cooling: 'matched' });
    expect((await flow.notify('id_uploaded', { id: 1, file: 'id.png' })).matchedWaits).toBe(1);
    expect((await flow.getRun(run.runId))!.status).toBe('ready');
    await harness.drain();
    await harness.assertCompleted(run, { id: { id: 1, file: 'id.png' }, proof: { id: 1, file: 'p.pdf' }, cooling: null });
  });

  it('gives one event to two branches that both match it (parallel waits share an event)', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('shared', async ({ step }: WorkflowContext) => step.waitAll('both', { a: { event: 'x' }, b: { event: 'x' } }));
    const run = await wf.start({});
    await harness.drain();
    expect((await flow.notify('x', { n: 1 })).matchedWaits).toBe(2);
    await harness.drain();
    await harness.assertCompleted(run, { a: { n: 1 }, b: { n: 1 } });
  });

  it('times out as a whole when one branch does not end in time', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('all-timeout', { retries: 0 }, async ({ step }: WorkflowContext) =>
      step.waitAll('both', { a: { event: 'a' }, b: { event: 'b' } }, { timeout: '1 hour' }),
    );
    const run = await wf.start({});
    await harness.drain();
    await flow.notify('a', {});
    await harness.travel('2 hours');
    expect((await flow.notify('b', {})).matchedWaits).toBe(0);
    await harness.drain();
    await harness.assertFailed(run, WaitTimeoutError);
    expect(await branches(flow, run.runId, 'both')).toEqual({ a: 'matched', b: 'timed_out' });
  });
});

describe('waitAny under races', () => {
  it('an event and a finishing run racing for two branches: exactly one wins, the other is cancelled, the step holds the winner', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    const harness = createTestHarness(flow);
    const child = flow.workflow('racer', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('finish');
      return 'child';
    });
    const parent = flow.workflow('racing', async ({ input, step }: WorkflowContext<{ child: string; n: number }>) =>
      step.waitAny('race', { event: { event: 'stop', match: { n: input.n } }, child: { workflow: input.child } }),
    );
    const winners = new Map<string, number>();
    for (let n = 0; n < 20; n++) {
      const c = await child.start({});
      const run = await parent.start({ child: c.runId, n });
      await harness.drain();
      // The child's run will finish in one transaction, the event arrive in another, at the same moment.
      const [, event] = await Promise.all([
        flow.notify('finish', {}).then(() => harness.drain()),
        flow.notify('stop', { n }),
      ]);
      void event;
      await eventually(async () => {
        await harness.drain();
        return (await flow.getRun(run.runId))!.status === 'completed';
      });
      const output = (await flow.getRun(run.runId))!.output as { key: string };
      const rows = await branches(flow, run.runId, 'race');
      expect(Object.values(rows).sort()).toEqual(['cancelled', 'matched']);
      expect(rows[output.key]).toBe('matched');
      winners.set(output.key, (winners.get(output.key) ?? 0) + 1);
    }
    expect([...winners.values()].reduce((a, b) => a + b, 0)).toBe(20);
  });
});
