/**
 * The list pages as a demanding user meets them (issue #11, points 8 and 10): the run list holds the
 * top-level runs, with each parent's children a click away and child runs on request; its Created
 * column says when, relatively, with the absolute time (and its year) on hover; the Workflows page
 * starts a run from JSON input and the Events page sends an event, both keeping what was typed when
 * it is refused, and the Events page then says which waits the event matched.
 */
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, RouterOptions, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let open: express.Express;
let parentRunId: string;
let childRunIds: string[];

const app = (options: RouterOptions) => {
  const a = express();
  a.use('/df', flow.router(options));
  return a;
};

/** What a browser holds after opening `path`: its CSRF cookie and the token of the page's forms. */
async function tokenFor(path: string, server = open, headers: Record<string, string> = {}) {
  const page = await request(server).get(`/df${path}`).set(headers);
  const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
  return { cookie, token };
}

const rowsOf = (html: string) => [...html.matchAll(/<tr data-run-id="([^"]+)">/g)].map((m) => m[1]!);
const unescape = (html: string) => html.replace(/&#34;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const runCount = async () => (await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_runs')).rows[0]!.n;

beforeAll(async () => {
  ctx = await setupDatabase('lists');
  flow = ctx.flow();
  harness = createTestHarness(flow);
  open = app({ allowUnauthenticated: true });
  const child = flow.workflow('lists-child', async ({ input }: WorkflowContext<{ n: number }>) => input.n * 2);
  const parent = flow.workflow('lists-parent', async ({ step }: WorkflowContext) => {
    await step.invoke('first', child, { n: 1 });
    await step.invoke('second', child, { n: 2 });
  });
  flow.workflow('lists-echo', async ({ input }: WorkflowContext) => input);
  flow.workflow('lists-waiter', async ({ step, input }: WorkflowContext<{ order: number }>) =>
    step.waitForEvent('for_payment', { event: 'order_paid', match: { order: input.order } }),
  );
  parentRunId = (await parent.start({}, { runId: 'parent-run' })).runId;
  await harness.drain();
  childRunIds = (await flow.getRun(parentRunId))!.childRunIds;
  expect(childRunIds).toHaveLength(2);
  // A run of a workflow no process here registers, and one created last year.
  await flow.pool.query(
    `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, created_at)
     VALUES ('ghost-run', 'lists-ghost', 'completed', '{}', now() - interval '400 days')`,
  );
});
afterAll(async () => {
  await ctx.cleanup();
});

describe('the run list', () => {
  it('lists the top-level runs, each parent with a link to its children; child runs too on request, or one run\'s children', async () => {
    const top = await request(open).get('/df/');
    expect(rowsOf(top.text)).toEqual(expect.arrayContaining([parentRunId, 'ghost-run']));
    for (const id of childRunIds) expect(rowsOf(top.text)).not.toContain(id);
    expect(top.text).toContain(`<a href="/df/?parent=${parentRunId}" data-children="2">2 child runs</a>`);
    const json = await request(open).get('/df/api/runs');
    expect(json.body.runs.find((r: { runId: string }) => r.runId === parentRunId)).toMatchObject({ childCount: 2, parentRunId: null });
    // The counts are those of the runs listed.
    expect(json.body.counts.completed).toBe(rowsOf(top.text).length);

    const all = await request(open).get('/df/?children=1');
    expect(rowsOf(all.text).sort()).toEqual([parentRunId, 'ghost-run', ...childRunIds].sort());
    expect(all.text).toContain(`↳ started by <a href="/df/runs/${parentRunId}"><code>${parentRunId}</code></a>`);
    expect(all.text).toMatch(/<input type="checkbox" name="children" value="1" checked>/);
    expect((await request(open).get('/df/api/runs?children=1')).body.counts.completed).toBe(4);

    const children = await request(open).get(`/df/?parent=${parentRunId}`);
    expect(rowsOf(children.text).sort()).toEqual([...childRunIds].sort());
    expect(children.text).toContain(`Child runs of <a href="/df/runs/${parentRunId}">`);
    // The filter form keeps to the parent's children.
    expect(children.text).toContain(`<input type="hidden" name="parent" value="${parentRunId}">`);
    expect((await request(open).get(`/df/api/runs?parent=${parentRunId}`)).body.counts.completed).toBe(2);
    expect((await request(open).get('/df/api/runs?parent=no-such-run')).body.runs).toEqual([]);
  });

  it('the counts (the Workflows page, the run list with or without child runs) come from the maintained counts of migration 016, not a scan of the runs', async () => {
    const all = async () => (await request(open).get('/df/api/runs?children=1')).body.counts;
    const top = async () => (await request(open).get('/df/api/runs')).body.counts;
    const [allBefore, topBefore] = [await all(), await top()];
    // 7 failed runs of a workflow, 3 of them child runs: +7 over every run, +4 among the top-level ones.
    await flow.pool.query(`INSERT INTO durable_flow_run_counts (workflow_name, status, shard, runs, children) VALUES ('lists-counted', 'failed', -7, 7, 3)`);
    try {
      expect((await all()).failed).toBe(allBefore.failed + 7);
      expect((await top()).failed).toBe(topBefore.failed + 4);
      expect((await all()).completed).toBe(allBefore.completed);
      expect((await request(open).get('/df/api/runs?children=1&workflow=lists-counted')).body.counts.failed).toBe(7);
      expect((await request(open).get('/df/workflows')).text).toContain('lists-counted');
    } finally {
      await flow.pool.query(`DELETE FROM durable_flow_run_counts WHERE shard = -7`);
    }
  });

  it('finds a child run by its whole id from the top-level list, and offers child runs when a filter finds none among the top-level ones', async () => {
    const exact = await request(open).get(`/df/api/runs?q=${encodeURIComponent(childRunIds[0]!)}`);
    expect(exact.body.runs.map((r: { runId: string }) => r.runId)).toEqual([childRunIds[0]]);
    const byWorkflow = await request(open).get('/df/?workflow=lists-child');
    expect(rowsOf(byWorkflow.text)).toEqual([]);
    expect(unescape(byWorkflow.text)).toContain('<a href="/df/?workflow=lists-child&children=1">Look among child runs too</a>');
  });

  it('shows the Created column it is sorted by: relative, with the absolute time on hover, with its year when not this year', async () => {
    const html = await request(open).get('/df/');
    expect(html.text).toContain('<th aria-sort="descending" class="sorted" title="Newest first">Created');
    const ghost = /<tr data-run-id="ghost-run">[\s\S]*?<td class="when">([\s\S]*?)<\/td>/.exec(html.text)![1]!;
    const { rows } = await flow.pool.query<{ created_at: Date }>(`SELECT created_at FROM durable_flow_workflow_runs WHERE run_id = 'ghost-run'`);
    const created = rows[0]!.created_at;
    expect(ghost).toContain(`datetime="${created.toISOString()}"`);
    expect(ghost).toMatch(new RegExp(`title="[A-Z][a-z]{2} \\d{1,2}, ${created.getUTCFullYear()} \\d\\d:\\d\\d:\\d\\d UTC"`));
    expect(ghost).toMatch(/>13 months ago<\/time>/);
    const parent = new RegExp(`<tr data-run-id="${parentRunId}">[\\s\\S]*?<td class="when">([\\s\\S]*?)</td>`).exec(html.text)![1]!;
    expect(parent).toMatch(/>(just now|\d+ s ago|\d+ min ago)<\/time>/);
    // This year's time has no year.
    expect(parent).toMatch(/title="[A-Z][a-z]{2} \d{1,2}, \d\d:\d\d:\d\d UTC"/);
  });

  it('refuses list parameters it does not know the values of', async () => {
    for (const query of ['children=yes', 'children=0', `parent=${'p'.repeat(256)}`]) {
      const res = await request(open).get(`/df/api/runs?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error).toMatch(/Invalid (children|parent run id)/);
    }
  });
});

describe('starting a run from the Workflows page', () => {
  it('offers a form for each workflow registered here, and none for one that is not', async () => {
    const page = await request(open).get('/df/workflows');
    for (const name of ['lists-parent', 'lists-child', 'lists-echo', 'lists-waiter']) {
      expect(page.text).toContain(`<input type="hidden" name="workflow" value="${name}">`);
    }
    expect(page.text).toContain('<tr data-workflow="lists-ghost">');
    expect(page.text).not.toContain('<input type="hidden" name="workflow" value="lists-ghost">');
  });

  it('starts a run with the JSON input and redirects to it; JSON clients get its id', async () => {
    const { cookie, token } = await tokenFor('/workflows');
    const input = '{\n  "order": 42,\n  "note": "from the viewer"\n}';
    const res = await request(open).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ _csrf: token, workflow: 'lists-echo', input });
    expect(res.status).toBe(303);
    const runId = decodeURIComponent(/^\/df\/runs\/(.+)$/.exec(res.headers.location as string)![1]!);
    const run = (await flow.getRun(runId))!;
    expect(run).toMatchObject({ workflow: 'lists-echo', input: { order: 42, note: 'from the viewer' } });
    const json = await request(open).post('/df/actions/start-run').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token, workflow: 'lists-echo', input: '[1, 2]' });
    expect(json.status).toBe(200);
    expect((await flow.getRun(json.body.runId))!.input).toEqual([1, 2]);
    await harness.drain();
    expect((await flow.getRun(runId))!.output).toEqual({ order: 42, note: 'from the viewer' });
  });

  it('shows the form again on bad JSON, with what was typed and where the JSON breaks, and starts nothing', async () => {
    const { cookie, token } = await tokenFor('/workflows');
    const before = await runCount();
    const typed = '{\n  "order": 42,\n  note: "<b>x</b>"\n}';
    const res = await request(open).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ _csrf: token, workflow: 'lists-echo', input: typed });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    const form = /<details class="start-run" id="start-\d+" data-start="lists-echo" open>([\s\S]*?)<\/details>/.exec(res.text)![1]!;
    expect(form).toContain('<p class="form-error" role="alert">The input is not valid JSON: Expected double-quoted property name (line 3, column 3)</p>');
    expect(unescape(/<textarea name="input"[^>]*>([\s\S]*?)<\/textarea>/.exec(form)![1]!)).toBe(typed);
    expect(res.text).not.toContain('<b>x</b>');
    // The other forms are as they were.
    expect(/data-start="lists-child">[\s\S]*?<textarea name="input"[^>]*>\{\}<\/textarea>/.test(res.text)).toBe(true);
    const json = await request(open).post('/df/actions/start-run').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token, workflow: 'lists-echo', input: '{' });
    expect(json.status).toBe(400);
    expect(json.body.error).toBe("The input is not valid JSON: Expected property name or '}' (line 1, column 2)");
    expect(await runCount()).toBe(before);
  });

  it('shows the form again, as typed, when the engine refuses the input (over maxPayloadSize) or it is over the form\'s 100,000 characters', async () => {
    const small = ctx.flow({ maxPayloadSize: 1024 });
    small.workflow('lists-small', async () => null);
    const smallApp = express();
    smallApp.use('/df', small.router({ allowUnauthenticated: true }));
    const { cookie, token } = await tokenFor('/workflows', smallApp);
    const before = await runCount();
    const typed = JSON.stringify({ blob: 'b'.repeat(2000) });
    const res = await request(smallApp).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ _csrf: token, workflow: 'lists-small', input: typed });
    expect(res.status).toBe(400);
    expect(res.text).toMatch(/<p class="form-error" role="alert">The input of workflow &#34;lists-small&#34; is 20\d\d bytes of JSON, over the limit of 1024 bytes/);
    expect(res.text).toContain(`>${typed.replace(/"/g, '&#34;')}</textarea>`);
    const huge = `"${'h'.repeat(100_001)}"`;
    const long = await request(smallApp).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ _csrf: token, workflow: 'lists-small', input: huge });
    expect(long.status).toBe(400);
    expect(long.text).toContain('Invalid input: expected one string of at most 100000 characters');
    expect(long.text).toContain(`>${huge.replace(/"/g, '&#34;')}</textarea>`);
    expect(await runCount()).toBe(before);
  });

  it('refuses a workflow not registered here, a missing CSRF token, and a request without credentials', async () => {
    const { cookie, token } = await tokenFor('/workflows');
    const before = await runCount();
    const ghost = await request(open).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ _csrf: token, workflow: 'lists-ghost', input: '{}' });
    expect(ghost.status).toBe(400);
    expect(ghost.text).toMatch(/No workflow "lists-ghost" is registered in the process serving this viewer/);
    const noToken = await request(open).post('/df/actions/start-run').set('Cookie', cookie).type('form').send({ workflow: 'lists-echo', input: '{}' });
    expect(noToken.status).toBe(403);
    const basic = app({ basicAuth: { username: 'ops', password: 's3cret' } });
    const credentials = { Authorization: `Basic ${Buffer.from('ops:s3cret').toString('base64')}` };
    const signedIn = await tokenFor('/workflows', basic, credentials);
    const anonymous = await request(basic).post('/df/actions/start-run').set('Cookie', signedIn.cookie).type('form').send({ _csrf: signedIn.token, workflow: 'lists-echo', input: '{}' });
    expect(anonymous.status).toBe(401);
    expect(await runCount()).toBe(before);
    const allowed = await request(basic).post('/df/actions/start-run').set(credentials).set('Cookie', signedIn.cookie).type('form').send({ _csrf: signedIn.token, workflow: 'lists-echo', input: '{}' });
    expect(allowed.status).toBe(303);
    expect(await runCount()).toBe(before + 1);
  });
});

describe('sending an event from the Events page', () => {
  it('says which waits the event matched, with links to their runs', async () => {
    const waiter = flow.definitions.get('lists-waiter')!;
    const first = await flow.startRun(waiter, { order: 7 });
    const second = await flow.startRun(waiter, { order: 7 });
    const other = await flow.startRun(waiter, { order: 8 });
    await harness.drain();
    expect((await flow.getRun(first))!.status).toBe('waiting');
    const { cookie, token } = await tokenFor('/events');
    const res = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'order_paid', id: 'pay-7', payload: '{"order": 7}' });
    expect(res.status).toBe(303);
    const page = await request(open).get(res.headers.location as string);
    const notice = /<section class="panel notice sent"[\s\S]*?<\/section>/.exec(page.text)![0]!;
    expect(notice).toContain('Sent <strong>order_paid</strong>');
    expect(notice).toContain('It matched 2 waits:');
    for (const runId of [first, second]) expect(notice).toContain(`<a href="/df/runs/${runId}"><code>${runId}</code></a> lists-waiter · for_payment`);
    expect(notice).not.toContain(other);

    // Sent again with its id: nothing new, and the page says so.
    const again = await request(open).post('/df/actions/send-event').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token, name: 'order_paid', id: 'pay-7', payload: '{"order": 7}' });
    expect(again.body).toMatchObject({ ok: true, event: { duplicate: true } });
    const redelivered = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'order_paid', id: 'pay-7', payload: '{"order": 7}' });
    expect(redelivered.headers.location).toMatch(/\?sent=\d+&duplicate=1$/);
    const duplicate = await request(open).get(redelivered.headers.location as string);
    expect(duplicate.text).toContain('An event with id <code>pay-7</code> was already stored: nothing new was sent.');

    const none = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'order_paid', payload: '{"order": 99}' });
    expect((await request(open).get(none.headers.location as string)).text).toContain('It matched no waiting run.');
    const api = await request(open).get(`/df/api/events?${(res.headers.location as string).split('?')[1]!}`);
    expect(api.body.sent.matched.map((m: { runId: string }) => m.runId).sort()).toEqual([first, second].sort());
  });

  it('keeps the form\'s content on bad JSON or a reused event id, and says what is wrong', async () => {
    const { cookie, token } = await tokenFor('/events');
    const count = async () => (await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_events')).rows[0]!.n;
    const events = await count();
    const typed = { name: 'order_paid', id: 'pay-8', payload: '{"order": 8,}' };
    const bad = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, ...typed });
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/<details class="panel send-event" open>/);
    expect(bad.text).toContain('<p class="form-error" role="alert">The payload is not valid JSON: Expected double-quoted property name (line 1, column 13)</p>');
    expect(bad.text).toContain('<input name="name" required maxlength="255" placeholder="order_paid" value="order_paid">');
    expect(bad.text).toContain('<input name="id" maxlength="255" value="pay-8">');
    expect(unescape(/<textarea name="payload"[^>]*>([\s\S]*?)<\/textarea>/.exec(bad.text)![1]!)).toBe(typed.payload);
    // The page around the form is the Events page, list included.
    expect(bad.text).toContain('<table class="events">');

    const conflict = await request(open).post('/df/actions/send-event').set('Cookie', cookie).type('form').send({ _csrf: token, name: 'order_paid', id: 'pay-7', payload: '{"order": 70}' });
    expect(conflict.status).toBe(409);
    expect(conflict.text).toContain('Event id &#34;pay-7&#34; is already stored with another payload');
    expect(unescape(/<textarea name="payload"[^>]*>([\s\S]*?)<\/textarea>/.exec(conflict.text)![1]!)).toBe('{"order": 70}');
    expect(await count()).toBe(events);
  });
});
