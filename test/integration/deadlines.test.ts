import express from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setDebugPoint } from '../../lib/debug-point.js';
import { DurableFlowError, RetryAfterError } from '../../lib/index.js';
import type { DurableFlow, StoredError, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await setupDatabase('deadlines');
});
// Each test makes its own flows: close them after it (the shared server's max_connections).
afterEach(async () => {
  await ctx.closeFlows();
});
afterAll(async () => {
  await ctx.cleanup();
});

/** A flow with a schema of its own (tests do not see each other's runs), driven by the harness. */
let schemas = 0;
async function harnessed(): Promise<{ flow: DurableFlow; harness: TestHarness }> {
  const flow = ctx.flow({ schema: `dl_${++schemas}`, backoff: { initial: '1 second', jitter: 0 } });
  await flow.migrate();
  return { flow, harness: createTestHarness(flow) };
}

async function stepRow(flow: DurableFlow, runId: string, name: string) {
  const { rows } = await flow.pool.query<{ status: string; attempts: number; metadata: Record<string, unknown>; error: StoredError | null; completed_at: Date | null }>(
    `SELECT s.status, s.attempts, s.metadata, s.error, s.completed_at FROM ${flow.tables.steps} s
     JOIN ${flow.tables.runs} r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.name = $2`,
    [runId, name],
  );
  return rows[0];
}

describe('RetryAfterError', () => {
  it('refuses a missing or bad `after` at construction with INVALID_ARGUMENT', () => {
    for (const after of [undefined, -5, 'soon', Number.NaN, new Date('nope'), [], null]) {
      let caught: unknown;
      try {
        new RetryAfterError('rate limited', { after } as never);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(DurableFlowError);
      expect((caught as DurableFlowError).code).toBe('INVALID_ARGUMENT');
      expect((caught as Error).message).toMatch(/`after` of RetryAfterError/);
    }
    expect(new RetryAfterError('x', { after: '30 seconds' }).afterMs).toBe(30_000);
    expect(new RetryAfterError('x', { after: 250 }).afterMs).toBe(250);
    expect(new RetryAfterError('x', { after: { minutes: 2 } }).afterMs).toBe(120_000);
    const at = new Date(Date.now() + 60_000);
    const fromDate = new RetryAfterError('x', { after: at });
    expect(fromDate.retryAt).toBe(at);
    expect(fromDate.afterMs).toBeGreaterThan(59_000);
    expect(fromDate.afterMs).toBeLessThanOrEqual(60_000);
    expect(new RetryAfterError('x', { after: new Date(Date.now() - 1000) }).afterMs).toBe(0);
  });

  it('makes the next attempt due exactly `after` later on the database clock, not after the backoff', async () => {
    const { flow, harness } = await harnessed();
    let attempts = 0;
    const w = flow.workflow('rate-limited', { retries: 3 }, async ({ step }: WorkflowContext) =>
      step.run('call', () => {
        attempts++;
        if (attempts === 1) throw new RetryAfterError('429 Too Many Requests', { after: '45 seconds' });
        return 'ok';
      }),
    );
    const run = await w.start({});
    await harness.drain();
    const row = (await stepRow(flow, run.runId, 'call'))!;
    expect(row.status).toBe('retrying');
    const failures = row.metadata.failures as { at: string; class: string }[];
    expect(failures[0]!.class).toBe('RetryAfterError');
    // The retry time is the failed attempt's time plus `after`, to the millisecond (the backoff is 1 s).
    expect(Date.parse(row.metadata.retryAt as string) - Date.parse(failures[0]!.at)).toBe(45_000);
    expect(row.error).toMatchObject({ class: 'RetryAfterError', code: 'RETRY_AFTER', message: '429 Too Many Requests' });
    await harness.travel('44 seconds');
    await harness.drain();
    expect(attempts).toBe(1); // the backoff (1 s) would have run it long ago
    await harness.travel('1 second');
    await harness.drain();
    expect(attempts).toBe(2);
    expect(await run.result()).toBe('ok');
  });

  it('counts as a retry: once the retries are used up the step fails with it (class and code kept)', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    const w = flow.workflow('always-429', async ({ step }: WorkflowContext) =>
      step.run('call', { retries: 1, backoff: { initial: '20 seconds', jitter: 0 } }, () => {
        throw new RetryAfterError('slow down', { after: 1200 });
      }),
    );
    const worker = flow.worker({ concurrency: 2, pollInterval: 50 });
    await worker.start();
    try {
      const run = await w.start({});
      await expect(run.result({ timeout: '15 seconds' })).rejects.toThrow(/slow down/);
      const row = (await stepRow(flow, run.runId, 'call'))!;
      expect(row.status).toBe('failed');
      expect(row.attempts).toBe(2);
      expect(row.error).toMatchObject({ class: 'RetryAfterError', code: 'RETRY_AFTER' });
      const info = (await flow.getRun(run.runId))!;
      expect(info.error).toMatchObject({ class: 'RetryAfterError', code: 'RETRY_AFTER', step: 'call' });
      // The stored attempt times (database clock): the second began `after` after the first failed,
      // with room for a noisy machine, and nowhere near the 20 s backoff.
      const [first, second] = row.metadata.failures as { at: string }[];
      const gap = Date.parse(second!.at) - Date.parse(first!.at);
      expect(gap).toBeGreaterThanOrEqual(1200);
      expect(gap).toBeLessThan(8000);
    } finally {
      await worker.stop();
    }
  });
});

