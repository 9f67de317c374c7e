/**
 * Signed event ingest under hostile input (reliability.md §3 F2–F11, F13): forged, replayed and
 * stale signatures, re-serialised bodies, key rotation, oversized, compressed, malformed and poisoned
 * bodies, prototype-pollution keys and concurrent duplicate deliveries. Each bad request gets a 4xx
 * JSON error that names the problem and stores nothing, never a 500; what is accepted is stored once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import express from 'express';
import { io as ioClient } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signatureHeader, verifySignature } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { rawPost } from '../helpers/viewer.js';
import type { RawAnswer } from '../helpers/viewer.js';

const SECRET = 'whsec_new_0123456789abcdef';
const OLD_SECRET = 'whsec_old_0123456789abcdef';
/** Anything that looks like a stack trace, a file path or database internals. */
const INTERNALS = /\n\s+at |node_modules|\/work\/|\.ts:\d|relation "|syntax error|durable_flow_/i;

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let twice: { start(input: { event: string }): Promise<{ runId: string }> };
let server: http.Server;
let base: string;
let closeLive: () => Promise<void>;
const loggedErrors: string[] = [];

beforeAll(async () => {
  ctx = await setupDatabase('ingest');
  flow = ctx.flow({
    logger: { warn: () => undefined, error: (message, data) => loggedErrors.push(`${message} ${JSON.stringify(data ?? {})}`) },
  });
  harness = createTestHarness(flow);
  twice = flow.workflow('ingest-twice', async ({ input, step }: WorkflowContext<{ event: string }>) => {
    const first = await step.waitForEvent('first', { event: input.event });
    const second = await step.waitForEvent('second', { event: input.event });
    return { first, second };
  });
  const app = express();
  const viewer = { allowUnauthenticated: true } as const;
  app.use('/df', flow.router({ ...viewer, eventSecret: [SECRET, OLD_SECRET] }));
  app.use('/rotated', flow.router({ ...viewer, eventSecret: SECRET }));
  app.use('/off', flow.router(viewer));
  app.use('/off-empty', flow.router({ ...viewer, eventSecret: [] }));
  app.use('/big', flow.router({ ...viewer, eventSecret: SECRET, ingestLimit: 8 * 1024 * 1024 }));
  // The mistake this catches: an app-wide express.json() mounted before the router eats the raw body.
  app.use('/parsed', express.json(), flow.router({ ...viewer, eventSecret: SECRET }));
  // A parser that keeps the exact bytes (the usual `verify` hook) lets ingest check them after all.
  app.use(
    '/parsed-raw',
    express.json({ verify: (req, _res, buf) => Object.assign(req, { rawBody: Buffer.from(buf) }) }),
    flow.router({ ...viewer, eventSecret: SECRET }),
  );
  server = http.createServer(app);
  const live = flow.attachLive(server, viewer);
  closeLive = () => live.close();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await closeLive?.();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await ctx.cleanup();
});
// Any "Event ingest failed" line is a request that got a 500.
afterEach(() => {
  expect(loggedErrors.splice(0)).toEqual([]);
});

type Answer = RawAnswer & {
  json: { error?: string; events?: { id: string; eventId: string | null; name: string; duplicate: boolean }[] };
};

/** A raw POST: the exact bytes and headers given (JSON content type unless overridden; `null` removes a header). */
function post(path: string, body: string | Buffer, headers: Record<string, string | number | null> = {}): Promise<Answer> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const merged: Record<string, string | number> = {};
  for (const [key, value] of Object.entries({ 'Content-Type': 'application/json', 'Content-Length': bytes.length, ...headers })) {
    if (value !== null) merged[key] = value;
  }
  return rawPost(`${base}${path}`, bytes, merged);
}

const sign = (body: string | Buffer, secret = SECRET, timestamp?: number) => ({
  'DurableFlow-Signature': signatureHeader(secret, body, timestamp),
});
const signed = (body: string | Buffer, path = '/df/events') => post(path, body, sign(body));
const nowSeconds = () => Date.now() / 1000;

async function eventRows(): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_events');
  return rows[0]!.n;
}

