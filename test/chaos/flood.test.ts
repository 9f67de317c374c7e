/**
 * Floods and slow clients (reliability.md §3 F12): a burst of signed ingest requests beyond the
 * router's `ingestRateLimit` gets 429s with `Retry-After`, never a 500, and stores nothing for them;
 * requests without a valid signature never spend the senders' budget; the demo server's timeouts close
 * a slowloris client that trickles its headers, or its body, a byte a second.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNATURE_HEADER, signatureHeader } from '../../lib/index.js';
import type { DurableFlow } from '../../lib/index.js';
import { createApp } from '../../example-app/app.js';
import { createDemoServer } from '../../example-app/http-server.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const SECRET = 'whsec_flood_0123456789abcdef';

let ctx: TestContext;
let flow: DurableFlow;
let server: http.Server;
let url: string;

const listen = async (target: http.Server) => {
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  return (target.address() as AddressInfo).port;
};
const close = async (target: http.Server) => {
  target.closeAllConnections();
  await new Promise((resolve) => target.close(resolve));
};

beforeAll(async () => {
  ctx = await setupDatabase('floodchaos');
  flow = ctx.flow();
  const app = express();
  // Three mounts, three budgets: the limit belongs to its mount.
  app.use('/burst', flow.router({ eventSecret: SECRET, ingestRateLimit: { limit: 100, period: '1 day' } }));
  app.use('/budget', flow.router({ eventSecret: SECRET, ingestRateLimit: { limit: 5, period: '1 day' } }));
  app.use('/steady', flow.router({ eventSecret: SECRET, ingestRateLimit: { limit: 4, period: '1 second' } }));
  server = createDemoServer(app);
  url = `http://127.0.0.1:${await listen(server)}`;
});
afterAll(async () => {
  if (server) await close(server);
  await ctx.cleanup();
});

interface Answer {
  id: string;
  status: number;
  retryAfter: string | null;
  error: string | undefined;
}

/** One event per request, signed (or signed with the wrong secret), with an id of its own. */
async function deliver(mount: string, id: string, secret = SECRET): Promise<Answer> {
  const body = JSON.stringify({ name: 'flood', payload: { id }, id });
  const res = await fetch(`${url}${mount}/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', [SIGNATURE_HEADER]: signatureHeader(secret, body) },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  const json = (await res.json()) as { error?: string };
  return { id, status: res.status, retryAfter: res.headers.get('retry-after'), error: json.error };
}

async function storedIds(prefix: string): Promise<string[]> {
  const { rows } = await flow.pool.query<{ event_id: string }>(
    `SELECT event_id FROM durable_flow_workflow_events WHERE name = 'flood' AND event_id LIKE $1 ORDER BY event_id`,
    [`${prefix}%`],
  );
  return rows.map((r) => r.event_id);
}

const count = (answers: Answer[], status: number) => answers.filter((a) => a.status === status).length;

describe('F12: ingest rate limit', () => {
  it('a burst of 2,000 signed requests: 202 up to the limit, then 429 with Retry-After, never a 500; nothing stored for the refused', async () => {
    const total = 2000;
    const answers: Answer[] = [];
    let next = 0;
    // 50 clients sending back to back, against the real listening server.
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < total) answers.push(await deliver('/burst', `burst-${String(next++).padStart(4, '0')}`));
      }),
    );
    expect(answers).toHaveLength(total);
    expect({ accepted: count(answers, 202), refused: count(answers, 429), other: total - count(answers, 202) - count(answers, 429) }).toEqual({
      accepted: 100,
      refused: 1900,
      other: 0,
    });
    for (const refusal of answers.filter((a) => a.status === 429)) {
      expect(Number(refusal.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(refusal.retryAfter).toMatch(/^\d+$/);
      expect(refusal.error).toMatch(/accepts 100 per 1 day \(the router's `ingestRateLimit`, per process\); nothing was stored, retry after \d+ s/);
    }
    const accepted = answers.filter((a) => a.status === 202).map((a) => a.id).sort();
    expect(await storedIds('burst-')).toEqual(accepted);
  });

  it('requests without a valid signature are refused with 401 and spend none of the budget', async () => {
    const forged = await Promise.all(Array.from({ length: 50 }, (_, i) => deliver('/budget', `forged-${i}`, 'whsec_not_the_secret_000000')));
    expect(forged.map((a) => a.status)).toEqual(Array(50).fill(401));
    const signed = [];
    for (let i = 0; i < 6; i++) signed.push(await deliver('/budget', `budget-${i}`));
    expect(signed.map((a) => a.status)).toEqual([202, 202, 202, 202, 202, 429]);
    expect(await storedIds('forged-')).toEqual([]);
    expect(await storedIds('budget-')).toEqual(['budget-0', 'budget-1', 'budget-2', 'budget-3', 'budget-4']);
    // Another mount's budget is its own: /burst spent all of its, /steady none.
    expect((await deliver('/steady', 'steady-first')).status).toBe(202);
  });

  it('the bucket refills at the steady rate: a refused sender that waits gets in again', async () => {
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await deliver('/steady', `steady-${i}`));
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.retryAfter).toBe('1');
    expect(count(answers, 202)).toBeLessThan(8);
    let attempt = 0;
    await eventually(async () => (await deliver('/steady', `steady-later-${attempt++}`)).status === 202, 15_000, 250);
  });

  it('the option is validated like the others, naming the value and what was expected', () => {
    const router = (ingestRateLimit: unknown) => () => flow.router({ eventSecret: SECRET, ingestRateLimit: ingestRateLimit as never });
    expect(router(100)).toThrow("Expected `ingestRateLimit` to be an object { limit, period } such as { limit: 100, period: '1 second' }, got `100` (number)");
    expect(router({ limit: 0, period: '1 second' })).toThrow('Expected `ingestRateLimit.limit` to be an integer from 1 to 1000000, got `0` (number)');
    expect(router({ limit: 1.5, period: '1 second' })).toThrow(/`ingestRateLimit.limit`.*got `1.5`/);
    expect(router({ limit: 10 })).toThrow(/Expected `ingestRateLimit.period` to be a positive duration/);
    expect(router({ limit: 10, period: 'soon' })).toThrow(/`ingestRateLimit.period`.*got `"soon"` \(string\)/);
    expect(router({ limit: 10, period: -1000 })).toThrow(/`ingestRateLimit.period`/);
  });
});

/**
 * Over a raw socket, sends `prefix` at once, then `text` one byte a second, and reports how much of
 * `text` went out before the server closed the connection (or gives up after 30 s, still open).
 */
function trickle(port: number, prefix: string, text: string) {
  return new Promise<{ sent: number; response: string; closedByServer: boolean }>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(prefix));
    let sent = 0;
    let response = '';
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ sent, response, closedByServer });
    };
    const timer = setInterval(() => {
      if (sent < text.length) socket.write(text[sent++]!);
    }, 1000);
    const giveUp = setTimeout(() => finish(false), 30_000);
    socket.on('data', (chunk) => (response += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
  });
}

describe('F12: slow clients', () => {
  it('the demo server closes a client trickling its headers or its body a byte a second, and serves others meanwhile', async () => {
    const demoFlow = ctx.flow();
    const { app } = createApp(demoFlow);
    const demo = createDemoServer(app, { headersTimeout: 2000, requestTimeout: 4000, connectionsCheckingInterval: 250 });
    const port = await listen(demo);
    try {
      const body = JSON.stringify({ name: 'slow', payload: { padding: 'x'.repeat(40) } });
      const head = `POST /durable_flow/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
      const [slowHeaders, slowBody] = await Promise.all([
        trickle(port, '', head + body),
        trickle(port, head, body),
        // Meanwhile a normal visitor is served.
        fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(20_000) }).then((res) => expect(res.status).toBe(200)),
      ]);
      expect(slowHeaders.closedByServer).toBe(true);
      expect(slowHeaders.sent).toBeLessThan(head.length);
      expect(slowHeaders.response).toMatch(/^HTTP\/1\.1 408/);
      expect(slowBody.closedByServer).toBe(true);
      expect(slowBody.sent).toBeLessThan(body.length);
      expect(slowBody.response).toMatch(/^HTTP\/1\.1 408/);
      // Nothing half-received was stored.
      const { rows } = await demoFlow.pool.query(`SELECT 1 FROM durable_flow_workflow_events WHERE name = 'slow'`);
      expect(rows).toEqual([]);
    } finally {
      await close(demo);
    }
  });
});
