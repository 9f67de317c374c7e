// The viewer's operator tools over HTTP (lib/http/operator-page.ts): each action's effect in the
// database and its audit entry, with the basic-auth user as actor; CSRF, auth and 405 refusals; the
// Audit, Failures, bulk confirm and operation pages. The bulk actions need flow.bulk (the bulk branch:
// see the tests' names).
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let app: express.Express;
const USER = { username: 'ops', password: 's3cret' };

/** Fails its step with code UPSTREAM_DOWN while `failing` holds. */
let failing = true;
let order: { start(input: unknown): Promise<{ runId: string }> };
let flaky: typeof order;
let bare: typeof order;

beforeAll(async () => {
  ctx = await setupDatabase('opview');
  flow = ctx.flow();
  order = flow.workflow('order', async ({ step, input }) => {
    const charged = await step.run('charge', async () => ({ charged: (input as { amount: number }).amount }));
    const approval = await step.waitForEvent('approval', { event: 'approved', match: { order: (input as { order: string }).order } });
    return step.run('ship', async () => ({ ...charged, approval }));
  });
  flaky = flow.workflow('flaky', { retries: 0 }, async ({ step }) =>
    step.run('call', async () => {
      if (failing) throw Object.assign(new Error('upstream answered 503'), { code: 'UPSTREAM_DOWN' });
      return 'ok';
    }),
  );
  bare = flow.workflow('bare', { retries: 0 }, async ({ step }) =>
    step.run('call', async () => {
      throw new Error('no key here');
    }),
  );
  await flow.migrate();
  harness = createTestHarness(flow);
  app = express();
  app.use('/df', flow.router({ basicAuth: USER }));
});
afterAll(async () => {
  await ctx?.cleanup();
});

const get = (path: string) => request(app).get(`/df${path}`).auth(USER.username, USER.password);

/** A page's CSRF token and cookie (the token is bound to the signed-in user). */
async function tokenFor(path: string) {
  const page = await get(path);
  expect(page.status).toBe(200);
  const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
  return { page, cookie, token };
}

async function post(path: string, fields: Record<string, string>, from = '/workflows') {
  const { cookie, token } = await tokenFor(from);
  return request(app).post(`/df${path}`).auth(USER.username, USER.password).set('Cookie', cookie).type('form').send({ _csrf: token, ...fields });
}

async function waitingOrder(id: string) {
  const { runId } = await order.start({ order: id, amount: 12 });
  await harness.drain();
  expect((await flow.getRun(runId))!.status).toBe('waiting');
  return runId;
}

async function failedRun() {
  failing = true;
  const { runId } = await flaky.start({});
  await harness.drain();
  expect((await flow.getRun(runId))!.status).toBe('failed');
  return runId;
}

const lastAudit = async (runId: string) => (await flow.audit({ runId }))[0];

