/**
 * The run viewer under attack (reliability.md §3 G1, G4, G5, G8, G9): every route of the router
 * denied without credentials (enumerated from its own stack), actions only by POST with a CSRF token
 * from the same origin, stored and reflected XSS in headless Chromium, and SQL injection in filters.
 */
import fs from 'node:fs';
import path from 'node:path';
import express from 'express';
import type { Router } from 'express';
import type { Browser, Page } from 'playwright-core';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NonRetriableError } from '../../lib/index.js';
import type { DurableFlow, RouterOptions, Worker, WorkflowContext } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

/** Strings that must show as text everywhere and never run. */
const HOSTILE = [
  '<img src=x onerror=alert(1)>',
  '</script><script>alert(1)</script>',
  'javascript:alert(1)',
  '"><svg onload=alert(1)>',
  'line\u2028separator\u2029paragraph',
];
const ALL = HOSTILE.join(' ');
const QUEUE = `queue ${HOSTILE[0]}${HOSTILE[4]}`;
const CREDENTIALS = { username: 'ops', password: 'correct horse battery staple' };
const AUTH = { Authorization: `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}` };
const EVENT_SECRET = 'whsec_viewer_0123456789abcdef';
/** SQL error text, stack frames or paths: none of it may reach a client. */
const INTERNALS = /syntax error|\bSQL\b|relation "|column "|ERROR:|pg_sleep\(|\n\s+at |node_modules|\.ts:\d/i;

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let viewer: ViewerServer;
let browser: Browser;
const publicDir = path.resolve(import.meta.dirname, '../../public');

beforeAll(async () => {
  ctx = await setupDatabase('viewerchaos');
  flow = ctx.flow();
  worker = flow.worker({ queues: ['default', QUEUE], pollInterval: 100 });
  await worker.start();
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS, eventSecret: EVENT_SECRET });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

/** A request to the viewer, with credentials unless told otherwise; refused if it takes 4 s. */
function call(pathAndQuery: string, init: RequestInit & { auth?: boolean } = {}) {
  const { auth = true, headers, ...rest } = init;
  return fetch(`${viewer.base}${pathAndQuery}`, {
    redirect: 'manual',
    signal: AbortSignal.timeout(4000),
    ...rest,
    headers: { ...(auth ? AUTH : {}), ...(headers as Record<string, string>) },
  });
}

async function statusOf(runId: string) {
  return (await flow.getRun(runId))!.status;
}

async function eventCount(): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_events');
  return rows[0]!.n;
}

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  rawPath?: string;
}

/**
 * Every (method, path) a router answers, read from its own stack, so a route added later is checked
 * without touching this test. `:runId` becomes a real run (a denial must not be a mere 404); a
 * mounted middleware (the static assets) is asked for every file it could serve.
 */
