/**
 * G4, continued (issue #10, defect 12): the CSRF token is bound to the viewer's session by an HMAC under
 * a key kept in the database. A sibling subdomain can set the cookie a plain double-submit compares
 * with; it still cannot make a token for it, nor use a pair of its own for another user. Two routers on
 * the same database (two processes) accept each other's tokens without configuration.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

let ctx: TestContext;
let flow: DurableFlow;
let other: DurableFlow;
let viewer: ViewerServer;
let second: ViewerServer;

/** The signed-in user is the X-User header (an app's session, in miniature); anyone else is refused. */
const authorize = (req: IncomingMessage) => {
  const user = req.headers['x-user'];
  return typeof user === 'string' && ['alice', 'bob'].includes(user) ? { actor: user } : false;
};

beforeAll(async () => {
  ctx = await setupDatabase('csrf');
  flow = ctx.flow();
  // A second flow on the same database stands for a second web process: its own pools, its own router.
  other = ctx.flow();
  viewer = await startViewer(flow, { authorize }, false);
  second = await startViewer(other, { authorize }, false);
});
afterAll(async () => {
  await viewer?.close();
  await second?.close();
  await ctx.cleanup();
});

async function pairFor(server: ViewerServer, user: string) {
  const page = await fetch(`${server.base}/events`, { headers: { 'X-User': user } });
  expect(page.status).toBe(200);
  const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
  const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  return { cookie, token };
}

async function sendEvent(server: ViewerServer, user: string, cookie: string, token: string, name: string) {
  const res = await fetch(`${server.base}/actions/send-event`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-User': user, Cookie: cookie, Origin: server.url },
    body: new URLSearchParams({ _csrf: token, name, payload: '{}' }).toString(),
  });
  return { status: res.status, text: await res.text() };
}

async function stored(name: string): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_events WHERE name = $1', [name]);
  return rows[0]!.n;
}

describe('G4: CSRF tokens bound to the session', () => {
  it('refuses pairs made without the server key: the old double-submit (cookie = token), and HMACs under guessed keys', async () => {
    const nonce = randomBytes(32).toString('base64url');
    const forged = [
      { what: 'cookie and token equal (plain double-submit)', cookie: nonce, token: nonce },
      ...['', 'durable-flow', 'secret', nonce].map((key) => ({
        what: `HMAC under ${JSON.stringify(key.slice(0, 12))}`,
        cookie: nonce,
        token: `${nonce}.${createHmac('sha256', key).update(`${nonce}|alice`).digest('base64url')}`,
      })),
      { what: 'the nonce twice', cookie: nonce, token: `${nonce}.${nonce}` },
    ];
    for (const { what, cookie, token } of forged) {
      const res = await sendEvent(viewer, 'alice', `durable_flow_csrf=${cookie}`, token, 'forged');
      expect(res.status, what).toBe(403);
      expect(res.text, what).toMatch(/CSRF token/);
    }
    expect(await stored('forged')).toBe(0);
  });

  it("refuses user A's valid pair when user B sends it (a pair planted by another signed-in user), and takes it from A", async () => {
    const alice = await pairFor(viewer, 'alice');
    const bob = await sendEvent(viewer, 'bob', alice.cookie, alice.token, 'planted');
    expect(bob.status).toBe(403);
    expect(await stored('planted')).toBe(0);
    // A's own pair with A's cookie is fine; with B's cookie it is not either.
    const bobPair = await pairFor(viewer, 'bob');
    expect((await sendEvent(viewer, 'alice', bobPair.cookie, alice.token, 'planted')).status).toBe(403);
    expect((await sendEvent(viewer, 'alice', alice.cookie, alice.token, 'planted')).status).toBe(303);
    expect(await stored('planted')).toBe(1);
  });

  it('a pair issued by one router works on another router on the same database, both ways, with no key configured', async () => {
    const first = await pairFor(viewer, 'alice');
    const fromSecond = await pairFor(second, 'bob');
    expect((await sendEvent(second, 'alice', first.cookie, first.token, 'across')).status).toBe(303);
    expect((await sendEvent(viewer, 'bob', fromSecond.cookie, fromSecond.token, 'across')).status).toBe(303);
    expect(await stored('across')).toBe(2);
    // And an action on a run, as the viewer's buttons post it.
    const sleeper = flow.workflow('csrf-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const run = await sleeper.start({});
    const res = await fetch(`${second.base}/runs/${run.runId}/cancel`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-User': 'alice', Cookie: first.cookie },
      body: new URLSearchParams({ _csrf: first.token }).toString(),
    });
    expect(res.status).toBe(303);
    await eventually(async () => (await flow.getRun(run.runId))!.status === 'cancelled');
  });

  it('keeps the token out of reach of the page: an HttpOnly, SameSite=Strict cookie holding a nonce, and a token that is not the cookie', async () => {
    const page = await fetch(`${viewer.base}/`, { headers: { 'X-User': 'alice' } });
    const setCookie = page.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^durable_flow_csrf=[A-Za-z0-9_-]{43}; Path=\/durable_flow; HttpOnly; SameSite=Strict$/);
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1];
    // The runs page has no form; the events page does.
    expect(token).toBeUndefined();
    const { cookie, token: formToken } = await pairFor(viewer, 'alice');
    expect(formToken.startsWith(`${cookie.split('=')[1]!}.`)).toBe(true);
    expect(formToken).not.toBe(cookie.split('=')[1]);
  });
});
