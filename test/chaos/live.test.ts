/**
 * The live channel under attack (reliability.md §3 G2, G3; issue #10 defect 9): each viewer mount's
 * own access rules for the sockets of its pages, whatever router was created last; the engine.io
 * handshake refused before a session exists; revoked credentials cut open sockets; rooms and
 * namespaces a client may not use.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Browser } from 'playwright-core';
import { Server } from 'socket.io';
import { Manager, io as ioClient } from 'socket.io-client';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, LiveHandle, Workflow } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const OPS = { username: 'ops', password: 'correct horse battery staple' };
const basic = (password = OPS.password) => `Basic ${Buffer.from(`${OPS.username}:${password}`).toString('base64')}`;
const TEAM_TOKENS = new Set(['team-token-1']);
const SOCKET_PATH = '/durable_flow/socket.io';

let ctx: TestContext;
let flow: DurableFlow;
let noop: Workflow;
let server: http.Server;
let live: LiveHandle;
let url: string;
let browser: Browser;
const sockets: Socket[] = [];

beforeAll(async () => {
  ctx = await setupDatabase('livechaos');
  flow = ctx.flow();
  noop = flow.workflow('live-noop', async () => 'done');
  const app = express();
  app.get('/favicon.ico', (_req, res) => res.status(204).end());
  app.use('/ops', flow.router({ basicAuth: OPS, title: 'ops' }));
  app.use('/team', flow.router({ authorize: (req) => TEAM_TOKENS.has(String(req.headers['x-team-token'])), title: 'team' }));
  // Created last, with no viewer access: it must not decide who may follow the other mounts live.
  app.use('/hooks', flow.router({ eventSecret: 'whsec_live_0123456789abcdef' }));
  server = http.createServer(app);
  live = flow.attachLive(server, { recheckMs: 200 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  for (const socket of sockets) socket.close();
  await browser?.close();
  await live?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await ctx.cleanup();
});

/** The viewer id a mount's page hands its socket (the page's `data-socket-viewer`). */
async function viewerOf(mount: string, headers: Record<string, string>): Promise<string> {
  const page = await fetch(`${url}${mount}/`, { headers });
  expect(page.status).toBe(200);
  const id = /data-socket-viewer="([^"]*)"/.exec(await page.text())?.[1];
  expect(id, `${mount}'s page names its viewer for the socket`).toMatch(/^\S+$/);
  return id!;
}

interface Connection {
  socket: Socket;
  /** `'connected'`, or the message of the connect_error. */
  outcome: string;
}

function connect(options: { headers?: Record<string, string>; viewer?: string; namespace?: string; transport?: 'polling' | 'websocket'; target?: string } = {}) {
  return new Promise<Connection>((resolve) => {
    const socket = ioClient(`${options.target ?? url}${options.namespace ?? '/durable_flow'}`, {
      path: SOCKET_PATH,
      transports: [options.transport ?? 'polling'],
      extraHeaders: options.headers ?? {},
      query: options.viewer === undefined ? {} : { viewer: options.viewer },
      reconnection: false,
      forceNew: true,
    });
    sockets.push(socket);
    socket.on('connect', () => resolve({ socket, outcome: 'connected' }));
    socket.on('connect_error', (error) => resolve({ socket, outcome: error.message || 'connect_error' }));
  });
}