async function eventsWithId(eventId: string) {
  const { rows } = await flow.pool.query<{ id: string; payload: unknown }>(
    'SELECT id::text, payload FROM durable_flow_workflow_events WHERE event_id = $1',
    [eventId],
  );
  return rows;
}

/** The waits of a run, in order, with the event that matched each. */
async function waitsOf(runId: string) {
  const { rows } = await flow.pool.query<{ step: string; status: string; event: string | null }>(
    `SELECT s.name AS step, w.status, w.workflow_event_id::text AS event
     FROM durable_flow_workflow_waits w
     JOIN durable_flow_workflow_steps s ON s.id = w.workflow_step_id
     JOIN durable_flow_workflow_runs r ON r.id = w.workflow_run_id
     WHERE r.run_id = $1 ORDER BY w.id`,
    [runId],
  );
  return rows;
}

/** A 4xx JSON error that says something and leaks nothing. */
function expectCleanRefusal(answer: Answer, status: number | number[], message: RegExp, what: string) {
  expect([status].flat(), `${what}: ${answer.status} ${answer.text.slice(0, 200)}`).toContain(answer.status);
  expect(answer.headers['content-type'], what).toMatch(/^application\/json/);
  expect(answer.json.error, what).toMatch(message);
  expect(answer.text, what).not.toMatch(INTERNALS);
}

/** A run that waits twice for the same event name: a duplicate delivery must not satisfy the second wait. */
async function waitingTwice(event: string) {
  const run = await twice.start({ event });
  await harness.drain();
  expect((await flow.getRun(run.runId))!.status).toBe('waiting');
  return run.runId;
}

