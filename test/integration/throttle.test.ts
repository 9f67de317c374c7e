import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let n = 0;
/** A workflow name of its own per test (the database is shared by the file). */
const fresh = (what: string) => `${what}-${++n}`;

beforeAll(async () => {
  ctx = await setupDatabase('throttle');
  await ctx.flow().migrate();
  await ctx.closeFlows();
});
afterEach(async () => {
  await ctx.closeFlows();
});
afterAll(async () => {
  await ctx.cleanup();
});

function newFlow(): DurableFlow {
  flow = ctx.flow();
  harness = createTestHarness(flow);
  return flow;
}

interface Row {
  run_id: string;
  status: string;
  started_at: Date | null;
  wake_at: Date | null;
  updated_at: Date;
  throttle_key: string | null;
  throttle_waiting: boolean;
  concurrency_waiting: boolean;
  error: { code?: string } | null;
}

async function rows(workflow: string): Promise<Row[]> {
  const { rows } = await flow.pool.query<Row>(
    `SELECT run_id, status, started_at, wake_at, updated_at, throttle_key, throttle_waiting, concurrency_waiting, error
     FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY id`,
    [workflow],
  );
  return rows;
}

/** Run ids in the order they began (started_at, then id). */
async function beginOrder(workflow: string): Promise<string[]> {
  const { rows } = await flow.pool.query<{ run_id: string }>(
    `SELECT run_id FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND started_at IS NOT NULL ORDER BY started_at, id`,
    [workflow],
  );
  return rows.map((r) => r.run_id);
}

const began = (list: Row[]) => list.filter((r) => r.started_at !== null).length;