/** The engine.io polling handshake, as raw HTTP: a session id means the server accepted the client. */
async function handshake(headers: Record<string, string>, query = '') {
  const res = await fetch(`${url}${SOCKET_PATH}/?EIO=4&transport=polling${query}`, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const subscribe = (socket: Socket, room: unknown) => socket.timeout(5000).emitWithAck('subscribe', room) as Promise<{ ok?: true; error?: string }>;

describe('defect 9: each viewer mount applies its own rules to its live sockets', () => {
  it('pages of two mounts with different auth both go live, though an ingest-only router was created last', async () => {
    const mounts = [
      { mount: '/ops', context: { httpCredentials: OPS } },
      { mount: '/team', context: { extraHTTPHeaders: { 'X-Team-Token': 'team-token-1' } } },
    ];
    for (const { mount, context: options } of mounts) {
      const { context, page, errors } = await openPage(browser, options);
      try {
        await page.goto(`${url}${mount}/`);
        await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 15_000 }).toBe('live');
        // Live, and told of a run started after it loaded: the list shows it without a reload.
        const run = await noop.start({});
        await expect.poll(() => page.locator(`tr[data-run-id="${run.runId}"]`).count(), { timeout: 15_000 }).toBe(1);
        expect(errors).toEqual([]);
      } finally {
        await context.close();
      }
    }
  });

  it('a socket is held to the rules of the viewer it names, not to any other mount it could pass', async () => {
    const ops = await viewerOf('/ops', { Authorization: basic() });
    const team = await viewerOf('/team', { 'X-Team-Token': 'team-token-1' });
    expect(ops).not.toBe(team);
    expect((await connect({ headers: { Authorization: basic() }, viewer: ops })).outcome).toBe('connected');
    expect((await connect({ headers: { 'X-Team-Token': 'team-token-1' }, viewer: team })).outcome).toBe('connected');
    expect((await connect({ headers: { Authorization: basic() }, viewer: team })).outcome).not.toBe('connected');
    expect((await connect({ headers: { 'X-Team-Token': 'team-token-1' }, viewer: ops })).outcome).not.toBe('connected');
    // With two viewers, a socket that names none (or one that does not exist) gets neither's rules.
    expect((await connect({ headers: { Authorization: basic() } })).outcome).not.toBe('connected');
    expect((await connect({ headers: { Authorization: basic() }, viewer: 'no-such-viewer' })).outcome).not.toBe('connected');
  });
});