describe('the run page: pause and resume', () => {
  it('pauses a waiting run and resumes it, audited with the signed-in user and the reason', async () => {
    const runId = await waitingOrder('o-pause');
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain(`action="/df/runs/${runId}/pause"`);
    expect(page.text).not.toContain(`action="/df/runs/${runId}/resume"`);
    const paused = await post(`/runs/${runId}/pause`, { reason: 'checking the stock' }, `/runs/${runId}`);
    expect(paused.status).toBe(303);
    expect(paused.headers.location).toBe(`/df/runs/${runId}`);
    expect((await flow.getRun(runId))!.status).toBe('paused');
    expect(await lastAudit(runId)).toMatchObject({ action: 'pause', actor: 'ops', reason: 'checking the stock', runId, workflow: 'order' });
    const after = await get(`/runs/${runId}`);
    expect(after.text).toContain('<span class="badge waiting">paused</span>');
    expect(after.text).toContain(`action="/df/runs/${runId}/resume"`);
    // The audit panel: who, what, why.
    const panel = after.text.slice(after.text.indexOf('class="panel run-audit"'));
    expect(panel).toContain('<td class="actor">ops</td>');
    expect(panel).toContain('<strong>pause</strong>');
    expect(panel).toContain('checking the stock');
    const resumed = await post(`/runs/${runId}/resume`, {}, `/runs/${runId}`);
    expect(resumed.status).toBe(303);
    // Due again: its replay finds the wait still pending.
    expect((await flow.getRun(runId))!.status).toBe('ready');
    await harness.drain();
    expect((await flow.getRun(runId))!.status).toBe('waiting');
    expect(await lastAudit(runId)).toMatchObject({ action: 'resume', actor: 'ops', reason: null });
  });

  it('shows a pause asked of a running run as "pausing after the current step", and withdraws it', async () => {
    const runId = await waitingOrder('o-pausing');
    // What flow.pause() leaves on a run a worker holds (pause.ts): the flag, taken at its next write.
    await flow.pool.query('UPDATE durable_flow_workflow_runs SET pause_requested = true WHERE run_id = $1', [runId]);
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain('<span class="badge waiting">pausing</span> after the current step');
    expect(page.text).toContain('Withdraw the pause');
    expect(page.text).not.toContain(`action="/df/runs/${runId}/pause"`);
    expect((await post(`/runs/${runId}/resume`, { reason: 'not needed' }, `/runs/${runId}`)).status).toBe(303);
    expect(await flow.getRun(runId)).toMatchObject({ status: 'waiting', pauseRequested: false });
    expect(await lastAudit(runId)).toMatchObject({ action: 'resume', actor: 'ops', details: { withdrawn: true } });
  });

  it('lists paused runs styled like waiting ones', async () => {
    const runId = await waitingOrder('o-list');
    await flow.pause(runId);
    const list = await get('/?status=paused');
    expect(list.text).toContain(`data-run-id="${runId}"`);
    expect(list.text).toContain('class="waiting current" data-count="paused"');
  });

  it('refuses without CSRF token, without credentials, and GET on the action', async () => {
    const runId = await waitingOrder('o-refuse');
    const { cookie } = await tokenFor(`/runs/${runId}`);
    const noToken = await request(app).post(`/df/runs/${runId}/pause`).auth(USER.username, USER.password).set('Cookie', cookie).type('form').send({});
    expect(noToken.status).toBe(403);
    const noAuth = await request(app).post(`/df/runs/${runId}/pause`).type('form').send({});
    expect(noAuth.status).toBe(401);
    expect((await flow.getRun(runId))!.status).toBe('waiting');
    for (const verb of ['pause', 'resume', 'replay', 'rerun-from', 'resolve-wait', 'complete-step']) {
      const answer = await get(`/runs/${runId}/${verb}`);
      expect(answer.status, verb).toBe(405);
    }
    expect((await get('/actions/bulk')).status).toBe(405);
    expect((await get('/workflows/order/pause')).status).toBe(405);
    expect(await flow.audit({ runId })).toEqual([]);
  });

  it('answers 404 for a run that does not exist', async () => {
    const answer = await post('/runs/no-such-run/pause', {});
    expect(answer.status).toBe(404);
  });
});

describe('the Workflows page: pause and resume a workflow', () => {
  it('pauses it (badge, audited), then resumes it', async () => {
    const paused = await post('/workflows/order/pause', { reason: 'bad deploy' }, '/workflows');
    expect(paused.status).toBe(303);
    expect(paused.headers.location).toBe('/df/workflows');
    const pauses = await flow.pool.query('SELECT workflow_name, actor, reason FROM durable_flow_workflow_pauses');
    expect(pauses.rows).toEqual([{ workflow_name: 'order', actor: 'ops', reason: 'bad deploy' }]);
    const page = await get('/workflows');
    const row = page.text.slice(page.text.indexOf('data-workflow="order"')).split('</tr>')[0]!;
    expect(row).toContain('<span class="badge waiting"');
    expect(row).toContain('action="/df/workflows/order/resume"');
    const other = page.text.slice(page.text.indexOf('data-workflow="flaky"')).split('</tr>')[0]!;
    expect(other).toContain('action="/df/workflows/flaky/pause"');
    expect((await flow.audit({ workflow: 'order', action: 'pause_workflow' }))[0]).toMatchObject({ actor: 'ops', reason: 'bad deploy' });
    // A run of the paused workflow says so on its page.
    const runId = (await order.start({ order: 'o-wf', amount: 1 })).runId;
    expect((await get(`/runs/${runId}`)).text).toContain('workflow paused');
    const resumed = await post('/workflows/order/resume', {}, '/workflows');
    expect(resumed.status).toBe(303);
    expect((await flow.pool.query('SELECT 1 FROM durable_flow_workflow_pauses')).rowCount).toBe(0);
    expect((await flow.audit({ workflow: 'order', action: 'resume_workflow' }))[0]).toMatchObject({ actor: 'ops' });
  });
});