describe('timeout', () => {
  it('refuses a bad timeout or startBy with errors naming the option', async () => {
    const { flow } = await harnessed();
    expect(() => flow.workflow('bad', { timeout: 'soon' }, () => 1)).toThrow(/Expected `timeout` to be a positive duration/);
    const w = flow.workflow('fine', () => 1);
    await expect(w.start({}, { timeout: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/`timeout`/) });
    await expect(w.start({}, { startBy: 'later' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/`startBy`/) });
  });

  it('fails a running run with RUN_TIMEOUT at its deadline and aborts the running step with that reason', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    let reason: unknown;
    let resolvedLate = false;
    const w = flow.workflow('slow', { timeout: '1 second' }, async ({ step }: WorkflowContext) => {
      await step.run('quick', () => 1);
      await step.run('long', ({ signal }) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            // The body ignores the abort and returns anyway: its result must not be stored.
            setTimeout(() => {
              resolvedLate = true;
              resolve('late');
            }, 50);
          });
        }),
      );
      await step.run('after', () => 'never');
    });
    const worker = flow.worker({ concurrency: 2, pollInterval: 5000 });
    await worker.start();
    try {
      const run = await w.start({});
      const failure = await run.result({ timeout: '10 seconds' }).catch((error: unknown) => error);
      expect(failure).toMatchObject({ code: 'RUN_FAILED', cause: { code: 'RUN_TIMEOUT' } });
      const info = (await flow.getRun(run.runId))!;
      expect(info.status).toBe('failed');
      expect(info.error).toMatchObject({ class: 'DurableFlowError', code: 'RUN_TIMEOUT', message: expect.stringMatching(/did not finish within its timeout/) });
      expect(info.deadlineAt!.getTime() - info.createdAt.getTime()).toBeGreaterThanOrEqual(990);
      expect(info.deadlineAt!.getTime() - info.createdAt.getTime()).toBeLessThan(1500);
      expect(info.failedAt!.getTime()).toBeGreaterThanOrEqual(info.deadlineAt!.getTime());
      expect(reason).toMatchObject({ code: 'RUN_TIMEOUT' });
      await eventually(() => resolvedLate);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await stepRow(flow, run.runId, 'quick'))!.status).toBe('succeeded');
      expect((await stepRow(flow, run.runId, 'long'))!.status).toBe('cancelled');
      expect(await stepRow(flow, run.runId, 'after')).toBeUndefined();
      expect(worker.stats).toMatchObject({ failed: 1, lost: 0 });
    } finally {
      await worker.stop();
    }
  });

  it('stores nothing past the deadline, even from a worker that could not notice it (its event loop blocked)', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    const w = flow.workflow('blocked', { timeout: 600 }, async ({ step }: WorkflowContext) => {
      await step.run('work', () => 1);
      return 'done';
    });
    let target = '';
    let blocked = false;
    // The completion (with the step's result) is about to be committed: hold the whole process, timers
    // included, until the deadline has passed, then let the commit go.
    setDebugPoint('END_BEFORE_COMMIT', ({ runId }) => {
      if (runId !== target) return;
      blocked = true;
      const until = Date.now() + 900;
      while (Date.now() < until) {
        // busy: the deadline timer cannot fire
      }
    });
    const worker = flow.worker({ concurrency: 2, pollInterval: 5000 });
    await worker.start();
    try {
      const run = await w.start({});
      target = run.runId;
      const failure = await run.result({ timeout: '10 seconds' }).catch((error: unknown) => error);
      expect(blocked).toBe(true);
      expect(failure).toMatchObject({ code: 'RUN_FAILED', cause: { code: 'RUN_TIMEOUT' } });
      const info = (await flow.getRun(run.runId))!;
      expect(info).toMatchObject({ status: 'failed', output: undefined, completedAt: null });
      expect((await stepRow(flow, run.runId, 'work'))?.status).not.toBe('succeeded');
    } finally {
      setDebugPoint('END_BEFORE_COMMIT', undefined);
      await worker.stop();
    }
  });

  it('a keyed run that times out while running frees its concurrency slot for the next one', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    let quickBegan = 0;
    const w = flow.workflow('single-file', { concurrency: 1 }, async ({ step, input }: WorkflowContext<{ hang: boolean }>) =>
      step.run('work', ({ signal }) => {
        if (input.hang) return new Promise((resolve) => signal.addEventListener('abort', () => resolve('aborted')));
        quickBegan = Date.now();
        return 'quick';
      }),
    );
    const worker = flow.worker({ concurrency: 4, pollInterval: 50 });
    await worker.start();
    try {
      const hung = await w.start({ hang: true }, { timeout: 500 });
      await eventually(async () => (await flow.getRun(hung.runId))?.status === 'running');
      const next = await w.start({ hang: false });
      expect(await next.result({ timeout: '10 seconds' })).toBe('quick');
      const [a, b] = [(await flow.getRun(hung.runId))!, (await flow.getRun(next.runId))!];
      expect(a.error?.code).toBe('RUN_TIMEOUT');
      // The next run's body began after the hung run failed. (Not its startedAt: that is the now of the
      // claim's statement, which may have begun before the failure and waited for its locks.)
      expect(b.status).toBe('completed');
      expect(quickBegan).toBeGreaterThanOrEqual(a.failedAt!.getTime());
    } finally {
      await worker.stop();
    }
  });

  it('a start option overrides the workflow option; a run without either has no deadline', async () => {
    const { flow } = await harnessed();
    const w = flow.workflow('w', { timeout: '1 hour' }, () => 1);
    const plain = flow.workflow('plain', () => 1);
    const a = await w.start({});
    const b = await w.start({}, { timeout: '5 minutes' });
    const c = await plain.start({});
    const d = await plain.start({}, { timeout: '2 minutes', startBy: '1 minute' });
    const span = async (runId: string) => {
      const info = (await flow.getRun(runId))!;
      return {
        deadline: info.deadlineAt === null ? null : Math.round((info.deadlineAt.getTime() - info.createdAt.getTime()) / 1000),
        startBy: info.startBy === null ? null : Math.round((info.startBy.getTime() - info.createdAt.getTime()) / 1000),
      };
    };
    expect(await span(a.runId)).toEqual({ deadline: 3600, startBy: null });
    expect(await span(b.runId)).toEqual({ deadline: 300, startBy: null });
    expect(await span(c.runId)).toEqual({ deadline: null, startBy: null });
    expect(await span(d.runId)).toEqual({ deadline: 120, startBy: 60 });
  });

  it('fails a sleeping run at its deadline: its wake-up is never later than the deadline', async () => {
    const { flow, harness } = await harnessed();
    const w = flow.workflow('napper', { timeout: '1 hour' }, async ({ step }: WorkflowContext) => {
      await step.sleep('nap', '1 day');
      return 'woke';
    });
    const run = await w.start({});
    await harness.drain();
    const sleeping = (await flow.getRun(run.runId))!;
    expect(sleeping.status).toBe('sleeping');
    expect(sleeping.wakeAt!.getTime()).toBe(sleeping.deadlineAt!.getTime());
    await harness.travel('59 minutes');
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('sleeping');
    await harness.travel('1 minute');
    await harness.drain();
    const failed = (await flow.getRun(run.runId))!;
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('RUN_TIMEOUT');
    expect(failed.wakeAt).toBeNull();
    expect((await stepRow(flow, run.runId, 'nap'))!.status).toBe('cancelled');
  });

  it('fails a run waiting for an event (no wait timeout); a later event matches nothing', async () => {
    const { flow, harness } = await harnessed();
    const w = flow.workflow('waiter', { timeout: '10 minutes' }, async ({ step }: WorkflowContext) => step.waitForEvent('paid'));
    const run = await w.start({});
    await harness.drain();
    const waiting = (await flow.getRun(run.runId))!;
    expect(waiting.status).toBe('waiting');
    expect(waiting.wakeAt!.getTime()).toBe(waiting.deadlineAt!.getTime());
    await harness.travel('10 minutes');
    await harness.drain();
    expect((await flow.getRun(run.runId))!.error?.code).toBe('RUN_TIMEOUT');
    const event = await flow.notify('paid', {});
    expect(event.matchedWaits).toBe(0);
    const { rows } = await flow.pool.query(`SELECT w.status FROM ${flow.tables.waits} w JOIN ${flow.tables.runs} r ON r.id = w.workflow_run_id WHERE r.run_id = $1`, [run.runId]);
    expect(rows).toEqual([{ status: 'cancelled' }]);
  });

  it('fails a run no worker of its workflow ever claims: any claim sweeps expired runs', async () => {
    const { flow, harness } = await harnessed();
    flow.workflow('here', () => 1);
    // Another process registers `elsewhere`; no worker of it runs.
    const other = ctx.flow({ schema: flow.tables.schema });
    const elsewhere = other.workflow('elsewhere', () => 1);
    const run = await elsewhere.start({}, { timeout: '1 minute', queue: 'nobody-polls' });
    await harness.travel('1 minute');
    await harness.drain();
    const info = (await flow.getRun(run.runId))!;
    expect(info.status).toBe('failed');
    expect(info.error?.code).toBe('RUN_TIMEOUT');
    expect(info.startedAt).toBeNull();
  });

  it('times out the unfinished children with their parent: a child never outlives its parent deadline', async () => {
    const { flow, harness } = await harnessed();
    const child = flow.workflow('child', { timeout: '1 day' }, async ({ step }: WorkflowContext) => {
      await step.sleep('long', '2 days');
    });
    const quick = flow.workflow('quick-child', { timeout: '5 minutes' }, async ({ step }: WorkflowContext) => {
      await step.sleep('short', '10 minutes');
    });
    const parent = flow.workflow('parent', { timeout: '1 hour' }, async ({ step }: WorkflowContext) => {
      await Promise.all([step.invoke('kid', child, {}), step.invoke('fast', quick, {}, { onFailure: 'return' })]);
    });
    const run = await parent.start({});
    await harness.drain();
    const info = (await flow.getRun(run.runId))!;
    const children = await Promise.all(info.childRunIds.map(async (id) => (await flow.getRun(id))!));
    const kid = children.find((c) => c.workflow === 'child')!;
    const fast = children.find((c) => c.workflow === 'quick-child')!;
    const [kidId, fastId] = [kid.runId, fast.runId];
    expect(kid.deadlineAt!.getTime()).toBe(info.deadlineAt!.getTime()); // inherited: earlier than its own day
    expect(fast.deadlineAt!.getTime() - fast.createdAt.getTime()).toBeLessThan(6 * 60_000); // its own, earlier
    await harness.travel('5 minutes');
    await harness.drain();
    expect((await flow.getRun(fastId!))!.error?.code).toBe('RUN_TIMEOUT');
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    await harness.travel('55 minutes');
    await harness.drain();
    expect((await flow.getRun(run.runId))!.error?.code).toBe('RUN_TIMEOUT');
    expect((await flow.getRun(kidId!))!.error?.code).toBe('RUN_TIMEOUT');
  });

  it('flow.retry() of a timed-out run runs it again without a deadline, from its memoized steps', async () => {
    const { flow, harness } = await harnessed();
    let firstRuns = 0;
    const w = flow.workflow('retried', { timeout: '1 hour' }, async ({ step }: WorkflowContext) => {
      await step.run('first', () => ++firstRuns);
      await step.sleep('nap', '2 hours');
      return 'done';
    });
    const run = await w.start({});
    await harness.drain();
    await harness.travel('1 hour');
    await harness.drain();
    expect((await flow.getRun(run.runId))!.error?.code).toBe('RUN_TIMEOUT');
    await flow.retry(run.runId);
    expect((await flow.getRun(run.runId))!.deadlineAt).toBeNull();
    await harness.drain();
    await harness.travel('2 hours');
    await harness.drain();
    expect(await run.result()).toBe('done');
    expect(firstRuns).toBe(1);
  });
});

