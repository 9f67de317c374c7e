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
const OLD_SECRET = 'whsec_old_0123456789abcdef';
const HOSTILE = '<img src=x onerror=alert(1)>';

function app(options: Parameters<DurableFlow['router']>[0]) {
  const a = express();
  a.use('/df', flow.router(options));
  return a;
}

let open: express.Express;
let hostileRunId: string;
let failedRunId: string;

beforeAll(async () => {
  ctx = await setupDatabase('http');
  flow = ctx.flow();
  open = app({ allowUnauthenticated: true, eventSecret: [SECRET, OLD_SECRET] });
  const harness = createTestHarness(flow);
  const hostile = flow.workflow(HOSTILE, async ({ step, log }: WorkflowContext) => {
    log.warn(HOSTILE, { html: HOSTILE });
    await step.run(HOSTILE, () => ({ out: HOSTILE }));
    await step.waitForEvent('evt', { event: HOSTILE, match: { k: HOSTILE } });
  });
  hostileRunId = (await hostile.start({ input: HOSTILE })).runId;
  const failing = flow.workflow('fails', async ({ step }: WorkflowContext) => {
    await step.run('boom', { retries: 0 }, () => {
      throw new Error(HOSTILE);
    });
  });
  failedRunId = (await failing.start({})).runId;
  await harness.drain();
});
afterAll(async () => {
  await ctx.cleanup();
});

const pages = ['/', '/workflows', '/events', '/api/runs', '/api/workflows', '/api/events'];

describe('access', () => {
  it('denies every page, JSON endpoint and asset by default, saying which option to set', async () => {
    const denied = app({});
    for (const path of [...pages, `/runs/${hostileRunId}`, `/api/runs/${hostileRunId}`, '/assets/viewer.js', '/assets/socket.io.min.js']) {
      const res = await request(denied).get(`/df${path}`);
      expect(res.status, path).toBe(403);
      expect(res.text, path).toMatch(/denied by default.*authorize.*basicAuth.*allowUnauthenticated/s);
    }
    const post = await request(denied).post(`/df/runs/${hostileRunId}/cancel`);
    expect(post.status).toBe(403);
  });

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
});