describe('the Audit page', () => {
  it('lists entries newest first, filters them and pages with before', async () => {
    const runId = await waitingOrder('o-audit');
    for (let i = 0; i < 3; i++) {
      await flow.pause(runId, { actor: 'alice', reason: `pause ${i}` });
      await flow.resume(runId, { actor: 'bob', reason: `resume ${i}` });
    }
    const page = await get(`/audit?run=${runId}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('href="/df/audit" class="current"');
    const reasons = [...page.text.matchAll(/<td class="reason">([^<]*)<\/td>/g)].map((m) => m[1]);
    expect(reasons).toEqual(['resume 2', 'pause 2', 'resume 1', 'pause 1', 'resume 0', 'pause 0']);
    expect(page.text).toContain(`<a href="/df/runs/${runId}"><code>${runId}</code></a>`);
    const alice = await get(`/audit?run=${runId}&actor=alice&action=pause&limit=2`);
    expect([...alice.text.matchAll(/<td class="reason">([^<]*)<\/td>/g)].map((m) => m[1])).toEqual(['pause 2', 'pause 1']);
    const older = /href="([^"]+)" rel="next"/.exec(alice.text)![1]!.replace(/&amp;/g, '&');
    const second = await get(older.replace('/df', ''));
    expect([...second.text.matchAll(/<td class="reason">([^<]*)<\/td>/g)].map((m) => m[1])).toEqual(['pause 0']);
    expect(second.text).not.toContain('rel="next"');
    const api = await get(`/api/audit?run=${runId}&limit=1`);
    expect(api.body.entries).toHaveLength(1);
    expect(api.body.entries[0]).toMatchObject({ action: 'resume', actor: 'bob', reason: 'resume 2' });
    expect(api.body.next).toBe(api.body.entries[0].id);
    expect((await get('/audit?action=explode')).status).toBe(400);
    expect((await get('/audit?before=abc')).status).toBe(400);
    expect((await get('/audit?sort=id')).status).toBe(400);
  });
});

describe('failed runs grouped by error', () => {
  it('groups by code with a count and offers retry of the group', async () => {
    const ids = [await failedRun(), await failedRun()];
    const page = await get('/failures?workflow=flaky');
    expect(page.status).toBe(200);
    const row = page.text.slice(page.text.indexOf('data-error-code="UPSTREAM_DOWN"')).split('</tr>')[0]!;
    expect(row).toContain('upstream answered 503');
    expect(row).toMatch(/<td class="count"><a href="[^"]+">2<\/a><\/td>/);
    expect(row).toContain('name="errorCode" value="UPSTREAM_DOWN"');
    expect(row).toContain('Retry this group (2)');
    const api = await get('/api/failures?workflow=flaky');
    expect(api.body.groups[0]).toMatchObject({ code: 'UPSTREAM_DOWN', count: 2, messages: [{ message: 'upstream answered 503', count: 2 }] });
    expect(api.body.capped).toBe(false);
    expect(ids).toHaveLength(2);
    // An error without a code is a group of its own, which a bulk retry (by code) cannot select.
    const plain = await bare.start({});
    await harness.drain();
    expect((await flow.getRun(plain.runId))!.status).toBe('failed');
    const all = await get('/failures');
    const none = all.text.slice(all.text.indexOf('data-error-code=""')).split('</tr>')[0]!;
    expect(none).toContain('no code');
    expect(none).toContain('no key here');
    expect(none).not.toContain('action="/df/actions/bulk"');
  });

  it('retries the group through flow.bulk (needs the bulk branch)', async () => {
    const runId = await failedRun();
    failing = false;
    const answer = await post('/actions/bulk', { action: 'retry', status: 'failed', errorCode: 'UPSTREAM_DOWN', workflow: 'flaky', reason: 'upstream is back' }, '/failures');
    expect(answer.status).toBe(303);
    const location = answer.headers.location as string;
    expect(location).toMatch(/^\/df\/operations\/[^/]+$/);
    const operationId = decodeURIComponent(location.split('/').pop()!);
    await eventually(async () => (await flow.operation(operationId)).status === 'completed');
    await harness.drain();
    expect((await flow.getRun(runId))!.status).toBe('completed');
    expect((await flow.audit({ operationId, action: 'bulk' }))[0]).toMatchObject({ actor: 'ops', reason: 'upstream is back' });
    const progress = await get(location.replace('/df', ''));
    expect(progress.status).toBe(200);
    expect(progress.text).toContain('data-status="completed"');
    expect(progress.text).not.toContain('http-equiv="refresh"');
  });
});

describe('bulk actions from the run list', () => {
  it('offers "apply to all N" only for a filter flow.bulk can say, and confirms with N', async () => {
    await waitingOrder('o-bulk-1');
    const all = await get('/?workflow=order&status=waiting&children=1');
    const n = Number(/data-bulk-count="(\d+)"/.exec(all.text)![1]);
    expect(n).toBeGreaterThan(0);
    expect(all.text).toContain(n === 1 ? 'Apply to the 1 matching run' : `Apply to all ${n} matching runs`);
    expect(all.text).toContain(`<span class="n">${n}</span> waiting`);
    // Search text has no BulkFilter equivalent; the top-level list leaves child runs out.
    expect((await get('/?workflow=order&status=waiting&children=1&q=o-bulk')).text).not.toContain('data-bulk-count');
    expect((await get('/?workflow=order&status=waiting')).text).toContain('include child runs</a> to apply one');
    expect((await get('/')).text).not.toContain('data-bulk-count');
    const confirm = await get('/bulk?action=cancel&workflow=order&status=waiting');
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain(`data-count="${n}" data-action="cancel"`);
    expect(confirm.text).toContain('action="/df/actions/bulk"');
    expect((await get('/bulk?action=explode&workflow=order')).status).toBe(400);
    expect((await get('/bulk?action=cancel')).status).toBe(400);
  });

  it('cancels every matching run and shows the operation (needs the bulk branch)', async () => {
    const ids = [await waitingOrder('o-bulk-2'), await waitingOrder('o-bulk-3')];
    const answer = await post('/actions/bulk', { action: 'cancel', workflow: 'order', status: 'waiting', reason: 'bad batch' }, '/bulk?action=cancel&workflow=order&status=waiting');
    expect(answer.status).toBe(303);
    const operationId = decodeURIComponent((answer.headers.location as string).split('/').pop()!);
    const running = await get(`/operations/${encodeURIComponent(operationId)}`);
    expect(running.status).toBe(200);
    await eventually(async () => (await flow.operation(operationId)).status === 'completed');
    for (const id of ids) expect((await flow.getRun(id))!.status).toBe('cancelled');
    expect((await lastAudit(ids[0]!))).toMatchObject({ action: 'cancel', operationId, actor: 'ops' });
    const api = await get(`/api/operations/${encodeURIComponent(operationId)}`);
    expect(api.body.operation).toMatchObject({ status: 'completed', action: 'cancel' });
    expect(api.body.operation.done).toBe(api.body.operation.total);
    expect((await get('/operations/nope')).status).toBe(404);
  });

  it('shows a running operation\'s progress and reloads itself while it runs (needs the bulk branch)', async () => {
    // An operation another process holds (its lease is live): this flow leaves it as it is.
    await flow.pool.query(
      `INSERT INTO durable_flow_operations (id, action, filter, status, total, done, failed, actor, reason, lease_owner, lease_expires_at)
       VALUES ('op-held', 'cancel', '{"workflow": "order"}', 'running', 40, 15, 2, 'alice', 'cleanup', 'elsewhere', now() + interval '1 hour')`,
    );
    const page = await get('/operations/op-held');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<meta http-equiv="refresh" content="2">');
    expect(page.text).toContain('data-status="running"');
    expect(page.text).toMatch(/<strong data-done>15<\/strong> of <strong data-total>40<\/strong> runs done, <span class="failed-count" data-failed>2<\/span>/);
    expect(page.text).toContain('workflow = order');
    expect(page.text).toContain('href="/df/audit?operation=op-held"');
  });
});

describe('a refused JSON form', () => {
  it('refills the replay form with the error when the JSON is bad', async () => {
    const runId = await waitingOrder('o-badjson');
    const answer = await post(`/runs/${runId}/replay`, { input: '{"order": ', reason: 'typo' }, `/runs/${runId}`);
    expect(answer.status).toBe(400);
    expect(answer.text).toContain('The input is not valid JSON');
    expect(answer.text).toMatch(/<details class="operator-form" id="op-replay" open>/);
    expect(answer.text).toContain('{&#34;order&#34;: </textarea>');
    expect(answer.text).toContain('value="typo"');
    expect(await flow.audit({ runId })).toEqual([]);
  });
});

describe('replay, rerun, repairs', () => {
  it('replays a run with edited input and redirects to the new run', async () => {
    const runId = await waitingOrder('o-replay');
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain(`action="/df/runs/${runId}/replay"`);
    expect(page.text).toContain('&#34;order&#34;: &#34;o-replay&#34;');
    const answer = await post(`/runs/${runId}/replay`, { input: '{"order": "o-replay-2", "amount": 5}', reason: 'again' }, `/runs/${runId}`);
    expect(answer.status).toBe(303);
    const newId = decodeURIComponent((answer.headers.location as string).split('/').pop()!);
    expect(newId).not.toBe(runId);
    expect(await flow.getRun(newId)).toMatchObject({ replayOf: runId, input: { order: 'o-replay-2', amount: 5 } });
    expect(await lastAudit(runId)).toMatchObject({ action: 'replay', actor: 'ops', reason: 'again' });
    expect((await get(`/runs/${newId}`)).text).toContain(`Replay of <a href="/df/runs/${runId}">`);
  });

  it('reruns from a step with edited input', async () => {
    const runId = await waitingOrder('o-rerun');
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain(`action="/df/runs/${runId}/rerun-from"`);
    const answer = await post(`/runs/${runId}/rerun-from`, { step: 'approval', input: '{"order": "o-rerun", "amount": 99}', reason: 'wrong amount' }, `/runs/${runId}`);
    expect(answer.status).toBe(303);
    const newId = decodeURIComponent((answer.headers.location as string).split('/').pop()!);
    expect(await flow.getRun(newId)).toMatchObject({ replayOf: runId });
    expect(await lastAudit(runId)).toMatchObject({ action: 'rerun_from', stepName: 'approval', actor: 'ops', reason: 'wrong amount' });
    const missing = await post(`/runs/${runId}/rerun-from`, { step: 'nope', input: '' }, `/runs/${runId}`);
    expect(missing.status).toBe(404);
  });

  it('resolves a pending wait with a payload', async () => {
    const runId = await waitingOrder('o-resolve');
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain(`action="/df/runs/${runId}/resolve-wait"`);
    const answer = await post(`/runs/${runId}/resolve-wait`, { step: 'approval', payload: '{"by": "phone"}', reason: 'approved by phone' }, `/runs/${runId}`);
    expect(answer.status).toBe(303);
    expect(answer.headers.location).toBe(`/df/runs/${runId}`);
    await harness.drain();
    expect(await flow.getRun(runId)).toMatchObject({ status: 'completed', output: { charged: 12, approval: { by: 'phone' } } });
    expect(await lastAudit(runId)).toMatchObject({ action: 'resolve_wait', stepName: 'approval', actor: 'ops', reason: 'approved by phone' });
  });

  it('completes a failed step with a result', async () => {
    const runId = await failedRun();
    const page = await get(`/runs/${runId}`);
    expect(page.text).toContain(`action="/df/runs/${runId}/complete-step"`);
    const answer = await post(`/runs/${runId}/complete-step`, { step: 'call', result: '"fixed by hand"', reason: 'manual' }, `/runs/${runId}`);
    expect(answer.status).toBe(303);
    await harness.drain();
    expect(await flow.getRun(runId)).toMatchObject({ status: 'completed', output: 'fixed by hand' });
    expect(await lastAudit(runId)).toMatchObject({ action: 'complete_step', stepName: 'call', actor: 'ops', reason: 'manual' });
  });
});