describe('G2: the socket.io handshake', () => {
  it('an engine.io handshake without credentials, or from another origin, gets an error status and no session id', async () => {
    const ops = await viewerOf('/ops', { Authorization: basic() });
    const refusals = [
      await handshake({}),
      await handshake({}, `&viewer=${ops}`),
      await handshake({ Authorization: basic('wrong password') }, `&viewer=${ops}`),
      await handshake({ Authorization: basic(), Origin: 'https://evil.example' }, `&viewer=${ops}`),
      await handshake({ Authorization: basic(), Referer: 'https://evil.example/page' }, `&viewer=${ops}`),
      await handshake({ Authorization: basic() }, '&viewer=no-such-viewer'),
    ];
    // Basic credentials missing or wrong: a 401 challenge (a browser answers it with the mount's credentials).
    expect(refusals.map((r) => r.status)).toEqual([403, 401, 401, 403, 403, 403]);
    for (const refusal of refusals) {
      expect(refusal.text).not.toMatch(/"sid"/);
      expect(JSON.parse(refusal.text).message).toMatch(/\S/);
    }
    expect(refusals[1]!.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect(JSON.parse(refusals[0]!.text).message).toMatch(/2 viewer routers.*`viewer`/);
    expect(JSON.parse(refusals[3]!.text).message).toMatch(/origin/i);
    expect(JSON.parse(refusals[5]!.text).message).toMatch(/no viewer router "no-such-viewer"/);
    // The control: the same handshake with credentials, from the viewer's own origin, opens a session.
    const accepted = await handshake({ Authorization: basic(), Origin: url }, `&viewer=${ops}`);
    expect(accepted.status).toBe(200);
    expect(accepted.text).toMatch(/"sid"/);
  });

  it('socket.io clients without credentials or from another origin get connect_error, over polling and WebSocket', async () => {
    const ops = await viewerOf('/ops', { Authorization: basic() });
    for (const transport of ['polling', 'websocket'] as const) {
      expect((await connect({ transport, viewer: ops })).outcome).not.toBe('connected');
      expect((await connect({ transport, viewer: ops, headers: { Authorization: basic(), Origin: 'https://evil.example' } })).outcome).not.toBe('connected');
      expect((await connect({ transport, viewer: ops, headers: { Authorization: basic(), Origin: url } })).outcome).toBe('connected');
    }
  });

  it('revoked credentials disconnect open sockets at the next recheck: authorize turning false, a changed basic password', async () => {
    const team = await viewerOf('/team', { 'X-Team-Token': 'team-token-1' });
    const ops = await viewerOf('/ops', { Authorization: basic() });
    const teamSocket = await connect({ headers: { 'X-Team-Token': 'team-token-1' }, viewer: team });
    const opsSocket = await connect({ headers: { Authorization: basic() }, viewer: ops });
    expect([teamSocket.outcome, opsSocket.outcome]).toEqual(['connected', 'connected']);
    const reasons: string[] = [];
    teamSocket.socket.on('disconnect', (reason) => reasons.push(`team: ${reason}`));
    opsSocket.socket.on('disconnect', (reason) => reasons.push(`ops: ${reason}`));
    // A few rechecks pass while access holds: nobody is cut off for nothing.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(reasons).toEqual([]);

    TEAM_TOKENS.delete('team-token-1');
    await eventually(() => reasons.includes('team: io server disconnect'), 15_000);
    expect(opsSocket.socket.connected).toBe(true);
    expect((await connect({ headers: { 'X-Team-Token': 'team-token-1' }, viewer: team })).outcome).not.toBe('connected');

    const oldPassword = OPS.password;
    OPS.password = 'a new password for the ops viewer';
    try {
      await eventually(() => reasons.includes('ops: io server disconnect'), 15_000);
      expect((await connect({ headers: { Authorization: basic(oldPassword) }, viewer: ops })).outcome).not.toBe('connected');
      expect((await connect({ headers: { Authorization: basic() }, viewer: ops })).outcome).toBe('connected');
    } finally {
      OPS.password = oldPassword;
      TEAM_TOKENS.add('team-token-1');
    }
  });
});

describe('G3: rooms and namespaces', () => {
  it('a connected socket joins only the viewer rooms, a bounded number of them, and hears only what they carry', async () => {
    const ops = await viewerOf('/ops', { Authorization: basic() });
    const { socket, outcome } = await connect({ headers: { Authorization: basic() }, viewer: ops });
    expect(outcome).toBe('connected');
    const heard: { type: string; runId: string | null }[] = [];
    socket.on('change', (message: { type: string; runId: string | null }) => heard.push(message));
    for (const bad of ['secret', 'runs ', ' events', 'run:', `run:${'x'.repeat(256)}`, 'RUNS', 42, null, { room: 'runs' }, ['runs'], socket.id]) {
      expect((await subscribe(socket, bad)).error, `room ${JSON.stringify(bad)}`).toMatch(/room/i);
    }
    const mine = await noop.start({}, { runId: 'g3 mine' });
    expect(await subscribe(socket, 'run:g3 mine')).toEqual({ ok: true });
    expect(await subscribe(socket, 'events')).toEqual({ ok: true });
    const server = live.namespace.sockets.get(socket.id!)!;
    expect([...server.rooms].sort()).toEqual([socket.id, 'events', 'run:g3 mine'].sort());

    const other = await noop.start({}, { runId: 'g3 other' });
    await flow.notify('g3-event', {});
    await eventually(() => heard.some((m) => m.type === 'workflow_event.created'), 15_000);
    await flow.cancel(mine.runId);
    await eventually(() => heard.some((m) => m.runId === mine.runId && m.type === 'workflow_run.updated'), 15_000);
    // Neither the other run nor the run list reached a socket that did not join them.
    expect(heard.filter((m) => m.runId === other.runId)).toEqual([]);
    expect(heard.every((m) => m.runId === mine.runId || m.type === 'workflow_event.created')).toBe(true);
    // Messages name a change and a run, nothing of its data.
    expect(heard.every((m) => Object.keys(m).sort().join() === 'runId,type')).toBe(true);

    // A socket cannot make the server hold rooms without end.
    const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => subscribe(socket, `run:flood ${i}`)));
    expect(answers.filter((a) => a.ok).length).toBeLessThan(120);
    expect(answers.find((a) => a.error)?.error).toMatch(/at most \d+ rooms/);
    expect(server.rooms.size).toBeLessThanOrEqual(101);
  });

  it('other namespaces of durable-flow’s socket.io server refuse connections', async () => {
    const ops = await viewerOf('/ops', { Authorization: basic() });
    expect((await connect({ headers: { Authorization: basic() }, viewer: ops, namespace: '/' })).outcome).not.toBe('connected');
    expect((await connect({ headers: { Authorization: basic() }, viewer: ops, namespace: '/admin' })).outcome).toMatch(/Invalid namespace/);
  });

  it('on the app’s own socket.io server, attachLive’s own rules apply, and nothing is heard before the namespace admits a socket', async () => {
    const other = ctx.flow();
    const app = express();
    app.use('/open', other.router({ allowUnauthenticated: true }));
    const own = http.createServer(app);
    const io = new Server(own, { path: SOCKET_PATH });
    // Overrides the open router: only requests with this header, and only after a slow check.
    const handle = other.attachLive(io, {
      authorize: async (req) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return req.headers['x-live'] === 'yes';
      },
    });
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    const target = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    try {
      expect((await connect({ target })).outcome).toMatch(/authorize/);
      expect((await connect({ target, headers: { 'X-Live': 'yes' } })).outcome).toBe('connected');

      // Raw socket.io packets (engine.io adds its own `4`): CONNECT (`0`) to the namespace, then an
      // EVENT (`2`) subscribing, sent at once or only after the namespace answered. CONNECT_ERROR is `4`.
      const raw = async (headers: Record<string, string>, early: boolean) => {
        const manager = new Manager(target, { path: SOCKET_PATH, transports: ['websocket'], extraHeaders: headers, reconnection: false, autoConnect: false });
        const messages: string[] = [];
        let closed = false;
        await new Promise<void>((resolve, reject) => manager.open((error) => (error ? reject(error) : resolve())));
        manager.engine.on('message', (data) => messages.push(String(data)));
        manager.engine.on('close', () => (closed = true));
        manager.engine.write('0/durable_flow,');
        if (early) manager.engine.write('2/durable_flow,["subscribe","events"]');
        return { manager, messages, closed: () => closed };
      };
      const refusedEarly = await raw({}, true);
      const admissibleEarly = await raw({ 'X-Live': 'yes' }, true);
      const refused = await raw({}, false);
      const admitted = await raw({ 'X-Live': 'yes' }, false);
      await eventually(() => refused.messages.some((m) => m.startsWith('4/durable_flow,')) && admitted.messages.some((m) => m.startsWith('0/durable_flow,')), 10_000);
      // Talking before the namespace admitted it drops a client's connection, credentials or not.
      await eventually(() => refusedEarly.closed() && admissibleEarly.closed(), 10_000);
      expect(refusedEarly.messages.filter((m) => m.startsWith('0/'))).toEqual([]);
      expect(admissibleEarly.messages.filter((m) => m.startsWith('0/'))).toEqual([]);
      // Admitted, a subscribe joins; only the two admitted sockets are in the namespace.
      admitted.manager.engine.write('2/durable_flow,["subscribe","events"]');
      await eventually(() => [...handle.namespace.sockets.values()].some((s) => s.rooms.has('events')), 10_000);
      expect(handle.namespace.sockets.size).toBe(2);
      await other.notify('g3-raw', {});
      await eventually(() => admitted.messages.some((m) => m.includes('"change"')), 15_000);
      for (const client of [refusedEarly, admissibleEarly, refused]) expect(client.messages.filter((m) => m.includes('"change"'))).toEqual([]);
      for (const client of [refusedEarly, admissibleEarly, refused, admitted]) client.manager.engine.close();
    } finally {
      await handle.close();
      own.closeAllConnections();
      await new Promise((resolve) => io.close(resolve));
    }
  });
});
