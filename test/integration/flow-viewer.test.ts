// The viewer's flow-control view (issue 16): every limit of each workflow on the Workflows page and in
// /api/workflows, and why a run waits, on the run page (HTML and JSON) and in the run list, computed
// from the run's stored columns.
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { workflowLimits } from '../../lib/http/limits.js';
import { waitingReason } from '../../lib/http/waiting.js';
import type { RunWaitState } from '../../lib/read/waiting.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
/** The viewer's flow (version v1): registers every workflow, runs no worker. */
let viewer: DurableFlow;
/** The flow whose worker executes the gate, sleeper and waiter workflows. */
let runner: DurableFlow;
let app: express.Express;
let wfs: ReturnType<typeof register>;
let releaseGate: () => void;
const gateOpen = new Promise<void>((resolve) => (releaseGate = resolve));

const account = (input: { account: string }) => input.account;

function register(flow: DurableFlow) {
  return {
    gate: flow.workflow('fv-gate', { concurrency: { limit: 1, key: account } }, async ({ step }: WorkflowContext<{ account: string }>) =>
      step.run('hold', async () => {
        await gateOpen;
        return 'done';
      }),
    ),
    sleeper: flow.workflow('fv-sleeper', { timeout: '2 days' }, async ({ step }: WorkflowContext) => step.sleep('nap', '1 day')),
    waiter: flow.workflow('fv-waiter', async ({ step }: WorkflowContext) => step.waitForSignal('approval', { signal: 'approve', timeout: '1 day' })),
  };
}

beforeAll(async () => {
  ctx = await setupDatabase('flowview');
  viewer = ctx.flow({ version: 'v1' });
  await viewer.migrate();
  runner = ctx.flow({ version: 'v1' });
  register(viewer);
  wfs = register(runner);
  app = express();
  app.use('/df', viewer.router({ allowUnauthenticated: true }));
}, 30_000);
afterAll(async () => {
  releaseGate();
  await ctx.cleanup();
});

const api = async (path: string) => {
  const res = await request(app).get(`/df${path}`).set('Accept', 'application/json');
  expect(res.status).toBe(200);
  return res.body;
};
const runJson = async (runId: string) => (await api(`/api/runs/${encodeURIComponent(runId)}`)).waiting;
const listed = async (workflow: string) => (await api(`/api/runs?workflow=${encodeURIComponent(workflow)}`)).runs as { runId: string; waiting: { kind: string; label: string } | null }[];
const runHtml = async (runId: string) => {
  const res = await request(app).get(`/df/runs/${encodeURIComponent(runId)}`);
  expect(res.status).toBe(200);
  return res.text;
};
const near = (iso: string, ms: number, within = 60_000) => Math.abs(new Date(iso).getTime() - ms) < within;

describe('the Workflows page', () => {
  it('lists every limit of each workflow in plain words, in the HTML and in /api/workflows', async () => {
    viewer.workflow('fv-limited', {
      concurrency: { limit: 2, key: account },
      timeout: '1 hour',
      priority: 5,
      versioning: 'pinned',
      debounce: { period: '30 seconds', maxWait: '5 minutes', key: account },
    }, async () => undefined);
    viewer.workflow('fv-plain', async () => undefined);
    const { workflows } = await api('/api/workflows');
    const limited = workflows.find((w: { name: string }) => w.name === 'fv-limited');
    expect(limited.limits.map((l: { option: string }) => l.option)).toEqual(['debounce', 'concurrency', 'priority', 'versioning', 'timeout']);
    expect(limited.limits).toContainEqual({ option: 'concurrency', summary: 'concurrency 2 per key', words: 'at most 2 runs of one key execute at once; the others wait in line' });
    expect(limited.limits).toContainEqual({ option: 'timeout', summary: 'timeout 1 h', words: 'a run not finished 1 h after its start fails with RUN_TIMEOUT' });
    expect(limited.limits.find((l: { option: string }) => l.option === 'debounce').words).toContain('(at most 5 min after the first)');
    expect(workflows.find((w: { name: string }) => w.name === 'fv-plain').limits).toEqual([]);

    const page = await request(app).get('/df/workflows');
    const cell = (workflow: string) => new RegExp(`data-workflow="${workflow}"[\\s\\S]*?</td>`).exec(page.text)![0];
    expect(cell('fv-limited')).toContain('data-limit="concurrency"');
    expect(cell('fv-limited')).toContain('at most 2 runs of one key execute at once');
    expect(cell('fv-limited')).toContain('claimed after runs of priority 0 of its queue');
    expect(cell('fv-limited')).toContain('a run is claimed only by workers of the version that started it');
    expect(cell('fv-plain')).toContain('no limits');
    expect(cell('fv-gate')).toContain('at most 1 run of one key execute at once');
  });

  it('shows a throttle when the definition has one, and nothing when it is undefined', () => {
    expect(workflowLimits({ throttle: { limit: 10, periodMs: 60_000, key: account } })).toEqual([
      { option: 'throttle', summary: 'throttle 10 per 1 min per key', words: 'at most 10 runs of one key begin in any 1 min; the others wait their turn, none is dropped' },
    ]);
    expect(workflowLimits({ throttle: undefined })).toEqual([]);
  });

  it('shows the events that start a workflow (`on`)', () => {
    expect(workflowLimits({ on: [{ event: 'order.created', match: {} }, { event: 'account.changed', match: { plan: 'pro' } }] })).toEqual([
      { option: 'on', summary: 'on order.created', words: 'each stored event "order.created" starts one run, with its payload as input' },
      { option: 'on', summary: 'on account.changed', words: 'each stored event "account.changed" matching {"plan":"pro"} starts one run, with its payload as input' },
    ]);
  });
});