function routesOf(router: Router, runId: string): { method: string; path: string }[] {
  const routes: { method: string; path: string }[] = [];
  for (const layer of (router as unknown as { stack: Layer[] }).stack) {
    if (layer.route) {
      const methods = Object.keys(layer.route.methods).flatMap((m) =>
        m === '_all' ? ['get', 'head', 'post', 'put', 'patch', 'delete'] : m === 'get' ? ['get', 'head'] : [m],
      );
      for (const routePath of [layer.route.path].flat()) {
        let concrete = routePath.replace(':runId', encodeURIComponent(runId)).replace(':path', 'run.input').replace(':eventId', '1').replace(':name', 'nightly').replace(':operationId', 'op-1');
        expect(concrete, `a route parameter this test does not know: ${routePath}`).not.toMatch(/[:*{]/);
        // The live channel's polling: asked as a socket.io client asks, with a handshake.
        if (concrete === '/socket.io/') concrete += '?EIO=4&transport=polling';
        for (const method of methods) routes.push({ method: method.toUpperCase(), path: concrete });
      }
    } else if (layer.rawPath && layer.rawPath !== '/') {
      for (const file of fs.readdirSync(publicDir)) routes.push({ method: 'GET', path: `${layer.rawPath}/${file}` });
    }
  }
  // And what no route matches: the 404 handler is behind the same check.
  routes.push({ method: 'GET', path: '/no-such-page' }, { method: 'GET', path: '/api/no-such-thing' });
  return routes;
}

/** A page's cookie and CSRF token, as a browser would hold them. */
async function csrfFor(pagePath: string) {
  const page = await call(pagePath);
  const cookie = page.headers.get('set-cookie')!;
  const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  return { setCookie: cookie, cookie: cookie.split(';')[0]!, token };
}

/** Everything in the rendered DOM that could run script or lead off the site. */
function domThreats(page: Page) {
  return page.evaluate(() => {
    const all = (selector: string) => Array.from(document.querySelectorAll(selector));
    return {
      handlers: all('*').flatMap((el) =>
        Array.from(el.attributes)
          .filter((a) => /^on/i.test(a.name))
          .map((a) => `${el.tagName}[${a.name}]`),
      ),
      inlineScripts: all('script').filter((s) => !(s as HTMLScriptElement).src).length,
      embedded: all('img, iframe, object, embed, frame, base, meta[http-equiv]').length,
      offsite: all('a[href]')
        .map((a) => (a as HTMLAnchorElement).href)
        .concat(all('form[action]').map((f) => (f as HTMLFormElement).action))
        .filter((href) => !href.startsWith(`${location.origin}/`)),
    };
  });
}

const safeDom = { handlers: [], inlineScripts: 0, embedded: 0, offsite: [] };

describe('access', () => {
  it('G1: every route of the router, enumerated from its stack, denies access without credentials', async () => {
    const sleeper = flow.workflow('g1-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const run = await sleeper.start({ secret: 'g1-data' });
    await eventually(async () => (await statusOf(run.runId)) === 'sleeping');
    const events = await eventCount();
    const configs: { name: string; options: RouterOptions; status: number; message: RegExp }[] = [
      {
        name: 'basicAuth',
        options: { basicAuth: CREDENTIALS, eventSecret: EVENT_SECRET },
        status: 401,
        message: /Authentication required/,
      },
      {
        name: 'nothing configured',
        options: { eventSecret: EVENT_SECRET },
        status: 403,
        message: /denied by default.*authorize.*basicAuth.*allowUnauthenticated/s,
      },
      {
        name: 'authorize refuses',
        options: { authorize: () => false, eventSecret: EVENT_SECRET },
        status: 403,
        message: /authorize\(\) check/,
      },
      {
        name: 'authorize throws',
        options: {
          authorize: () => {
            throw new Error('session store down');
          },
          eventSecret: EVENT_SECRET,
        },
        status: 403,
        message: /authorize\(\) check/,
      },
    ];
    for (const config of configs) {
      const server = config.name === 'basicAuth' ? viewer : await startViewer(flow, config.options, false);
      try {
        const routes = routesOf(server.router, run.runId);
        // Sanity: the enumeration found the pages, the JSON twins, the assets and the actions.
        for (const known of [
          'GET /',
          'GET /api/runs',
          `GET /runs/${run.runId}`,
          'GET /assets/viewer.js',
          'GET /assets/socket.io.min.js',
          `POST /runs/${run.runId}/cancel`,
          'POST /actions/send-event',
          'POST /actions/start-run',
          'POST /events',
        ]) {
          expect(routes.map((r) => `${r.method} ${r.path}`)).toContain(known);
        }
        const headerSets: Record<string, string>[] =
          config.name === 'basicAuth'
            ? [{}, { Authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` }, { Authorization: 'Bearer x' }]
            : [{}, AUTH];
        for (const { method, path: routePath } of routes) {
          for (const headers of headerSets) {
            const res = await fetch(`${server.base}${routePath}`, {
              method,
              headers,
              redirect: 'manual',
              signal: AbortSignal.timeout(4000),
            });
            const what = `${config.name}: ${method} ${routePath} ${JSON.stringify(headers)}`;
            const text = await res.text();
            if (method === 'POST' && routePath === '/events') {
              // The ingest is not the viewer: it is authenticated by its signature.
              expect(res.status, what).toBe(401);
              expect(text, what).toMatch(/DurableFlow-Signature/);
              continue;
            }
            if (routePath.startsWith('/socket.io/') && method !== 'GET') {
              // Only a GET opens a session; engine.io answers anything else without one with 400, before any data.
              // (Through the router, at a mount the socket server does not own, the access check answers first.)
              expect([400, config.status], what).toContain(res.status);
              expect(text, what).not.toContain('g1-data');
              continue;
            }
            expect(res.status, what).toBe(config.status);
            if (config.status === 401) expect(res.headers.get('www-authenticate'), what).toMatch(/^Basic realm="durable-flow"/);
            if (method !== 'HEAD') expect(text, what).toMatch(config.message);
            expect(text, what).not.toContain('g1-data');
            expect(text, what).not.toContain(run.runId.slice(0, 8) + '-');
          }
        }
      } finally {
        if (server !== viewer) await server.close();
      }
    }
    expect(await statusOf(run.runId)).toBe('sleeping');
    expect(await eventCount()).toBe(events);
  });

  it('G4: actions are POST only; GET and other methods get 405 and change nothing; a missing, wrong or cross-origin CSRF token gets 403; the cookie is HttpOnly, SameSite=Strict, Secure over HTTPS', async () => {
    const sleeper = flow.workflow('g4-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const failing = flow.workflow('g4-fails', async ({ step }: WorkflowContext) =>
      step.run('boom', { retries: 0 }, () => {
        throw new Error('g4 failure');
      }),
    );
    const sleeping = await sleeper.start({});
    const failed = await failing.start({});
    await eventually(async () => (await statusOf(sleeping.runId)) === 'sleeping' && (await statusOf(failed.runId)) === 'failed');
    const events = await eventCount();
    const runCount = async () => (await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_runs')).rows[0]!.n;
    const runs = await runCount();
    // The actions, from the router's stack; retry is tried on the failed run, the others on the sleeping one.
    const actions = [
      ...new Set(
        routesOf(viewer.router, 'RUN')
          // Not actions: the signed ingest, and the live channel's polling (its own origin and access checks, G1).
          .filter((r) => r.method === 'POST' && r.path !== '/events' && !r.path.startsWith('/socket.io/'))
          .map((r) => r.path),
      ),
    ].map((p) => p.replace('RUN', p.endsWith('/retry') ? failed.runId : sleeping.runId));
    // cancel, retry, start-run, send-event; a schedule's pause, resume, trigger; the operator tools' run
    // pause, resume, replay, rerun-from, resolve-wait, complete-step, a workflow's pause, resume, bulk,
    // and moving the runs pinned to another version (repin).
    expect(actions).toHaveLength(17);
    const unchanged = async () => {
      expect(await statusOf(sleeping.runId)).toBe('sleeping');
      expect(await statusOf(failed.runId)).toBe('failed');
      expect(await eventCount()).toBe(events);
      expect(await runCount()).toBe(runs);
    };

    for (const action of actions) {
      for (const method of ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']) {
        const res = await call(`${action}?_csrf=x&name=g4&payload=%7B%7D&workflow=g4-sleeper&input=%7B%7D`, { method });
        expect(res.status, `${method} ${action}`).toBe(405);
        expect(res.headers.get('allow')).toBe('POST');
      }
    }
    await unchanged();

    const { cookie, token, setCookie } = await csrfFor(`/runs/${sleeping.runId}`);
    const other = await csrfFor('/events');
    // Double-submit: the token lives in a cookie the page's own script cannot read, scoped to the viewer.
    expect(setCookie).toMatch(/^durable_flow_csrf=[A-Za-z0-9_-]{43}; Path=\/durable_flow; HttpOnly; SameSite=Strict$/);
    const form = (fields: Record<string, string>) =>
      new URLSearchParams({ name: 'g4-event', payload: '{}', workflow: 'g4-sleeper', input: '{}', ...fields }).toString();
    const attempts: { what: string; headers: Record<string, string>; body: string }[] = [
      { what: 'no token, no cookie', headers: {}, body: form({}) },
      { what: 'cookie, no token', headers: { Cookie: cookie }, body: form({}) },
      { what: 'token, no cookie', headers: {}, body: form({ _csrf: token }) },
      { what: 'token of another browser', headers: { Cookie: cookie }, body: form({ _csrf: other.token }) },
      { what: 'forged token', headers: { Cookie: cookie }, body: form({ _csrf: 'x'.repeat(43) }) },
      {
        what: 'forged cookie and token',
        headers: { Cookie: `durable_flow_csrf=${'y'.repeat(43)}` },
        body: form({ _csrf: 'y'.repeat(42) }),
      },
      { what: 'empty token', headers: { Cookie: 'durable_flow_csrf=' }, body: form({ _csrf: '' }) },
      { what: 'foreign Origin', headers: { Cookie: cookie, Origin: 'https://evil.example' }, body: form({ _csrf: token }) },
      { what: 'same host, other port', headers: { Cookie: cookie, Origin: 'http://127.0.0.1:1' }, body: form({ _csrf: token }) },
      { what: 'null Origin', headers: { Cookie: cookie, Origin: 'null' }, body: form({ _csrf: token }) },
      {
        what: 'foreign Referer',
        headers: { Cookie: cookie, Referer: 'https://evil.example/page' },
        body: form({ _csrf: token }),
      },
      { what: 'token in the query string', headers: { Cookie: cookie }, body: form({}) },
    ];
    for (const action of actions) {
      for (const attempt of attempts) {
        const query = attempt.what === 'token in the query string' ? `?_csrf=${token}` : '';
        for (const accept of ['text/html', 'application/json']) {
          const res = await call(`${action}${query}`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: accept, ...attempt.headers },
            body: attempt.body,
          });
          const what = `${attempt.what} → ${action} (${accept})`;
          expect(res.status, what).toBe(403);
          expect(await res.text(), what).toMatch(/CSRF token, or a request from another origin/);
        }
      }
    }
    await unchanged();

    // The same request with the token and from this origin goes through: it was the token that was refused.
    const ok = await call(`/runs/${sleeping.runId}/cancel`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookie, Origin: viewer.url },
      body: form({ _csrf: token }),
    });
    expect(ok.status).toBe(303);
    expect(await statusOf(sleeping.runId)).toBe('cancelled');

    // Behind a TLS-terminating proxy the cookie is Secure too.
    const app = express();
    app.set('trust proxy', true);
    app.use('/df', flow.router({ allowUnauthenticated: true }));
    const https = await request(app).get('/df/events').set('X-Forwarded-Proto', 'https');
    expect(https.headers['set-cookie']![0]).toMatch(
      /^durable_flow_csrf=[A-Za-z0-9_-]{43}; Path=\/df; HttpOnly; Secure; SameSite=Strict$/,
    );
  });
});

describe('cross-site scripting', () => {
  let failedRunId: string;
  let childRunId: string;
  let waitingRunId: string;

  beforeAll(async () => {
    const child = flow.workflow(`child ${HOSTILE[3]}${HOSTILE[4]}`, { queue: QUEUE }, async ({ input }: WorkflowContext) => ({
      child: ALL,
      input,
    }));
    const hostile = flow.workflow(`wf ${ALL}`, { queue: QUEUE }, async ({ step, log }: WorkflowContext) => {
      log.warn(ALL, { html: ALL });
      await step.run(`step ${HOSTILE[0]}`, () => ({ out: ALL, [ALL]: ALL }));
      await step.invoke(`invoke ${HOSTILE[1]}`, child, { from: ALL });
      await step.run(`fails ${HOSTILE[3]}${HOSTILE[4]}`, { retries: 0 }, () => {
        log.error(ALL, { html: ALL });
        throw new NonRetriableError(ALL);
      });
    });
    const run = await hostile.start({ html: ALL, [ALL]: [ALL] }, { runId: HOSTILE[2] });
    await expect(run.result()).rejects.toThrow(HOSTILE[0]);
    failedRunId = run.runId;
    childRunId = (await flow.getRun(failedRunId))!.childRunIds[0]!;
    const waiter = flow.workflow(`waiter ${HOSTILE[1]}`, async ({ step }: WorkflowContext) =>
      step.waitForEvent(`wait ${HOSTILE[3]}`, { event: ALL, match: { k: ALL } }),
    );
    waitingRunId = (await waiter.start({}, { runId: HOSTILE[3] })).runId;
    await eventually(async () => (await statusOf(waitingRunId)) === 'waiting');
    await flow.notify(ALL, { unmatched: ALL }, { id: `evt ${HOSTILE[0]}` });
  });

  const pages = () => [
    '/',
    `/?workflow=${encodeURIComponent(`wf ${ALL}`)}`,
    `/?q=${encodeURIComponent(HOSTILE[0]!)}`,
    '/?status=failed',
    '/?children=1',
    `/?parent=${encodeURIComponent(failedRunId)}`,
    `/runs/${encodeURIComponent(failedRunId)}`,
    `/runs/${encodeURIComponent(failedRunId)}?fragment=run-body`,
    `/runs/${encodeURIComponent(failedRunId)}/logs`,
    `/runs/${encodeURIComponent(childRunId)}`,
    `/runs/${encodeURIComponent(waitingRunId)}`,
    '/workflows',
    '/events',
    `/events?name=${encodeURIComponent(ALL)}`,
    '/?fragment=runs-list',
  ];

  it('G5: the served HTML escapes every stored hostile string, and every page has a CSP without unsafe-inline', async () => {
    for (const page of pages()) {
      const res = await call(page);
      const html = await res.text();
      expect(res.status, page).toBe(200);
      const csp = res.headers.get('content-security-policy')!;
      expect(csp, page).toContain("script-src 'self'");
      expect(csp, page).not.toContain('unsafe-inline');
      expect(csp, page).not.toContain('unsafe-eval');
      expect(res.headers.get('x-content-type-options'), page).toBe('nosniff');
      for (const raw of ['<img src=x', '<svg onload', '<script>alert', '"><svg', "'onmouseover"])
        expect(html, page).not.toContain(raw);
      expect(html, page).not.toMatch(/<script>(?!<\/script>)/);
    }
    const run = await (await call(`/runs/${encodeURIComponent(failedRunId)}`)).text();
    expect(run).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(run).toContain('&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(run).toContain('&#34;&gt;&lt;svg onload=alert(1)&gt;');
  });

  it('G5: in Chromium, hostile input, output, error, stack, log, step, workflow and queue names show as text on every page, open no dialog and inject nothing', async () => {
    const { page, dialogs, errors, context } = await openPage(browser, { httpCredentials: CREDENTIALS });
    try {
      for (const url of pages()) {
        const response = await page.goto(viewer.base + url);
        expect(response!.status(), url).toBe(200);
        expect(response!.headers()['content-security-policy'], url).not.toContain('unsafe-inline');
        await page.waitForLoadState('networkidle');
        expect(await domThreats(page), url).toEqual(safeDom);
      }
      await page.goto(`${viewer.base}/runs/${encodeURIComponent(failedRunId)}`);
      await page.locator('details').evaluateAll((all) => all.forEach((d) => ((d as HTMLDetailsElement).open = true)));
      const text = (await page.locator('main').textContent())!;
      // Input, step output, log line and data, error message and stack, step names: literal text.
      for (const s of HOSTILE) expect(text).toContain(s);
      expect(text.split(ALL).length - 1).toBeGreaterThanOrEqual(6);
      expect(await page.locator('h1').textContent()).toContain(`wf ${ALL}`);
      expect(await page.title()).toContain(HOSTILE[1]);
      expect(await page.locator('.cards').textContent()).toContain(QUEUE);
      expect(await page.locator('.error-box pre').first().textContent()).toContain(ALL);
      expect(await page.locator('.related').textContent()).toContain(`child ${HOSTILE[3]}${HOSTILE[4]}`);
      await page.goto(`${viewer.base}/workflows`);
      expect(await page.locator('main').textContent()).toContain(QUEUE);
      await page.goto(`${viewer.base}/events`);
      expect(await page.locator('main').textContent()).toContain(ALL);

      // The waiting run's page swaps in live fragments as the event arrives: still only text.
      // (Its run id has spaces: the page must still join its run's room. Once live and caught up, the
      // only way to learn of the event is the live change.)
      await page.goto(`${viewer.base}/runs/${encodeURIComponent(waitingRunId)}`);
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await page.locator('body[data-refreshed]').waitFor();
      expect(await page.locator('h1 .badge').textContent()).toBe('waiting');
      await flow.notify(ALL, { k: ALL, more: HOSTILE });
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 15_000 }).toBe('completed');
      expect(await page.locator('main').textContent()).toContain(HOSTILE[1]);
      expect(await domThreats(page)).toEqual(safeDom);

      expect(dialogs).toEqual([]);
      expect(errors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('G8: hostile paths and query strings are echoed as text (escaped in HTML, text/plain in errors) and run nothing in Chromium', async () => {
    const quoted = "x'onmouseover='alert(1)";
    const existing = flow.workflow('g8-run', async () => 'done');
    await (await existing.start({}, { runId: quoted })).result();
    const echoed = ['<script>alert(1)</script>', quoted, '"><svg onload=alert(1)>', 'javascript:alert(1)'];
    const urls: [string, number][] = [
      [`/runs/${quoted}`, 200],
      [`/runs/${encodeURIComponent(quoted)}`, 200],
      [`/runs/${quoted}x`, 404],
      [`/runs/${encodeURIComponent('<script>alert(1)</script>')}`, 404],
      [`/api/runs/${encodeURIComponent('<script>alert(1)</script>')}`, 404],
      [`/?status=${encodeURIComponent('<script>alert(1)</script>')}`, 400],
      [`/?before=${encodeURIComponent('"><svg onload=alert(1)>')}`, 400],
      [`/?${encodeURIComponent('<svg onload=alert(1)>')}=1`, 400],
      [`/?fragment=${encodeURIComponent('<script>alert(1)</script>')}`, 200],
      ...echoed.flatMap((s): [string, number][] => [
        [`/?q=${encodeURIComponent(s)}`, 200],
        [`/?workflow=${encodeURIComponent(s)}`, 200],
        [`/events?name=${encodeURIComponent(s)}`, 200],
      ]),
    ];
    const { page, dialogs, context } = await openPage(browser, { httpCredentials: CREDENTIALS });
    try {
      for (const [url, status] of urls) {
        const response = await page.goto(viewer.base + url);
        expect(response!.status(), url).toBe(status);
        const type = response!.headers()['content-type']!;
        expect(response!.headers()['x-content-type-options'], url).toBe('nosniff');
        if (status !== 200) expect(type, url).toMatch(url.includes('/api/') ? /^application\/json/ : /^text\/plain/);
        expect(await domThreats(page), url).toEqual(safeDom);
        // Hovering and clicking around must not run anything either.
        await page.mouse.move(10, 10);
        await page.mouse.move(400, 300, { steps: 5 });
        expect(await page.locator('script:not([src])').count(), url).toBe(0);
      }
      for (const s of echoed) {
        await page.goto(`${viewer.base}/?q=${encodeURIComponent(s)}`);
        expect(await page.locator('input[name="q"]').inputValue()).toBe(s);
        await page.goto(`${viewer.base}/events?name=${encodeURIComponent(s)}`);
        expect(await page.locator('form[role="search"] input[name="name"]').inputValue()).toBe(s);
        expect(await page.locator('main .empty').textContent()).toContain(s);
      }
      await page.goto(`${viewer.base}/runs/${encodeURIComponent(quoted)}`);
      expect(await page.locator('code.run-id').textContent()).toBe(quoted);
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
    // The raw HTML carries the echoes escaped, in text and in attributes alike.
    for (const s of echoed) {
      const html = await (await call(`/?q=${encodeURIComponent(s)}`)).text();
      if (/[<>"']/.test(s)) expect(html).not.toContain(s);
      expect(html).toContain(
        `value="${s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&#34;').replace(/'/g, '&#39;')}"`,
      );
    }
  });
});

describe('SQL injection', () => {
  it('G9: injection in filters, sort, order, limit and cursors is a 400 with a clear error, never SQL text, answered before a 4 s timeout; the data is intact', async () => {
    const runsBefore = (await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_runs'))
      .rows[0]!.n;
    const refused: [string, RegExp][] = [
      ["status=' OR 1=1--", /Invalid status: expected one of enqueued/],
      ["status=failed' OR '1'='1", /Invalid status/],
      ['status=failed&status=completed', /Invalid status/],
      ['sort=id;DROP TABLE runs', /Unknown query parameter "sort".*accepts status, workflow, q, tag, before, limit/],
      ['sort=created_at&order=asc', /Unknown query parameter "sort"/],
      ['order=asc,(select pg_sleep(5))', /Unknown query parameter "order"/],
      ['limit=-1', /Invalid limit: expected an integer from 1 to 500/],
      ['limit=1e9', /Invalid limit/],
      ['limit=abc', /Invalid limit/],
      ['limit=0', /Invalid limit/],
      ['limit=501', /Invalid limit/],
      ['limit=1e2', /Invalid limit/],
      ['limit=0x10', /Invalid limit/],
      ['limit=5;select pg_sleep(5)', /Invalid limit/],
      ['limit=5&limit=6', /Invalid limit/],
      ['before=x;DROP TABLE runs', /Invalid cursor/],
      ["before=2024-01-01T00:00:00.000Z_1' OR pg_sleep(5) IS NULL--", /Invalid cursor/],
      ['before=2024-02-30T00:00:00.000Z_1', /Invalid cursor/],
      ['before=0000-01-01T00:00:00.000Z_1', /Invalid cursor/],
      ['before=2024-01-01T00:00:00.000Z_9999999999999999999', /Invalid cursor/],
      ['workflow=%00', /Invalid workflow: it contains the character U\+0000/],
      ['q=%00', /Invalid search text/],
      [`q=${'x'.repeat(201)}`, /Invalid search text: expected one string of at most 200/],
      ["children=1' OR '1'='1", /Invalid children: expected 1/],
      ['children=1&children=1', /Invalid children/],
      ['parent=%00', /Invalid parent run id: it contains the character U\+0000/],
      [`parent=${'p'.repeat(256)}`, /Invalid parent run id: expected one string of at most 255/],
    ];
    for (const [query, message] of refused) {
      for (const [pagePath, json] of [
        ['/api/runs', true],
        ['/', false],
      ] as const) {
        const res = await call(`${pagePath}?${query}`);
        const body = await res.text();
        const what = `${pagePath}?${query}`;
        expect(res.status, what).toBe(400);
        expect(res.headers.get('content-type'), what).toMatch(json ? /^application\/json/ : /^text\/plain/);
        expect(json ? (JSON.parse(body) as { error: string }).error : body, what).toMatch(message);
        expect(body, what).not.toMatch(INTERNALS);
      }
    }
    const refusedEvents: [string, RegExp][] = [
      ['name=%00', /Invalid event name/],
      ['before=9999999999999999999', /Invalid cursor/],
      ['before=1;select pg_sleep(5)', /Invalid cursor/],
      ['before=-1', /Invalid cursor/],
      ['sort=id;DROP TABLE durable_flow_workflow_events', /Unknown query parameter "sort"/],
      ['limit=5', /Unknown query parameter "limit".*accepts name, before/],
    ];
    for (const [query, message] of refusedEvents) {
      for (const [pagePath, json] of [
        ['/api/events', true],
        ['/events', false],
      ] as const) {
        const res = await call(`${pagePath}?${query}`);
        const body = await res.text();
        const what = `${pagePath}?${query}`;
        expect(res.status, what).toBe(400);
        expect(json ? (JSON.parse(body) as { error: string }).error : body, what).toMatch(message);
        expect(body, what).not.toMatch(INTERNALS);
      }
    }
    // Free text is bound, never spliced: quotes, LIKE wildcards and casts are just text to search for.
    for (const q of ["' OR pg_sleep(5) IS NULL--", "%' OR '1'='1", "')::jsonb @> '{}'--", '"}]\'; SELECT pg_sleep(5);--', '_%']) {
      for (const pagePath of ['/api/runs', `/api/events`]) {
        const param = pagePath === '/api/runs' ? 'q' : 'name';
        const res = await call(`${pagePath}?${param}=${encodeURIComponent(q)}`);
        expect(res.status, `${pagePath} ${q}`).toBe(200);
        const body = (await res.json()) as { runs?: unknown[]; events?: unknown[] };
        expect(body.runs ?? body.events, `${pagePath} ${q}`).toEqual([]);
      }
      for (const filter of ['workflow', 'parent']) {
        const res = await call(`/api/runs?${filter}=${encodeURIComponent(q)}`);
        expect(((await res.json()) as { runs: unknown[] }).runs, `${filter} ${q}`).toEqual([]);
      }
    }
    const { rows } = await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_runs');
    expect(rows[0]!.n).toBe(runsBefore);
    expect((await call('/api/runs?limit=500')).status).toBe(200);
  });
});
