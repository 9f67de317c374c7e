import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signatureHeader } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
const SECRET = 'whsec_test_0123456789abcdef';

function app(options: Parameters<DurableFlow['router']>[0]) {
  const a = express();
  a.use('/df', flow.router(options));
  return a;
}

let open: express.Express;
let waitingRunId: string;
let failedRunId: string;

beforeAll(async () => {
  ctx = await setupDatabase('http');
  flow = ctx.flow();
  open = app({ allowUnauthenticated: true, eventSecret: SECRET });
  const harness = createTestHarness(flow);
  const approval = flow.workflow('approval', async ({ step, log }: WorkflowContext) => {
    log.warn('Waiting for a decision', { order: 7 });
    await step.run('create_request', () => ({ requested: true }));
    await step.waitForEvent('decision', { event: 'approval_decided', match: { order: 7 } });
  });
  waitingRunId = (await approval.start({ order: 7 })).runId;
  const failing = flow.workflow('fails', async ({ step }: WorkflowContext) => {
    await step.run('boom', { retries: 0 }, () => {
      throw new Error('Payment provider said no');
    });
  });
  failedRunId = (await failing.start({})).runId;
  await harness.drain();
});
afterAll(async () => {
  await ctx.cleanup();
});

// Hostile input (denied routes, XSS, CSRF, SQL injection, ingest abuse) is tested in test/chaos/viewer.test.ts and ingest.test.ts.
describe('access', () => {
  it('asks for basic credentials and compares them', async () => {
    const basic = app({ basicAuth: { username: 'ops', password: 's3cret' } });
    const none = await request(basic).get('/df/');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Basic realm="durable-flow"/);
    expect((await request(basic).get('/df/').auth('ops', 'wrong')).status).toBe(401);
    expect((await request(basic).get('/df/').auth('other', 's3cret')).status).toBe(401);
    expect((await request(basic).get('/df/').auth('ops', 's3cret')).status).toBe(200);
  });

  it('uses an async authorize(req) when given', async () => {
    const custom = app({ authorize: async (req) => req.headers['x-role'] === 'admin' });
    expect((await request(custom).get('/df/api/runs')).status).toBe(403);
    expect((await request(custom).get('/df/api/runs').set('x-role', 'admin')).status).toBe(200);
  });

  it('takes { actor } from authorize(req) as allowed, and refuses any other answer with a message saying what to return', async () => {
    const answers: Record<string, unknown> = { alice: { actor: 'alice' }, empty: { actor: '' }, number: { actor: 7 }, object: {}, text: 'yes', one: 1 };
    const custom = app({ authorize: (req) => answers[String(req.headers['x-answer'])] as never });
    expect((await request(custom).get('/df/api/runs').set('x-answer', 'alice')).status).toBe(200);
    for (const key of ['empty', 'number', 'object', 'text', 'one']) {
      const res = await request(custom).get('/df/api/runs').set('x-answer', key);
      expect(res.status, key).toBe(403);
      expect(res.body.error, key).toMatch(/returned neither true, false nor \{ actor: non-empty string \}/);
    }
    const refused = await request(custom).get('/df/api/runs').set('x-answer', 'none');
    expect(refused.body.error).toMatch(/authorize\(\) check of this durable-flow viewer refused the request/);
  });
});