describe('why a run waits', () => {
  it('queued behind its concurrency limit: its key, how many run, how many are before it; the running one has no reason', async () => {
    const { gate } = wfs;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await gate.start({ account: 'acme' })).runId);
    const worker = runner.worker({ concurrency: 5, pollInterval: 50 });
    await worker.start();
    try {
      await eventually(async () => {
        const { rows } = await runner.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'fv-gate' AND concurrency_waiting`);
        return rows[0].n === 2;
      });
      const { rows } = await runner.pool.query(`SELECT run_id, status, concurrency_waiting FROM durable_flow_workflow_runs WHERE workflow_name = 'fv-gate' ORDER BY id`);
      const running = rows.find((r) => r.status === 'running').run_id as string;
      const parked = rows.filter((r) => r.concurrency_waiting).map((r) => r.run_id as string);
      expect(await runJson(running)).toBeNull();
      const first = await runJson(parked[0]!);
      expect(first).toMatchObject({ kind: 'concurrency', label: 'queued: concurrency', concurrency: { key: 'acme', limit: 1, running: 1, ahead: 0 } });
      expect((await runJson(parked[1]!)).concurrency).toEqual({ key: 'acme', limit: 1, running: 1, ahead: 1 });
      const html = await runHtml(parked[1]!);
      expect(html).toContain('data-waiting="concurrency"');
      expect(html).toContain('queued behind its concurrency limit: at most 1 run of key &#34;acme&#34; execute at once; 1 running now, 1 queued before it');
      expect(await runHtml(running)).not.toContain('class="panel waiting-reason"');

      const list = await listed('fv-gate');
      expect(list.map((r) => [r.runId, r.waiting?.kind ?? null]).sort()).toEqual([[running, null], [parked[0], 'concurrency'], [parked[1], 'concurrency']].sort());
      expect(Object.keys(list[0]!)).not.toContain('waitState');
      const listHtml = (await request(app).get('/df/?workflow=fv-gate')).text;
      expect(listHtml.match(/class="waiting-label" data-waiting="concurrency"/g)).toHaveLength(2);
    } finally {
      releaseGate();
      await eventually(async () => (await listed('fv-gate')).every((r) => r.waiting === null));
      await worker.stop();
    }
  }, 30_000);

  it('sleeping until its wake-up with its timeout ahead, and waiting for a signal', async () => {
    const { sleeper, waiter } = wfs;
    const nap = await sleeper.start({});
    const approval = await waiter.start({});
    await createTestHarness(runner).drain();
    const now = Date.now();
    const sleeping = await runJson(nap.runId);
    expect(sleeping).toMatchObject({ kind: 'sleeping', label: 'sleeping', deadline: { kind: 'timeout' } });
    expect(near(sleeping.until, now + 86_400_000)).toBe(true);
    expect(near(sleeping.deadline.at, now + 2 * 86_400_000)).toBe(true);
    expect(await runHtml(nap.runId)).toContain('fails with RUN_TIMEOUT if it has not finished by then');
    expect(await runJson(approval.runId)).toMatchObject({ kind: 'waiting', label: 'waiting for signal approve', detail: 'waits for the signal "approve"' });
    const inList = (await listed('fv-waiter')).find((r) => r.runId === approval.runId)!;
    expect(inList.waiting).toMatchObject({ kind: 'waiting', label: 'waiting' });
  }, 30_000);

  it('debounced until its period ends, at the latest its max wait', async () => {
    const wf = viewer.workflow('fv-debounced', { debounce: { period: '1 hour', maxWait: '3 hours', key: account } }, async () => undefined);
    const a = await wf.start({ account: 'acme' });
    const b = await wf.start({ account: 'acme' });
    expect(b.runId).toBe(a.runId);
    const now = Date.now();
    const waiting = await runJson(a.runId);
    expect(waiting).toMatchObject({ kind: 'debounced', label: 'debounced', deadline: null });
    expect(near(waiting.until, now + 3_600_000)).toBe(true);
    expect(near(waiting.latest, now + 3 * 3_600_000)).toBe(true);
    const html = await runHtml(a.runId);
    expect(html).toContain('debounced (key &#34;acme&#34;): another start of its key before then folds into it');
    expect(html).toContain('debounce max wait');
    expect((await listed('fv-debounced'))[0]!.waiting).toMatchObject({ kind: 'debounced' });
  });

  it('delayed, with a start-by that comes first; due and waiting for a free worker; paused by hand', async () => {
    const wf = viewer.workflow('fv-later', async () => undefined);
    const later = await wf.start({}, { delay: '10 minutes' });
    const bounded = await wf.start({}, { delay: '10 minutes', startBy: '5 minutes' });
    const due = await wf.start({});
    expect(await runJson(later.runId)).toMatchObject({ kind: 'delayed', label: 'delayed', deadline: null });
    const b = await runJson(bounded.runId);
    expect(b).toMatchObject({ kind: 'delayed', deadline: { kind: 'startBy' } });
    // The deadline trigger clamps wake_at to start_by: the run is due at its start-by, to be cancelled.
    expect(b.until).toBe(b.deadline.at);
    expect(await runHtml(bounded.runId)).toContain('cancelled with DEADLINE_EXCEEDED if it has not begun by then, which comes first');
    expect(await runJson(due.runId)).toMatchObject({ kind: 'due', label: 'due', detail: 'due: it begins when a worker of queue "default" has a free slot' });
    expect(await viewer.pause(later.runId, { actor: 'test' })).toBe(true);
    expect(await runJson(later.runId)).toMatchObject({ kind: 'paused', label: 'paused' });
  });

  it("its workflow paused, and pinned to a version no worker of the viewer's process runs", async () => {
    const wf = viewer.workflow('fv-held', async () => undefined);
    const held = await wf.start({});
    await viewer.pauseWorkflow('fv-held', { actor: 'test' });
    expect(await runJson(held.runId)).toMatchObject({ kind: 'workflow-paused', label: 'workflow paused' });
    expect((await listed('fv-held'))[0]!.waiting).toMatchObject({ kind: 'workflow-paused' });
    await viewer.resumeWorkflow('fv-held', { actor: 'test' });
    expect(await runJson(held.runId)).toMatchObject({ kind: 'due' });

    const old = ctx.flow({ version: 'v0' });
    const pinned = old.workflow('fv-pinned', { versioning: 'pinned' }, async () => undefined);
    const run = await pinned.start({});
    expect(await runJson(run.runId)).toMatchObject({ kind: 'pinned', label: 'waits for version v0', version: 'v0' });
    expect(await runHtml(run.runId)).toContain('pinned to version v0: only a worker of that version claims it (this process runs v1');
  });

  it('throttled, end to end: a run parked by its throttle shows the key it waits on', async () => {
    const flow = ctx.flow({ version: 'v1' });
    const wf = flow.workflow('fv-throttled', { throttle: { limit: 1, period: '1 hour', key: account } }, async () => 'ok');
    const first = await wf.start({ account: 'acme' });
    const second = await wf.start({ account: 'acme' });
    const harness = createTestHarness(flow);
    await harness.drain();
    expect((await flow.getRun(first.runId))!.status).toBe('completed');
    expect(await runJson(second.runId)).toMatchObject({ kind: 'throttled', label: 'throttled' });
    expect((await runJson(second.runId)).detail).toContain('key "acme"');
  });

  it('throttled (the reason from a stored state): parked with a wake-up ahead', () => {
    const state: RunWaitState = {
      status: 'enqueued', queue: 'default', priority: 0, startedAt: null, wakeAt: new Date(Date.now() + 60_000), heldWakeAt: null,
      scheduledFor: null, concurrencyKey: null, concurrencyLimit: null, concurrencyWaiting: false, debounceKey: null,
      debounceDeadline: null, pinnedVersion: null, startBy: null, deadlineAt: null, throttleKey: 'acme',
    };
    expect(waitingReason('w', state, { now: Date.now(), version: 'v1', workflowPaused: false })).toMatchObject({ kind: 'throttled', label: 'throttled' });
    expect(waitingReason('w', { ...state, throttleKey: null }, { now: Date.now(), version: 'v1', workflowPaused: false })).toMatchObject({ kind: 'delayed' });
  });
});