describe('signatures', () => {
  it('F2: a missing, wrong or wrong-length signature is a 401 that does not say which part failed, and stores nothing', async () => {
    const body = JSON.stringify({ name: 'f2', payload: { a: 1 } });
    const t = Math.floor(nowSeconds());
    const good = signatureHeader(SECRET, body, t).split('v1=')[1]!;
    const headers: (string | null)[] = [
      null,
      '',
      `t=${t}`,
      `v1=${good}`,
      signatureHeader('whsec_wrong_0123456789abcdef', body, t),
      `t=${t},v1=${good.slice(0, 63)}`,
      `t=${t},v1=${good}0`,
      `t=${t},v1=${good}${good}`,
      `t=${t},v1=${'z'.repeat(64)}`,
      `t=${t},v0=${good}`,
      `t=${t},v1=`,
      signatureHeader(SECRET, `${body} `, t),
      `t=${t},${'v1=00,'.repeat(700)}v1=${good}`,
    ];
    const before = await eventRows();
    const errors = new Set<string>();
    for (const header of headers) {
      const answer = await post('/df/events', body, { 'DurableFlow-Signature': header });
      expectCleanRefusal(answer, 401, /DurableFlow-Signature/, String(header).slice(0, 60));
      errors.add(answer.text);
    }
    // One answer for every failure: nothing tells a forger how close they came.
    expect([...errors]).toEqual(['{"error":"Invalid or missing DurableFlow-Signature header"}']);
    expect(await eventRows()).toBe(before);
    // The check never throws, whatever it is given (an exception would be a timing and a 500 path).
    for (const header of [...headers, undefined, 42, {}, ['t=1'], 'v1=' + 'f'.repeat(64) + ',t=' + t]) {
      expect(verifySignature(header, Buffer.from(body), [SECRET], 300)).toBe(false);
    }
    expect(verifySignature(`t=${t},v1=${good.toUpperCase()}`, Buffer.from(body), [SECRET], 300)).toBe(true);
  });

  it('F3: only the exact signed bytes verify; re-serialised JSON is refused, and a parser mounted before the router is reported, not mistaken for a forgery', async () => {
    const exact = '{ "payload" : { "b": 1, "a": [1, 2] },\n  "name": "f3" }\n';
    const header = sign(exact);
    const before = await eventRows();
    for (const variant of [
      JSON.stringify(JSON.parse(exact)),
      '{"name":"f3","payload":{"b":1,"a":[1,2]}}',
      '{"payload":{"a":[1,2],"b":1},"name":"f3"}',
      exact.trimEnd(),
      `${exact} `,
      exact.replace('"b": 1', '"b": 1.0'),
    ]) {
      expectCleanRefusal(await post('/df/events', variant, header), 401, /DurableFlow-Signature/, variant);
    }
    expect(await eventRows()).toBe(before);
    const accepted = await post('/df/events', exact, header);
    expect(accepted.status).toBe(202);
    const { rows } = await flow.pool.query('SELECT payload FROM durable_flow_workflow_events WHERE id = $1', [
      accepted.json.events![0]!.id,
    ]);
    expect(rows[0].payload).toEqual({ b: 1, a: [1, 2] });

    // express.json() ran first: the raw bytes are gone. A 503 that names the fix, not a 401 that
    // sends the sender hunting for a signing bug, and nothing stored.
    const body = JSON.stringify({ name: 'f3-parsed', payload: {} });
    const parsed = await post('/parsed/events', body, sign(body));
    expectCleanRefusal(parsed, 503, /misconfigured.*body parser/, 'parsed');
    expect(loggedErrors.splice(0)).toEqual([expect.stringMatching(/mount flow.router\(\) before express.json\(\)/)]);
    expect(await eventRows()).toBe(before + 1);

    // The same parser keeping req.rawBody: the signature is checked over those bytes, a forgery is a 401.
    const kept = JSON.stringify({ name: 'f3-raw-kept', payload: { a: 1 } });
    expect((await post('/parsed-raw/events', kept, sign(kept))).status).toBe(202);
    expectCleanRefusal(await post('/parsed-raw/events', kept.replace('1', '2'), sign(kept)), 401, /DurableFlow-Signature/, 'raw-forged');
    expect(await eventRows()).toBe(before + 2);
  });

  it('F4: a timestamp 301 s in the past or future, non-numeric, hex, fractional or missing is a 401', async () => {
    const body = JSON.stringify({ name: 'f4', payload: {} });
    const mac = (t: string) => `v1=${signatureHeader(SECRET, body, t as unknown as number).split('v1=')[1]}`;
    const now = nowSeconds();
    const past = String(Math.floor(now) - 301);
    // Rounded up, so the gap stays over 300 s while the request travels.
    const future = String(Math.ceil(now) + 301);
    const cases = [
      `t=${past},${mac(past)}`,
      `t=${future},${mac(future)}`,
      `t=abc,${mac('abc')}`,
      `t=0x${Math.floor(now).toString(16)},${mac(`0x${Math.floor(now).toString(16)}`)}`,
      `t=${Math.floor(now)}.5,${mac(`${Math.floor(now)}.5`)}`,
      `t=${Math.floor(now) / 1000}e3,${mac(`${Math.floor(now) / 1000}e3`)}`,
      `t=-${Math.floor(now)},${mac(`-${Math.floor(now)}`)}`,
      `t=,${mac('')}`,
      mac(String(Math.floor(now))),
      `t=${Math.floor(now) * 1000},${mac(String(Math.floor(now) * 1000))}`,
    ];
    const before = await eventRows();
    for (const header of cases) {
      expectCleanRefusal(
        await post('/df/events', body, { 'DurableFlow-Signature': header }),
        401,
        /DurableFlow-Signature/,
        header.slice(0, 30),
      );
    }
    expect(await eventRows()).toBe(before);
    // Inside the tolerance, either way, is fine.
    expect((await post('/df/events', body, sign(body, SECRET, Math.floor(now) - 290))).status).toBe(202);
    expect((await post('/df/events', body, sign(body, SECRET, Math.floor(now) + 290))).status).toBe(202);
    expect(await eventRows()).toBe(before + 2);
  });

  it('F7: during a key rotation the old and the new secret both verify, also as two signatures in one header; once the old one is removed it is refused', async () => {
    const body = JSON.stringify({ name: 'f7', payload: { n: 1 } });
    const t = Math.floor(nowSeconds());
    const macOf = (secret: string) => signatureHeader(secret, body, t).split('v1=')[1]!;
    expect((await post('/df/events', body, sign(body, OLD_SECRET, t))).status).toBe(202);
    expect((await post('/df/events', body, sign(body, SECRET, t))).status).toBe(202);
    const both = `t=${t},v1=${macOf(OLD_SECRET)},v1=${macOf(SECRET)}`;
    expect((await post('/df/events', body, { 'DurableFlow-Signature': both })).status).toBe(202);
    expect(
      (await post('/df/events', body, { 'DurableFlow-Signature': `t=${t},v1=${'0'.repeat(64)},v1=${macOf(SECRET)}` })).status,
    ).toBe(202);
    // /rotated knows only the new secret.
    expectCleanRefusal(
      await post('/rotated/events', body, sign(body, OLD_SECRET, t)),
      401,
      /DurableFlow-Signature/,
      'old secret after rotation',
    );
    expect((await post('/rotated/events', body, { 'DurableFlow-Signature': both })).status).toBe(202);
    // Every one of those was the same request (same timestamp, same bytes), however it was signed: one event.
    const { rows } = await flow.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_events WHERE name = 'f7'`,
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('F13: without a secret the endpoint is disabled (404 naming eventSecret), even for a signed request; a short secret is refused at startup', async () => {
    const body = JSON.stringify({ name: 'f13', payload: {} });
    const before = await eventRows();
    for (const path of ['/off/events', '/off-empty/events']) {
      for (const headers of [{}, sign(body), sign(body, '')]) {
        expectCleanRefusal(await post(path, body, headers), 404, /disabled.*eventSecret/, path);
      }
    }
    expect(await eventRows()).toBe(before);
    expect(() => flow.router({ allowUnauthenticated: true, eventSecret: 'short' })).toThrow(
      /eventSecret.*at least 16 characters/,
    );
    expect(() => flow.router({ allowUnauthenticated: true, eventSecret: [SECRET, ''] })).toThrow(/eventSecret/);
  });
});

describe('duplicates and concurrency', () => {
  it('F5: a replayed signed request answers 202 with the same event id, stores one event and wakes nothing again', async () => {
    const runId = await waitingTwice('f5-paid');
    const body = JSON.stringify({ name: 'f5-paid', payload: { order: 5 }, id: 'evt_f5' });
    const header = sign(body);
    const first = await post('/df/events', body, header);
    expect(first.status).toBe(202);
    expect(first.json.events).toEqual([{ id: expect.any(String), eventId: 'evt_f5', name: 'f5-paid', duplicate: false }]);
    await harness.drain();
    const attempts = (await flow.getRun(runId))!.attempts;
    for (let i = 0; i < 3; i++) {
      const replay = await post('/df/events', body, header);
      expect(replay.status).toBe(202);
      expect(replay.json.events).toEqual([{ ...first.json.events![0], duplicate: true }]);
    }
    await harness.drain();
    expect(await eventsWithId('evt_f5')).toEqual([{ id: first.json.events![0]!.id, payload: { order: 5 } }]);
    // The replays woke nothing: the second wait still waits, and the run was not claimed again.
    expect(await waitsOf(runId)).toEqual([
      { step: 'first', status: 'matched', event: first.json.events![0]!.id },
      { step: 'second', status: 'pending', event: null },
    ]);
    const run = (await flow.getRun(runId))!;
    expect(run.status).toBe('waiting');
    expect(run.attempts).toBe(attempts);
  });

  it('F6: 20 concurrent deliveries of one event id store one event and wake one run once', async () => {
    const runId = await waitingTwice('f6-paid');
    const body = JSON.stringify({ name: 'f6-paid', payload: { order: 6 }, id: 'evt_f6' });
    const answers = await Promise.all(Array.from({ length: 20 }, () => post('/df/events', body, sign(body))));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(202));
    const events = answers.map((a) => a.json.events![0]!);
    expect(new Set(events.map((e) => e.id)).size).toBe(1);
    expect(new Set(events.map((e) => e.eventId))).toEqual(new Set(['evt_f6']));
    expect(events.filter((e) => !e.duplicate)).toHaveLength(1);
    const stored = await eventsWithId('evt_f6');
    expect(stored).toEqual([{ id: events[0]!.id, payload: { order: 6 } }]);
    await harness.drain();
    expect(await waitsOf(runId)).toEqual([
      { step: 'first', status: 'matched', event: stored[0]!.id },
      { step: 'second', status: 'pending', event: null },
    ]);
    const run = (await flow.getRun(runId))!;
    expect(run.status).toBe('waiting');
    // Claimed at its start and once more when the event woke it.
    expect(run.attempts).toBe(2);
    // The next delivery with a new id is what the second wait needs.
    const next = JSON.stringify({ name: 'f6-paid', payload: { order: 6 }, id: 'evt_f6_2' });
    expect((await signed(next)).status).toBe(202);
    await harness.drain();
    expect((await flow.getRun(runId))!.status).toBe('completed');
  });

  it('F6: concurrent batches naming the same events in opposite orders, waking runs that wait for several, never deadlock into an error', async () => {
    const both = flow.workflow('ingest-both', async ({ input, step }: WorkflowContext<{ a: string; b: string }>) =>
      Promise.all([step.waitForEvent('a', { event: input.a }), step.waitForEvent('b', { event: input.b })]),
    );
    const pairs = 20;
    const runIds: string[] = [];
    for (let i = 0; i < pairs; i++) {
      // Run 1 waits for a and d, run 2 for b and c; batch [a, c] and batch [b, d] lock them in opposite orders.
      runIds.push(
        (await both.start({ a: `f6a${i}`, b: `f6d${i}` })).runId,
        (await both.start({ a: `f6b${i}`, b: `f6c${i}` })).runId,
      );
    }
    await harness.drain();
    // Distinct requests (a request repeated with the same timestamp and bytes would be a replay).
    const batch = (names: string[], i: number) => JSON.stringify(names.map((name) => ({ name, payload: { name, i } })));
    const requests = [
      ...Array.from({ length: pairs }, (_, i) => [batch([`f6a${i}`, `f6c${i}`], i), batch([`f6b${i}`, `f6d${i}`], i)]).flat(),
      // And the same two names in both orders: each request would hold one name's lock and wait for the other.
      ...Array.from({ length: pairs }, (_, i) => batch(i % 2 ? ['f6-x', 'f6-y'] : ['f6-y', 'f6-x'], i)),
    ];
    const answers = await Promise.all(requests.map((body) => signed(body)));
    expect(answers.map((a) => a.status)).toEqual(Array(requests.length).fill(202));
    const { rows } = await flow.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_events WHERE name LIKE 'f6%' AND event_id LIKE 'ingest:%'`,
    );
    expect(rows[0]!.n).toBe(requests.length * 2);
    await harness.drain();
    for (const runId of runIds) expect((await flow.getRun(runId))!.status).toBe('completed');
  });
});