describe('pages', () => {
  it('renders every page', async () => {
    for (const path of ['/', '/workflows', '/events', `/runs/${waitingRunId}`, `/runs/${failedRunId}`]) {
      const res = await request(open).get(`/df${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers['content-type'], path).toMatch(/^text\/html/);
    }
    const run = await request(open).get(`/df/runs/${waitingRunId}`);
    expect(run.text).toContain('waiting');
    expect(run.text).toContain('create_request');
    expect(run.text).toContain('Waiting for a decision');
    const failed = await request(open).get(`/df/runs/${failedRunId}`);
    expect(failed.text).toContain('Retry from the failed step');
    expect(failed.text).toContain('Payment provider said no');
  });

  it('lists runs with counts over all runs, filters, keyset pagination and JSON twins', async () => {
    const wf = flow.workflow('many', async () => 1);
    for (let i = 0; i < 7; i++) await wf.start({ i });
    const first = await request(open).get('/df/api/runs?workflow=many&limit=3');
    expect(first.status).toBe(200);
    expect(first.body.runs).toHaveLength(3);
    expect(first.body.counts.enqueued).toBe(7);
    const second = await request(open).get(`/df/api/runs?workflow=many&limit=3&before=${encodeURIComponent(first.body.next)}`);
    const third = await request(open).get(`/df/api/runs?workflow=many&limit=3&before=${encodeURIComponent(second.body.next)}`);
    const ids = [...first.body.runs, ...second.body.runs, ...third.body.runs].map((r: { runId: string }) => r.runId);
    expect(new Set(ids).size).toBe(7);
    expect(third.body.next).toBeNull();
    const html = await request(open).get('/df/?workflow=many&limit=3');
    expect(html.text).toContain('rel="next"');
    const byStatus = await request(open).get('/df/api/runs?status=failed');
    expect(byStatus.body.runs.map((r: { runId: string }) => r.runId)).toEqual([failedRunId]);
    const search = await request(open).get(`/df/api/runs?q=${encodeURIComponent('"i": 3')}`);
    expect(search.body.runs).toHaveLength(1);
    const exact = await request(open).get(`/df/api/runs?q=${failedRunId}`);
    expect(exact.body.runs[0].runId).toBe(failedRunId);
    const detail = await request(open).get(`/df/api/runs/${waitingRunId}`);
    expect(detail.body.run.status).toBe('waiting');
    expect((await request(open).get('/df/api/runs/nope')).status).toBe(404);
    const workflows = await request(open).get('/df/api/workflows');
    expect(workflows.body.workflows.find((w: { name: string }) => w.name === 'many')).toMatchObject({ registered: true, total: 7 });
  });
});

describe('actions', () => {
  async function tokenFor(path: string) {
    const page = await request(open).get(`/df${path}`);
    const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    return { cookie, token };
  }

  it('sends an event, retries and cancels runs with a valid token', async () => {
    const { cookie, token } = await tokenFor('/events');
    const sent = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'from_viewer', payload: '{"a":1}' });
    expect(sent.status).toBe(303);
    expect(sent.headers.location).toMatch(/^\/df\/events\?sent=\d+$/);
    const events = await request(open).get('/df/api/events?name=from_viewer');
    expect(events.body.events[0]).toMatchObject({ name: 'from_viewer', payload: { a: 1 }, source: 'viewer' });
    const bad = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'x', payload: '{nope' });
    expect(bad.status).toBe(400);

    const retried = await request(open).post(`/df/runs/${failedRunId}/retry`).set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(retried.status).toBe(303);
    expect((await flow.getRun(failedRunId))!.status).toBe('ready');
    const again = await request(open).post(`/df/runs/${failedRunId}/retry`).set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token });
    expect(again.status).toBe(409);

    const cancelled = await request(open).post(`/df/runs/${waitingRunId}/cancel`).set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(cancelled.status).toBe(303);
    expect((await flow.getRun(waitingRunId))!.status).toBe('cancelled');
  });
});

describe('event ingest', () => {
  const send = (body: string, header: string) => request(open).post('/df/events').set('Content-Type', 'application/json').set('DurableFlow-Signature', header).send(body);
  const count = async (name: string) =>
    (await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_events WHERE name = $1`, [name])).rows[0].n as number;

  it('stores a signed event, wakes its wait, and answers 202 with the ids', async () => {
    const waiter = flow.workflow('ingest-waiter', async ({ step }: WorkflowContext) => step.waitForEvent('paid', { match: { order: 1 } }));
    const harness = createTestHarness(flow);
    const run = await waiter.start({});
    await harness.drain();
    const body = JSON.stringify({ name: 'paid', payload: { order: 1 }, id: 'evt_1' });
    const res = await send(body, signatureHeader(SECRET, body));
    expect(res.status).toBe(202);
    expect(res.body.events).toEqual([{ id: expect.any(String), eventId: 'evt_1', name: 'paid', duplicate: false }]);
    await harness.drain();
    await harness.assertCompleted(run, { order: 1 });
    expect(await count('paid')).toBe(1);
  });

  it('accepts an array of events, stored in order', async () => {
    const body = JSON.stringify([{ name: 'batch', payload: { n: 1 } }, { name: 'batch', payload: { n: 2 } }]);
    const res = await send(body, signatureHeader(SECRET, body));
    expect(res.status).toBe(202);
    expect(res.body.events.map((e: { name: string; duplicate: boolean }) => [e.name, e.duplicate])).toEqual([['batch', false], ['batch', false]]);
    const { rows } = await flow.pool.query(`SELECT payload FROM durable_flow_workflow_events WHERE name = 'batch' ORDER BY id`);
    expect(rows.map((r) => r.payload)).toEqual([{ n: 1 }, { n: 2 }]);
  });
});