describe('pages', () => {
  it('render with a CSP without unsafe-inline and escape every user-controlled string', async () => {
    for (const path of ['/', '/workflows', '/events', `/runs/${hostileRunId}`, `/runs/${failedRunId}`]) {
      const res = await request(open).get(`/df${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
      expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.text, path).not.toContain(HOSTILE);
      expect(res.text, path).not.toMatch(/<img src=x/i);
    }
    const run = await request(open).get(`/df/runs/${hostileRunId}`);
    expect(run.text).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(run.text).toContain('waiting');
    const failed = await request(open).get(`/df/runs/${failedRunId}`);
    expect(failed.text).toContain('Retry from the failed step');
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
    const detail = await request(open).get(`/df/api/runs/${hostileRunId}`);
    expect(detail.body.run.status).toBe('waiting');
    expect((await request(open).get('/df/api/runs/nope')).status).toBe(404);
    const workflows = await request(open).get('/df/api/workflows');
    expect(workflows.body.workflows.find((w: { name: string }) => w.name === 'many')).toMatchObject({ registered: true, total: 7 });
  });

  it('answers 400, never an SQL error, to hostile filters', async () => {
    for (const query of ["status=' OR 1=1--", 'limit=-1', 'limit=1e9', 'limit=abc', 'before=x;DROP TABLE runs', `q=${'x'.repeat(300)}`, 'status=failed&status=completed']) {
      const res = await request(open).get(`/df/api/runs?${query}`);
      expect(res.status, query).toBe(400);
      expect(JSON.stringify(res.body), query).not.toMatch(/syntax|SQL|relation|column/i);
    }
    const like = await request(open).get(`/df/api/runs?q=${encodeURIComponent("%' OR '1'='1")}`);
    expect(like.status).toBe(200);
    expect(like.body.runs).toEqual([]);
    const html = await request(open).get(`/df/?status=${encodeURIComponent('<script>')}`);
    expect(html.status).toBe(400);
    expect(html.text).not.toContain('<script>');
  });
});

describe('actions', () => {
  async function tokenFor(path: string) {
    const page = await request(open).get(`/df${path}`);
    const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    return { cookie, token };
  }

  it('refuses actions without the CSRF token, from another origin, and by GET', async () => {
    const { cookie, token } = await tokenFor(`/runs/${hostileRunId}`);
    expect((await request(open).post(`/df/runs/${hostileRunId}/cancel`).type('form').send({})).status).toBe(403);
    expect((await request(open).post(`/df/runs/${hostileRunId}/cancel`).set('Cookie', cookie).type('form').send({ _csrf: 'x'.repeat(43) })).status).toBe(403);
    expect((await request(open).post(`/df/runs/${hostileRunId}/cancel`).type('form').send({ _csrf: token })).status).toBe(403);
    const foreign = await request(open).post(`/df/runs/${hostileRunId}/cancel`).set('Cookie', cookie).set('Origin', 'https://evil.example').type('form').send({ _csrf: token });
    expect(foreign.status).toBe(403);
    expect((await request(open).get(`/df/runs/${hostileRunId}/cancel`)).status).toBe(405);
    expect((await flow.getRun(hostileRunId))!.status).toBe('waiting');
  });

  it('sends an event, retries and cancels runs with a valid token', async () => {
    const { cookie, token } = await tokenFor('/events');
    const sent = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'from_viewer', payload: '{"a":1}' });
    expect(sent.status).toBe(303);
    expect(sent.headers.location).toBe('/df/events');
    const events = await request(open).get('/df/api/events?name=from_viewer');
    expect(events.body.events[0]).toMatchObject({ name: 'from_viewer', payload: { a: 1 }, source: 'viewer' });
    const bad = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'x', payload: '{nope' });
    expect(bad.status).toBe(400);

    const retried = await request(open).post(`/df/runs/${failedRunId}/retry`).set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(retried.status).toBe(303);
    expect((await flow.getRun(failedRunId))!.status).toBe('ready');
    const again = await request(open).post(`/df/runs/${failedRunId}/retry`).set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token });
    expect(again.status).toBe(409);

    const cancelled = await request(open).post(`/df/runs/${hostileRunId}/cancel`).set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(cancelled.status).toBe(303);
    expect((await flow.getRun(hostileRunId))!.status).toBe('cancelled');
  });
});

describe('event ingest', () => {
  const send = (body: string | Buffer, header?: string, contentType = 'application/json') => {
    const req = request(open).post('/df/events').set('Content-Type', contentType);
    if (header !== undefined) req.set('DurableFlow-Signature', header);
    return req.send(body);
  };
  const count = async (name: string) =>
    (await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_events WHERE name = $1`, [name])).rows[0].n as number;

  it('is disabled (404) without a secret', async () => {
    const res = await request(app({ allowUnauthenticated: true })).post('/df/events').send({ name: 'x' });
    expect(res.status).toBe(404);
    expect(res.body.error).toMatch(/configure flow.router\(\{ eventSecret \}\)/);
  });

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
    // A replay of the same request: the first event, nothing woken twice.
    const replay = await send(body, signatureHeader(SECRET, body));
    expect(replay.status).toBe(202);
    expect(replay.body.events[0]).toMatchObject({ id: res.body.events[0].id, duplicate: true });
    expect(await count('paid')).toBe(1);
  });

  it('accepts an array, the old secret during rotation, and several signatures in one header', async () => {
    const body = JSON.stringify([{ name: 'batch', payload: { n: 1 } }, { name: 'batch', payload: { n: 2 } }]);
    expect((await send(body, signatureHeader(OLD_SECRET, body))).status).toBe(202);
    const t = Math.floor(Date.now() / 1000);
    const good = signatureHeader(SECRET, body, t).split('v1=')[1];
    expect((await send(body, `t=${t},v1=${'0'.repeat(64)},v1=${good}`)).status).toBe(202);
    expect(await count('batch')).toBe(4);
  });

  it('refuses missing, wrong, stale, future and malformed signatures, storing nothing', async () => {
    const body = JSON.stringify({ name: 'unsigned', payload: {} });
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      undefined,
      '',
      signatureHeader('wrong-secret-0123456789', body),
      signatureHeader(SECRET, body, now - 301),
      signatureHeader(SECRET, body, now + 301),
      `t=0x${now.toString(16)},v1=${signatureHeader(SECRET, body).split('v1=')[1]}`,
      `t=${now},v1=abc`,
      signatureHeader(SECRET, `${body} `),
    ];
    for (const header of cases) {
      const res = await send(body, header);
      expect(res.status, String(header)).toBe(401);
      expect(res.body.error).toBe('Invalid or missing DurableFlow-Signature header');
    }
    // Within the tolerance either way is fine.
    expect((await send(body, signatureHeader(SECRET, body, now + 60))).status).toBe(202);
    expect(await count('unsigned')).toBe(1);
  });

  it('answers 4xx JSON for bad bodies and stores nothing', async () => {
    const signed = (body: string) => send(body, signatureHeader(SECRET, body));
    const deep = `{"name":"deep","payload":${'['.repeat(80)}${']'.repeat(80)}}`;
    const cases: [string, number, RegExp][] = [
      ['{not json', 400, /Malformed JSON/],
      ['', 400, /Empty body/],
      ['{"payload":{}}', 400, /"name"/],
      ['[{"name":"ok"},{"name":""}]', 400, /event 1/],
      ['"just a string"', 400, /object/],
      ['[]', 400, /empty/],
      [deep, 400, /nested deeper than 64/],
      ['{"name":"nul","payload":{"a":"\\u0000"}}', 400, /\\u0000/],
      ['{"name":"proto","payload":{"__proto__":{"polluted":true}},"id":5}', 400, /"id"/],
    ];
    for (const [body, status, message] of cases) {
      const res = await signed(body);
      expect(res.status, body.slice(0, 40)).toBe(status);
      expect(res.body.error, body.slice(0, 40)).toMatch(message);
    }
    const big = JSON.stringify({ name: 'big', payload: { x: 'x'.repeat(1024 * 1024) } });
    const tooBig = await signed(big);
    expect(tooBig.status).toBe(413);
    expect(await count('ok')).toBe(0);
    expect(await count('big')).toBe(0);
    expect(await count('deep')).toBe(0);
  });

  it('stores __proto__ keys as plain data without polluting anything', async () => {
    const body = '{"name":"proto","payload":{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}}';
    expect((await send(body, signatureHeader(SECRET, body))).status).toBe(202);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const { rows } = await flow.pool.query(`SELECT payload FROM durable_flow_workflow_events WHERE name = 'proto'`);
    expect(JSON.stringify(rows[0].payload)).toContain('"__proto__":{"polluted":true}');
  });
});