describe('bodies', () => {
  it('F8: a body over the limit is a 413 before it is read: by Content-Length, chunked, or gzip that would inflate past it (415); nothing stored', async () => {
    const before = await eventRows();
    const url = `${base}/df/events`;
    const json = { 'Content-Type': 'application/json', ...sign('x') };
    // 64 MiB declared, or streamed chunked without a length: either way refused long before the upload
    // would end (after at most 1 MiB plus what the sockets buffer), and the connection is closed.
    const total = 64 * 1024 * 1024;
    for (const [what, headers] of [
      ['content-length', { ...json, 'Content-Length': total }],
      ['chunked', json],
    ] as const) {
      const answer = await rawPost(url, total, headers);
      expectCleanRefusal(answer, 413, /over the ingest limit of 1048576 bytes.*ingestLimit/, what);
      expect(answer.headers.connection, what).toBe('close');
      expect(answer.sent, what).toBeLessThan(total / 4);
    }
    // A signed body just over the limit, sent whole.
    const big = JSON.stringify({ name: 'f8-big', payload: { x: 'x'.repeat(1024 * 1024) } });
    expectCleanRefusal(await signed(big), 413, /over the ingest limit/, 'whole');
    // 4 MiB of JSON in 4 kB of gzip, signed over the compressed bytes, and a small one: compressed bodies are refused.
    const inflated = zlib.gzipSync(JSON.stringify({ name: 'f8-zip', payload: { x: 'y'.repeat(4 * 1024 * 1024) } }));
    expect(inflated.length).toBeLessThan(64 * 1024);
    const small = zlib.gzipSync(JSON.stringify({ name: 'f8-small-zip', payload: {} }));
    for (const gzip of [inflated, small]) {
      for (const encoding of ['gzip', 'deflate', 'br', 'GZIP']) {
        const answer = await post('/df/events', gzip, { 'Content-Encoding': encoding, ...sign(gzip) });
        expectCleanRefusal(answer, gzip === small ? 415 : [413, 415], /Content-Encoding.*uncompressed/, encoding);
      }
    }
    expect(await eventRows()).toBe(before);
    // The server is still serving.
    const ok = JSON.stringify({ name: 'f8-after', payload: {} });
    expect((await signed(ok)).status).toBe(202);
  });

  it('F9: malformed JSON, a wrong Content-Type, a top-level primitive or an empty body is a 400/415 JSON error without internals; nothing stored', async () => {
    const before = await eventRows();
    const cases: [string, string | null, number, RegExp][] = [
      ['{not json', 'application/json', 400, /Malformed JSON/],
      ['{"name":"f9"', 'application/json', 400, /Malformed JSON/],
      ['{"name":"f9"} trailing', 'application/json', 400, /Malformed JSON/],
      ['{"name":"f9","payload":NaN}', 'application/json', 400, /Malformed JSON/],
      ['', 'application/json', 400, /Empty body/],
      ['"just a string"', 'application/json', 400, /object/],
      ['42', 'application/json', 400, /object/],
      ['null', 'application/json', 400, /object/],
      ['true', 'application/json', 400, /object/],
      ['[1, 2]', 'application/json', 400, /event 0 to be an object/],
      ['[]', 'application/json', 400, /empty/],
      ['{"payload":{}}', 'application/json', 400, /"name"/],
      ['{"name":42}', 'application/json', 400, /"name"/],
      ['[{"name":"f9"},{"name":""}]', 'application/json', 400, /event 1/],
      ['{"name":"f9","id":5}', 'application/json', 400, /"id"/],
      ['{"name":"f9","id":""}', 'application/json', 400, /event id/],
      [`{"name":"${'n'.repeat(256)}"}`, 'application/json', 400, /at most 255/],
      [JSON.stringify(Array.from({ length: 1001 }, () => ({ name: 'f9' }))), 'application/json', 400, /at most 1000/],
      ['{"name":"f9"}', 'text/plain', 415, /Content-Type: application\/json/],
      ['{"name":"f9"}', null, 415, /Content-Type/],
      ['{"name":"f9"}', 'application/x-www-form-urlencoded', 415, /Content-Type/],
      ['{"name":"f9"}', 'application/json; charset=latin1', 415, /UTF-8/],
      ['{"name":"f9"}', 'text/json', 415, /Content-Type/],
      ['{"name":"f9"}', 'multipart/form-data; boundary=x', 415, /Content-Type/],
    ];
    for (const [body, type, status, message] of cases) {
      expectCleanRefusal(
        await post('/df/events', body, { 'Content-Type': type, ...sign(body) }),
        status,
        message,
        `${type} ${body.slice(0, 30)}`,
      );
    }
    expect(await eventRows()).toBe(before);
    // JSON in its other spellings is fine.
    for (const type of ['application/json; charset=utf-8', 'APPLICATION/JSON; charset="UTF-8"', 'application/cloudevents+json']) {
      const body = JSON.stringify({ name: 'f9-ok', payload: { type } });
      expect((await post('/df/events', body, { 'Content-Type': type, ...sign(body) })).status, type).toBe(202);
    }
  });

  it('F10: \\u0000, lone surrogates, invalid UTF-8 and nesting of 5,000 levels are 400s that store nothing; 64 levels are stored exactly', async () => {
    const before = await eventRows();
    const deepArray = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    const cases: [string | Buffer, RegExp][] = [
      ['{"name":"f10\\u0000"}', /\\u0000/],
      ['{"name":"f10","payload":{"a":"x\\u0000y"}}', /\\u0000/],
      ['{"name":"f10","payload":{"x\\u0000":1}}', /\\u0000/],
      ['{"name":"f10","id":"id\\u0000"}', /\\u0000/],
      ['{"name":"f10\\ud800"}', /lone UTF-16 surrogate/],
      ['{"name":"f10","payload":{"a":"\\udc00x"}}', /lone UTF-16 surrogate/],
      ['{"name":"f10","payload":{"\\ud83d":1}}', /lone UTF-16 surrogate/],
      ['{"name":"f10","payload":["\\ud83d\\ud83d"]}', /lone UTF-16 surrogate/],
      [Buffer.concat([Buffer.from('{"name":"f10-'), Buffer.from([0xff]), Buffer.from('"}')]), /not valid UTF-8/],
      [Buffer.concat([Buffer.from('{"name":"f10-'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]), /not valid UTF-8/],
      [Buffer.concat([Buffer.from('{"name":"f10-'), Buffer.from([0xc3]), Buffer.from('"}')]), /not valid UTF-8/],
      [`{"name":"f10","payload":${deepArray(5000)}}`, /nested deeper than 64/],
      [`{"name":"f10","payload":${deepObject(5000)}}`, /nested deeper than 64/],
      [`{"name":"f10","payload":${deepArray(65)}}`, /nested more than 64 levels|nested deeper than 64/],
      [`${'['.repeat(5000)}{"name":"f10"}${']'.repeat(5000)}`, /nested deeper than 64/],
      [`{"name":"f10","id":${deepArray(5000)}}`, /nested deeper than 64/],
      [`{"name":"f10","payload":${deepArray(200_000)}}`, /nested deeper than 64/],
    ];
    for (const [body, message] of cases) {
      expectCleanRefusal(await signed(body), 400, message, body.toString('utf8').slice(0, 40));
    }
    expect(await eventRows()).toBe(before);
    // As deep as allowed, and astral characters (valid pairs): stored and read back exactly.
    // The payload object and 63 arrays inside it: 64 levels.
    const astral = { text: 'emoji \ud83d\ude00 and \u2028 line separator', deep: JSON.parse(deepArray(63)) as unknown };
    const body = JSON.stringify({ name: 'f10-ok', payload: astral, id: 'evt_f10_ok' });
    expect((await signed(body)).status).toBe(202);
    expect((await eventsWithId('evt_f10_ok'))[0]!.payload).toEqual(astral);
  });

  it('F10: a 1,000,000-element array is a 413 under the default limit, and under a raised one is stored and read back exactly, by the viewer and socket.io too', async () => {
    const array = Array.from({ length: 1_000_000 }, (_, i) => i % 10);
    const body = JSON.stringify({ name: 'f10-million', payload: array, id: 'evt_f10_million' });
    expectCleanRefusal(await signed(body), 413, /over the ingest limit/, 'default limit');
    expect(await eventsWithId('evt_f10_million')).toEqual([]);

    const socket = ioClient(`${base}/durable_flow`, {
      path: '/durable_flow/socket.io',
      transports: ['websocket'],
      reconnection: false,
    });
    const changes: { type: string }[] = [];
    try {
      socket.on('change', (change: { type: string }) => changes.push(change));
      await new Promise<void>((resolve, reject) => {
        socket.on('connect', () => resolve());
        socket.on('connect_error', reject);
      });
      socket.emit('subscribe', 'events');
      await flow.changesReady();
      const stored = await signed(body, '/big/events');
      expect(stored.status).toBe(202);
      const [row] = await eventsWithId('evt_f10_million');
      expect(row!.payload).toEqual(array);
      const api = await fetch(`${base}/df/api/events?name=f10-million`);
      expect(api.status).toBe(200);
      // Too big for a list: previewed, and whole behind its link (the viewer's G10 bound).
      const listed = (await api.json()) as { truncated: { href: string }[] };
      expect(listed.truncated).toHaveLength(1);
      const whole = await fetch(`http://127.0.0.1:${new URL(base).port}${listed.truncated[0]!.href}`);
      expect(whole.status).toBe(200);
      expect(await whole.json()).toEqual(array);
      const page = await fetch(`${base}/df/events?name=f10-million`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('f10-million');
      await eventually(() => changes.some((c) => c.type === 'workflow_event.created'));
      expect(socket.connected).toBe(true);
    } finally {
      socket.close();
    }
  });

  it("F10: the viewer's send-event form refuses the same poison with a 400 and stores nothing", async () => {
    const page = await fetch(`${base}/df/events`);
    const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const before = await eventRows();
    const send = (fields: Record<string, string>) =>
      fetch(`${base}/df/actions/send-event`, {
        method: 'POST',
        redirect: 'manual',
        headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams({ _csrf: token, ...fields }).toString(),
      });
    const poisoned: Record<string, string>[] = [
      { name: 'f10\u0000', payload: '{}' },
      { name: 'f10-form', payload: '{"a":"\\u0000"}' },
      { name: 'f10-form', payload: '{"a":"\\ud800"}' },
      { name: 'f10-form', payload: `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}` },
      { name: 'f10-form', payload: '{"a":1', id: 'x' },
      { name: 'f10-form', payload: '{}', id: 'i'.repeat(256) },
    ];
    for (const fields of poisoned) {
      const answer = await send(fields);
      const text = await answer.text();
      expect(answer.status, JSON.stringify(fields).slice(0, 60)).toBe(400);
      expect(text).not.toMatch(INTERNALS);
    }
    expect(await eventRows()).toBe(before);
  });

  it('F11: __proto__ and constructor.prototype keys are stored verbatim as data; Object.prototype is unchanged after ingest and after the viewer renders them', async () => {
    const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
    const keysBefore = prototypeKeys();
    const hostile =
      '{"__proto__":{"polluted":"yes","toString":"no"},"constructor":{"prototype":{"polluted":"yes"}},"nested":{"__proto__":{"isAdmin":true}},"order":"f11"}';
    const waiter = flow.workflow('ingest-proto', async ({ step }: WorkflowContext) =>
      step.waitForEvent('proto', { event: 'f11', match: { order: 'f11' } }),
    );
    const run = await waiter.start(JSON.parse(hostile));
    await harness.drain();
    const body = `{"name":"f11","id":"evt_f11","__proto__":{"name":"evil"},"payload":${hostile}}`;
    const answer = await signed(body);
    expect(answer.status).toBe(202);
    expect(answer.json.events![0]).toMatchObject({ name: 'f11', eventId: 'evt_f11' });
    await harness.drain();

    const expected = JSON.parse(hostile) as Record<string, unknown>;
    expect(Object.keys(expected)).toContain('__proto__');
    const { rows } = await flow.pool.query<{ text: string; payload: Record<string, unknown> }>(
      `SELECT payload::text AS text, payload FROM durable_flow_workflow_events WHERE event_id = 'evt_f11'`,
    );
    expect(rows[0]!.text).toContain('"__proto__": {"polluted": "yes", "toString": "no"}');
    expect(rows[0]!.payload).toEqual(expected);
    expect(Object.getPrototypeOf(rows[0]!.payload)).toBe(Object.prototype);
    const info = (await flow.getRun(run.runId))!;
    expect(info.status).toBe('completed');
    expect(info.input).toEqual(expected);
    expect(info.output).toEqual(expected);

    for (const path of [
      `/df/runs/${run.runId}`,
      `/df/api/runs/${run.runId}`,
      '/df/events?name=f11',
      '/df/api/events?name=f11',
      '/df/',
      '/df/workflows',
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      const text = await res.text();
      if (path.includes('/runs/')) expect(text, path).toMatch(/__proto__(&#34;|")/);
    }
    const api = (await (await fetch(`${base}/df/api/runs/${run.runId}`)).json()) as { run: { output: unknown } };
    expect(api.run.output).toEqual(expected);
    expect(prototypeKeys()).toEqual(keysBefore);
    const probe = {} as Record<string, unknown>;
    expect([probe.polluted, probe.isAdmin, probe.name]).toEqual([undefined, undefined, undefined]);
    expect(String(probe)).toBe('[object Object]');
  });
});