describe('startBy', () => {
  it('cancels a delayed run with DEADLINE_EXCEEDED at its startBy, never starting it', async () => {
    const { flow, harness } = await harnessed();
    let started = 0;
    const w = flow.workflow('late', () => ++started);
    const run = await w.start({}, { delay: '10 minutes', startBy: '5 minutes' });
    const queued = (await flow.getRun(run.runId))!;
    expect(queued.wakeAt!.getTime()).toBe(queued.startBy!.getTime());
    await harness.travel('4 minutes');
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('enqueued');
    await harness.travel('1 minute');
    await harness.drain();
    const info = (await flow.getRun(run.runId))!;
    expect(info.status).toBe('cancelled');
    expect(info.error).toMatchObject({ class: 'DurableFlowError', code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/had not started by its startBy/) });
    expect(info.startedAt).toBeNull();
    expect(info.attempts).toBe(0);
    await harness.travel('10 minutes');
    await harness.drain();
    expect(started).toBe(0);
    const failure = await run.result().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'RUN_CANCELLED', cause: { code: 'DEADLINE_EXCEEDED' } });
    expect((failure as Error).message).toMatch(/was cancelled: DEADLINE_EXCEEDED: The run had not started by its startBy/);
  });

  it('has no effect once the run started in time (it may then take as long as it needs)', async () => {
    const { flow, harness } = await harnessed();
    const w = flow.workflow('prompt', async ({ step }: WorkflowContext) => {
      await step.sleep('nap', '1 hour');
      return 'done';
    });
    const run = await w.start({}, { startBy: '1 minute' });
    await harness.drain();
    const sleeping = (await flow.getRun(run.runId))!;
    expect(sleeping.startedAt).not.toBeNull();
    expect(sleeping.wakeAt!.getTime()).toBeGreaterThan(sleeping.startBy!.getTime() + 50 * 60_000);
    await harness.travel('1 hour');
    await harness.drain();
    expect(await run.result()).toBe('done');
  });

  it('cancels a run of a paused workflow that was not resumed in time', async () => {
    const { flow, harness } = await harnessed();
    let started = 0;
    const w = flow.workflow('held', () => ++started);
    await flow.pauseWorkflow('held');
    const paused = await w.start({}, { startBy: '1 minute' });
    await harness.drain();
    expect((await flow.getRun(paused.runId))!.status).toBe('enqueued');
    await harness.travel('1 minute');
    await harness.drain();
    expect((await flow.getRun(paused.runId))!).toMatchObject({ status: 'cancelled', error: { code: 'DEADLINE_EXCEEDED' } });
    expect(started).toBe(0);
  });

  it('cancels a low-priority run that higher priorities kept from starting in time', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    const began: number[] = [];
    const w = flow.workflow('ranked', async ({ step, input }: WorkflowContext<{ n: number }>) => {
      began.push(input.n);
      await step.run('work', () => new Promise((resolve) => setTimeout(resolve, 150)));
    });
    // All queued before the one worker slot exists: five urgent runs of 150 ms each go first.
    const urgent = await Promise.all([1, 2, 3, 4, 5].map((n) => w.start({ n }, { priority: -1 })));
    const low = await w.start({ n: 0 }, { priority: 5, startBy: 400 });
    const worker = flow.worker({ concurrency: 1, pollInterval: 50 });
    await worker.start();
    try {
      await Promise.all(urgent.map((run) => run.result({ timeout: '10 seconds' })));
      const info = await eventually(async () => {
        const run = await flow.getRun(low.runId);
        return run?.status === 'cancelled' ? run : undefined;
      });
      expect(info.error?.code).toBe('DEADLINE_EXCEEDED');
      expect([...began].sort()).toEqual([1, 2, 3, 4, 5]); // never the low one
    } finally {
      await worker.stop();
    }
  });

  it('cancels a run queued behind a concurrency limit that did not get a slot in time', async () => {
    const flow = ctx.flow({ schema: `dl_${++schemas}` });
    await flow.migrate();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const began: string[] = [];
    const w = flow.workflow('one-at-a-time', { concurrency: 1 }, async ({ step, runId }: WorkflowContext) => {
      began.push(runId);
      await step.run('work', () => gate);
    });
    const worker = flow.worker({ concurrency: 4, pollInterval: 50 });
    await worker.start();
    try {
      const first = await w.start({});
      await eventually(() => began.includes(first.runId));
      const second = await w.start({}, { startBy: 400 });
      const third = await w.start({}, { timeout: 600 });
      const cancelled = await eventually(async () => {
        const info = await flow.getRun(second.runId);
        return info?.status === 'cancelled' ? info : undefined;
      });
      expect(cancelled.error?.code).toBe('DEADLINE_EXCEEDED');
      expect(cancelled.startedAt).toBeNull();
      const timedOut = await eventually(async () => {
        const info = await flow.getRun(third.runId);
        return info?.status === 'failed' ? info : undefined;
      });
      expect(timedOut.error?.code).toBe('RUN_TIMEOUT');
      expect(timedOut.startedAt).toBeNull();
      release();
      await first.result({ timeout: '10 seconds' });
      expect(began).toEqual([first.runId]);
      const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE concurrency_waiting`);
      expect(rows[0].n).toBe(0);
    } finally {
      release();
      await worker.stop();
    }
  });
});

describe('the deadlines on view', () => {
  it('getRun() and the run page show the deadline and the start-by; the JSON run has them too', async () => {
    const { flow, harness } = await harnessed();
    const w = flow.workflow('shown', { timeout: '1 hour' }, async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const run = await w.start({}, { startBy: '10 minutes' });
    const queued = (await flow.getRun(run.runId))!;
    const app = express();
    app.use('/df', flow.router({ allowUnauthenticated: true }));
    const page = await request(app).get(`/df/runs/${run.runId}`);
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/data-card="deadline"[\s\S]*fails with RUN_TIMEOUT/);
    expect(page.text).toMatch(/data-card="start-by"[\s\S]*cancelled with DEADLINE_EXCEEDED/);
    expect(page.text).toContain(`datetime="${queued.deadlineAt!.toISOString()}"`);
    const json = await request(app).get(`/df/api/runs/${run.runId}`);
    expect(json.body.run ?? json.body).toMatchObject({ deadlineAt: queued.deadlineAt!.toISOString(), startBy: queued.startBy!.toISOString() });
    await harness.drain();
    const started = await request(app).get(`/df/runs/${run.runId}`);
    expect(started.text).toMatch(/data-card="start-by"[\s\S]*started in time/);
    const plain = flow.workflow('plain', () => 1);
    const none = await plain.start({});
    const other = await request(app).get(`/df/runs/${none.runId}`);
    expect(other.text).not.toContain('data-card="deadline"');
  });
});
