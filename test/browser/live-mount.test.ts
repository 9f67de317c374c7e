/**
 * Issue #11 point 6: live updates under any mount. A viewer page connects under its own mount
 * (`<mount>/socket.io`), whichever page is opened first, behind the mount's own access rules; a page
 * that cannot be live says why.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Browser, Page } from 'playwright-core';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const CREDENTIALS = { username: 'ops', password: 'mount-secret' };
const basic = `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}`;

let ctx: TestContext;
let flow: DurableFlow;
let browser: Browser;
const servers: http.Server[] = [];

/** An app on a free port; `live` is the flow it calls attachLive(server) of, if any. */
async function serve(app: express.Express, live: DurableFlow | null): Promise<string> {
  const server = http.createServer(app);
  live?.attachLive(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

let url: string;
beforeAll(async () => {
  ctx = await setupDatabase('livemount');
  flow = ctx.flow();
  await flow.worker({ pollInterval: 100 }).start();
  const app = express();
  // The same router at two mounts, as a demanding user might: each mount's pages go live under it.
  app.use(['/admin/flows', '/ops/flows'], flow.router({ basicAuth: CREDENTIALS }));
  url = await serve(app, flow);
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await ctx.cleanup();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

const indicator = (page: Page) => page.locator('[data-live-indicator]').textContent();

/** Opens `path` first in a fresh browser (credentials answer the mount's challenge), waits for live. */
async function openLive(path: string) {
  const opened = await openPage(browser, { httpCredentials: CREDENTIALS });
  const sockets: string[] = [];
  opened.page.on('request', (request) => {
    if (request.url().includes('socket.io/?')) sockets.push(new URL(request.url()).pathname);
  });
  // Changes that arrived over a WebSocket (the upgrade after polling), by its path.
  const pushed: string[] = [];
  const upgraded: string[] = [];
  opened.page.on('websocket', (ws) => {
    sockets.push(new URL(ws.url()).pathname);
    ws.on('framereceived', (frame) => {
      if (String(frame.payload).includes('"change"')) pushed.push(new URL(ws.url()).pathname);
    });
    // engine.io's upgrade packet: from here on, messages come over the WebSocket.
    ws.on('framesent', (frame) => {
      if (frame.payload === '5') upgraded.push(new URL(ws.url()).pathname);
    });
  });
  await opened.page.goto(`${url}${path}`);
  await expect.poll(() => indicator(opened.page), { timeout: 10_000 }).toBe('live');
  await opened.page.evaluate(() => {
    (window as unknown as { marker: number }).marker = 7;
  });
  return { ...opened, sockets, pushed, upgraded };
}
const notReloaded = async (page: Page) => expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(7);

describe('live updates under /admin/flows with basicAuth', () => {
  it('a run page opened first goes live under its mount and shows a step completing without a reload', async () => {
    const approval = flow.workflow('mount-approval', async ({ step }: WorkflowContext<{ id: string }>) => {
      const decision = await step.waitForEvent<{ ok: boolean }>('mount-decision', { match: { id: 'm1' } });
      await step.run('apply', () => decision.ok);
      return decision;
    });
    const run = await approval.start({ id: 'm1' });
    await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
    const { page, context, sockets, pushed, upgraded, dialogs } = await openLive(`/admin/flows/runs/${run.runId}`);
    try {
      expect(await page.locator('body').getAttribute('data-socket-path')).toBe('/admin/flows/socket.io');
      expect(await page.locator('h1 .badge').textContent()).toBe('waiting');
      await expect.poll(() => upgraded, { timeout: 10_000 }).toContain('/admin/flows/socket.io/');
      await flow.notify('mount-decision', { id: 'm1', ok: true });
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('completed');
      await page.locator('[data-step="apply"]').waitFor();
      await notReloaded(page);
      expect(sockets.length).toBeGreaterThan(0);
      expect(new Set(sockets)).toEqual(new Set(['/admin/flows/socket.io/']));
      // The upgrade under the mount went through: the change came over the WebSocket.
      await expect.poll(() => pushed, { timeout: 10_000 }).toContain('/admin/flows/socket.io/');
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the events page and the workflows page opened first go live, at either mount', async () => {
    const events = await openLive('/ops/flows/events');
    try {
      expect(await events.page.locator('body').getAttribute('data-socket-path')).toBe('/ops/flows/socket.io');
      const { id } = await flow.notify('mount-ping', { n: 1 });
      await events.page.locator(`tr[data-event-id="${id}"]`).waitFor({ timeout: 10_000 });
      await notReloaded(events.page);
      expect(new Set(events.sockets)).toEqual(new Set(['/ops/flows/socket.io/']));
    } finally {
      await events.context.close();
    }
    const noop = flow.workflow('mount-noop', async () => 'done');
    const workflows = await openLive('/admin/flows/workflows');
    try {
      await noop.start({});
      await workflows.page.locator('tr[data-workflow="mount-noop"]').waitFor({ timeout: 10_000 });
      await notReloaded(workflows.page);
    } finally {
      await workflows.context.close();
    }
  });

  it('the mount’s socket path keeps the router’s access rules, over polling and WebSocket', async () => {
    // The page must have been served at the mount for its WebSocket upgrades to be routed.
    expect((await fetch(`${url}/admin/flows/`, { headers: { Authorization: basic } })).status).toBe(200);
    const polling = await fetch(`${url}/admin/flows/socket.io/?EIO=4&transport=polling`);
    expect(polling.status).toBe(401);
    expect(polling.headers.get('www-authenticate')).toMatch(/^Basic /);
    const connect = (transport: 'polling' | 'websocket', headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const socket = ioClient(`${url}/durable_flow`, { path: '/admin/flows/socket.io', transports: [transport], extraHeaders: headers, query: { viewer: '1' }, reconnection: false });
        socket.on('connect', () => {
          socket.close();
          resolve('connected');
        });
        socket.on('connect_error', (error) => {
          socket.close();
          resolve(error.message);
        });
      });
    for (const transport of ['polling', 'websocket'] as const) {
      expect(await connect(transport, {}), transport).not.toBe('connected');
      expect(await connect(transport, { Authorization: basic, Origin: 'https://evil.example' }), transport).not.toBe('connected');
      expect(await connect(transport, { Authorization: basic }), transport).toBe('connected');
    }
  });
});

describe('a page that cannot be live says why', () => {
  it('names the fix when the app never called flow.attachLive(server)', async () => {
    // Another flow: live updates belong to a flow, and this one never attaches them.
    const unattached = ctx.flow();
    const app = express();
    app.use('/admin/flows', unattached.router({ basicAuth: CREDENTIALS }));
    const bare = await serve(app, null);
    const { page, context } = await openPage(browser, { httpCredentials: CREDENTIALS });
    try {
      await page.goto(`${bare}/admin/flows/`);
      expect(await indicator(page)).toBe('not live: call flow.attachLive(server)');
      expect(await page.locator('[data-live-indicator]').getAttribute('data-state')).toBe('off');
      expect(await page.locator('script[src$="socket.io.min.js"]').count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('says the live channel refused it, with the refusal’s own words', async () => {
    const strict = ctx.flow();
    const app = express();
    app.use('/admin/flows', strict.router({ basicAuth: CREDENTIALS }));
    const server = http.createServer(app);
    // attachLive's own rules apply to every socket: the viewer's credentials are not enough here.
    strict.attachLive(server, { authorize: () => false });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const { page, context } = await openPage(browser, { httpCredentials: CREDENTIALS });
    try {
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/flows/`);
      await expect.poll(() => indicator(page), { timeout: 10_000 }).toBe('not live: refused');
      expect(await page.locator('[data-live-indicator]').getAttribute('title')).toMatch(/Forbidden/);
    } finally {
      await context.close();
    }
  });

  it('says it was disconnected when its access is revoked while it is open', async () => {
    let allowed = true;
    const revoking = ctx.flow();
    const app = express();
    app.use('/admin/flows', revoking.router({ authorize: () => allowed }));
    const server = http.createServer(app);
    revoking.attachLive(server, { recheckMs: 100 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const { page, context } = await openPage(browser);
    try {
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/flows/events`);
      await expect.poll(() => indicator(page), { timeout: 10_000 }).toBe('live');
      allowed = false;
      await expect.poll(() => indicator(page), { timeout: 10_000 }).toBe('not live: disconnected');
      expect(await page.locator('[data-live-indicator]').getAttribute('title')).toMatch(/ended the live connection/);
    } finally {
      await context.close();
    }
  });
});