describe('throttle', () => {
  it('lets `limit` runs begin per period; the excess waits in start order, parked until the window has room, never dropped', async () => {
    newFlow();
    const name = fresh('basic');
    const wf = flow.workflow(name, { throttle: { limit: 2, period: '1 hour' } }, async ({ input }) => input);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await wf.start(i)).runId);
    await harness.drain();
    let list = await rows(name);
    expect(began(list)).toBe(2);
    expect(list.every((r) => r.throttle_key === name)).toBe(true);
    const firstStart = list[0]!.started_at!.getTime();
    const waiting = list.filter((r) => r.started_at === null);
    expect(waiting.map((r) => [r.status, r.throttle_waiting])).toEqual([['enqueued', true], ['enqueued', true], ['enqueued', true]]);
    // Parked until the start each one follows leaves the window: no claim reads them before.
    const hour = 3_600_000;
    expect(waiting.map((r) => Math.round((r.wake_at!.getTime() - firstStart) / 1000))).toEqual([3600, 3600, 7200]);
    const stamp = waiting.map((r) => r.updated_at.getTime());
    await harness.drain();
    await harness.drain();
    expect((await rows(name)).filter((r) => r.started_at === null).map((r) => r.updated_at.getTime())).toEqual(stamp);

    await harness.travel(hour - 60_000);
    await harness.drain();
    expect(began(await rows(name))).toBe(2);
    await harness.travel(60_000);
    await harness.drain();
    expect(began(await rows(name))).toBe(4);
    await harness.travel(hour);
    await harness.drain();
    list = await rows(name);
    expect(list.map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'completed']);
    expect(await beginOrder(name)).toEqual(ids);
    expect(list.some((r) => r.throttle_waiting)).toBe(false);
  });

  it('keys throttle on their own; a full key holds back neither other keys nor other workflows', async () => {
    newFlow();
    const name = fresh('keys');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour', key: (input: { account: string }) => input.account } }, async () => 'ok');
    const plain = flow.workflow(fresh('plain'), async () => 'plain');
    for (let i = 0; i < 30; i++) await wf.start({ account: 'acme' });
    const globex = await wf.start({ account: 'globex' });
    const other = await plain.start({});
    await harness.drain();
    const list = await rows(name);
    expect(list.filter((r) => r.started_at !== null).map((r) => r.throttle_key).sort()).toEqual([`${name}:acme`, `${name}:globex`]);
    expect(list.filter((r) => r.throttle_waiting).length).toBe(29);
    await harness.assertCompleted(globex.runId, 'ok');
    await harness.assertCompleted(other.runId, 'plain');
  });

  it('takes waiting runs by priority, then in start order', async () => {
    newFlow();
    const name = fresh('priority');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 minute' } }, async ({ input }) => input);
    const a = await wf.start('a');
    const b = await wf.start('b');
    const c = await wf.start('c');
    await harness.drain();
    // Started after b and c are waiting, with a better priority: it goes next.
    const urgent = await wf.start('urgent', { priority: -5 });
    await harness.drain();
    for (let i = 0; i < 3; i++) {
      await harness.travel('1 minute');
      await harness.drain();
    }
    expect(await beginOrder(name)).toEqual([a.runId, urgent.runId, b.runId, c.runId]);
  });

  it('counts only a first begin: a run resuming after a sleep is not throttled, nor counted again', async () => {
    newFlow();
    const name = fresh('resume');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour' } }, async ({ input, step }) => {
      await step.sleep('nap', '10 minutes');
      return input;
    });
    const a = await wf.start('a');
    const b = await wf.start('b');
    await harness.drain();
    await harness.travel('10 minutes');
    await harness.drain();
    await harness.assertCompleted(a.runId, 'a');
    expect((await rows(name)).find((r) => r.run_id === b.runId)!.started_at).toBeNull();
    await harness.travel('50 minutes');
    await harness.drain();
    await harness.travel('10 minutes');
    await harness.drain();
    await harness.assertCompleted(b.runId, 'b');
  });

  it('cancels a throttled run past its startBy with DEADLINE_EXCEEDED, as any run not started in time', async () => {
    newFlow();
    const name = fresh('start-by');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour' } }, async () => 'ok');
    await wf.start({});
    const late = await wf.start({}, { startBy: '5 minutes' });
    const patient = await wf.start({});
    await harness.drain();
    await harness.travel('5 minutes');
    await harness.drain();
    const info = await flow.getRun(late.runId);
    expect(info?.status).toBe('cancelled');
    expect(info?.error?.code).toBe('DEADLINE_EXCEEDED');
    await harness.travel('55 minutes');
    await harness.drain();
    await harness.assertCompleted(patient.runId, 'ok');
  });

  it('moves the turns behind a waiting run that is cancelled earlier: the window is not wasted', async () => {
    newFlow();
    const name = fresh('cancel');
    const wf = flow.workflow(name, { throttle: { limit: 1, period: '1 hour' } }, async ({ input }) => input);
    const [a, b, c, d] = [await wf.start('a'), await wf.start('b'), await wf.start('c'), await wf.start('d')];
    await harness.drain();
    const wakes = async () => (await rows(name)).filter((r) => r.started_at === null && r.status === 'enqueued').map((r) => r.wake_at!.getTime());
    const [first] = await wakes();
    await flow.cancel(b.runId);
    await harness.drain();
    // c takes b's turn (an hour after a began), d the next.
    expect((await wakes()).map((t) => Math.round((t - first!) / 60_000))).toEqual([0, 60]);
    await harness.travel('1 hour');
    await harness.drain();
    await harness.assertCompleted(c.runId, 'c');
    await harness.travel('1 hour');
    await harness.drain();
    await harness.assertCompleted(d.runId, 'd');
    expect(await beginOrder(name)).toEqual([a.runId, c.runId, d.runId]);
  });

  it('composes with concurrency: the throttle bounds begins, concurrency the runs executing at once', async () => {
    newFlow();
    const name = fresh('concurrency');
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const wf = flow.workflow(name, { throttle: { limit: 3, period: '1 hour' }, concurrency: 1 }, async ({ input, step }) => {
      await step.run('work', () => gate);
      return input;
    });
    for (let i = 0; i < 5; i++) await wf.start(i);
    const draining = harness.drain();
    let list = await rows(name);
    for (let i = 0; i < 200 && !list.some((r) => r.status === 'running'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      list = await rows(name);
    }
    // One executes (concurrency 1); the next two may begin this hour (concurrency-waiting), the last two may not.
    expect(list.map((r) => [r.status, r.concurrency_waiting, r.throttle_waiting])).toEqual([
      ['running', false, false],
      ['enqueued', true, false],
      ['enqueued', true, false],
      ['enqueued', false, true],
      ['enqueued', false, true],
    ]);
    open();
    await draining;
    list = await rows(name);
    expect(list.map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'enqueued', 'enqueued']);
    await harness.travel('1 hour');
    await harness.drain();
    expect((await rows(name)).map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'completed']);
  });

  it('leaves concurrency alone for workflows without a throttle: over the limit parks, a freed slot wakes the next', async () => {
    newFlow();
    const name = fresh('concurrency-only');
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const wf = flow.workflow(name, { concurrency: { limit: 1, key: (input: { k: string }) => input.k } }, async ({ input, step }) => {
      await step.run('work', () => gate);
      return input.k;
    });
    for (const k of ['a', 'a', 'a', 'b']) await wf.start({ k });
    const draining = harness.drain();
    let list = await rows(name);
    for (let i = 0; i < 200 && list.filter((r) => r.status === 'running').length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      list = await rows(name);
    }
    expect(list.map((r) => [r.status, r.concurrency_waiting, r.throttle_key])).toEqual([
      ['running', false, null],
      ['enqueued', true, null],
      ['enqueued', true, null],
      ['running', false, null],
    ]);
    open();
    await draining;
    expect((await rows(name)).map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
  });

  it('applies after debounce: the debounced run, once due, waits for the throttle, and a new start makes a new run', async () => {
    newFlow();
    const name = fresh('debounce');
    const wf = flow.workflow(name, { debounce: { period: '1 minute' }, throttle: { limit: 1, period: '1 hour' } }, async ({ input }) => input);
    const first = await wf.start('one');
    await harness.travel('1 minute');
    await harness.drain();
    await harness.assertCompleted(first.runId, 'one');
    const second = await wf.start('two');
    await harness.travel('1 minute');
    await harness.drain();
    expect((await rows(name)).find((r) => r.run_id === second.runId)!.throttle_waiting).toBe(true);
    const third = await wf.start('three');
    expect(third.runId).not.toBe(second.runId);
    await harness.travel('2 hours');
    await harness.drain();
    await harness.assertCompleted(second.runId, 'two');
    await harness.travel('1 hour');
    await harness.drain();
    await harness.assertCompleted(third.runId, 'three');
  });

  it('exposes the resolved option on the workflow definition', () => {
    newFlow();
    const key = (input: { a: string }) => input.a;
    flow.workflow('throttle-definition', { throttle: { limit: 5, period: '30 seconds', key } }, async () => null);
    flow.workflow('throttle-none', async () => null);
    expect(flow.definitions.get('throttle-definition')!.throttle).toEqual({ limit: 5, periodMs: 30_000, key });
    expect(flow.definitions.get('throttle-none')!.throttle).toBeUndefined();
  });

  it('refuses bad options with INVALID_OPTION naming them, and a bad key with INVALID_ARGUMENT at start', async () => {
    newFlow();
    const define = (throttle: unknown) => () => flow.workflow(fresh('bad'), { throttle } as never, async () => null);
    expect(define(5)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`throttle` to be \{ limit, period/) }));
    expect(define({ limit: 0, period: '1 minute' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`throttle.limit` to be an integer from 1/) }));
    expect(define({ limit: 1.5, period: '1 minute' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    expect(define({ limit: 1 })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`throttle.period`/) }));
    expect(define({ limit: 1, period: 'soon' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`throttle.period`/) }));
    expect(define({ limit: 1, period: '1 minute', key: 'account' })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`throttle.key`/) }));
    expect(define({ limit: 1, period: '1 minute', burst: 2 })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/unknown: burst/) }));
    const wf = flow.workflow(fresh('bad-key'), { throttle: { limit: 1, period: '1 minute', key: (input: { a?: string }) => input.a as string } }, async () => null);
    await expect(wf.start({})).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/throttle key function .* non-empty string/) });
  });
});
