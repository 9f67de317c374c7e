import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { DurableFlowError } from '../errors.js';
import type { ViewerBackend } from './backend.js';
import { MAX_JSON_DEPTH, isPlainObject } from '../json.js';
import { validateEvent } from '../events/notify.js';
import type { ResolvedRouterOptions } from './options.js';
import { TokenBucket } from './rate-limit.js';

/** The most events one ingest request may carry. */
export const MAX_EVENTS_PER_REQUEST = 1000;
export const SIGNATURE_HEADER = 'DurableFlow-Signature';

/** `DurableFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` for a body. */
export function signatureHeader(secret: string, body: string | Buffer, timestamp = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

/**
 * Checks a signature header against the raw body: a decimal timestamp within `toleranceSeconds` of
 * now (either way), and at least one `v1` that equals the HMAC under one of the secrets (constant time).
 */
export function verifySignature(header: unknown, body: Buffer, secrets: string[], toleranceSeconds: number, nowSeconds = Date.now() / 1000): boolean {
  if (typeof header !== 'string' || header.length > 4096) return false;
  let timestamp: string | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = value;
    else if (key === 'v1') signatures.push(value);
  }
  if (!timestamp || !/^\d{1,12}$/.test(timestamp) || signatures.length === 0) return false;
  if (Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  let valid = false;
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
    for (const signature of signatures) {
      if (!/^[0-9a-f]{64}$/i.test(signature)) continue;
      if (timingSafeEqual(expected, Buffer.from(signature, 'hex'))) valid = true;
    }
  }
  return valid;
}

/** Whether parsed JSON nests deeper than `limit`, walked iteratively (a hostile body must not blow the stack). */
function deeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth > limit) return true;
    for (const child of Object.values(node as object)) stack.push([child, depth + 1]);
  }
  return false;
}

class IngestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** `application/json` or `application/<anything>+json`, in UTF-8 (the only charset JSON allows on the wire). */
function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  const [type, ...parameters] = header.split(';');
  if (!/^application\/(?:[\w.-]+\+)?json$/i.test(type!.trim())) return false;
  return parameters.every((parameter) => {
    const [key, value = ''] = parameter.split('=').map((s) => s.trim().toLowerCase());
    return key !== 'charset' || ['utf-8', 'utf8'].includes(value.replace(/^"|"$/g, ''));
  });
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function tooLarge(limit: number): IngestError {
  return new IngestError(413, `Body over the ingest limit of ${limit} bytes: send fewer or smaller events per request (or raise the router's \`ingestLimit\`)`);
}

/**
 * Reads the raw body (the signature covers its exact bytes), refusing it as soon as it grows past
 * `limit`: a body declared too large is refused before a byte is read, and a chunked one the moment it
 * crosses the limit, so an endless upload costs `limit` bytes of memory and no more. (express.raw()
 * would read the rest of an oversized body to its end before answering.)
 */
function readBody(req: Request, limit: number): Promise<Buffer> {
  const encoding = (req.get('content-encoding') ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity') {
    return Promise.reject(new IngestError(415, `Content-Encoding "${encoding.slice(0, 40)}" is not accepted: send the body uncompressed (the signature covers the bytes as sent)`));
  }
  const declared = req.get('content-length');
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (error: IngestError | null) => {
      if (settled) return;
      settled = true;
      req.off('data', onData).off('end', onEnd).off('error', onAbort).off('close', onAbort);
      if (error) {
        req.pause();
        reject(error);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) settle(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => settle(null);
    const onAbort = () => settle(new IngestError(400, 'The request ended before its body was complete; send it again'));
    req.on('data', onData).on('end', onEnd).on('error', onAbort).on('close', onAbort);
  });
}

/** Postgres breaks a lock cycle by failing one of its transactions; nothing of it was stored. */
const DEADLOCK_DETECTED = '40P01';

/**
 * `POST <mount>/events`: signed event ingest for webhooks and other services. The body is read raw
 * (the signature covers its exact bytes), checked whole, then every event is stored in one transaction:
 * a bad request stores nothing. Every refusal is a JSON `{ error }` that says what to fix.
 */
export function ingestHandler(flow: ViewerBackend, options: ResolvedRouterOptions): RequestHandler {
  const rate = options.ingestRateLimit;
  const bucket = rate ? new TokenBucket(rate.limit, rate.periodMs) : undefined;
  const handle = async (req: Request, res: Response): Promise<void> => {
    if (options.eventSecrets.length === 0) {
      throw new IngestError(404, 'Event ingest is disabled: configure flow.router({ eventSecret }) to enable it');
    }
    let body: Buffer;
    // An app-level express.raw() leaves the exact bytes, which is all the signature needs; so does a
    // parser that kept them as `req.rawBody` (express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })).
    const raw = Buffer.isBuffer(req.body) ? req.body : (req as { rawBody?: unknown }).rawBody;
    if (Buffer.isBuffer(raw)) {
      if (raw.length > options.ingestLimit) throw tooLarge(options.ingestLimit);
      body = raw;
    } else if (req.body !== undefined || req.readableEnded) {
      // A body parser of the app (express.json(), …) mounted before the router consumed the stream:
      // the exact bytes the signature covers are gone. Not the sender's fault, nor a forgery: 503, so
      // the sender retries (and succeeds once the router is mounted first), never a misleading 401.
      flow.options.logger.error('Event ingest cannot check signatures: mount flow.router() before express.json() and other body parsers (or keep the raw bytes as req.rawBody in the parser\'s `verify`)');
      throw new IngestError(503, 'Event ingest is misconfigured on this server: a body parser (express.json() or another) runs before flow.router() and consumed the signed body; mount the router before it. Nothing was stored; try again later');
    } else {
      body = await readBody(req, options.ingestLimit);
    }
    if (!verifySignature(req.get(SIGNATURE_HEADER), body, options.eventSecrets, options.signatureTolerance)) {
      throw new IngestError(401, `Invalid or missing ${SIGNATURE_HEADER} header`);
    }
    // Counted after the signature: a flood from anyone without the secret cannot use up the senders' budget.
    const waitMs = bucket?.take() ?? 0;
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new IngestError(
        429,
        `Too many ingest requests: this endpoint accepts ${rate!.limit} per ${rate!.period} (the router's \`ingestRateLimit\`, per process); nothing was stored, retry after ${seconds} s`,
        { 'Retry-After': String(seconds) },
      );
    }
    if (!isJsonContentType(req.get('content-type'))) {
      throw new IngestError(415, 'Unsupported Content-Type: send the events as JSON with `Content-Type: application/json` (UTF-8)');
    }
    const events = withReplayIds(parseEvents(body, flow.options.maxPayloadSize), req.get(SIGNATURE_HEADER)!, body);
    const stored = await storeEvents(flow, events);
    res.status(202).json({
      events: stored.map((e) => ({ id: e.id, eventId: e.eventId, name: e.name, duplicate: e.duplicate })),
    });
  };
  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) return;
      if (error instanceof DurableFlowError && error.code === 'EVENT_ID_CONFLICT') {
        // Nothing of the request was stored (one transaction): the sender must fix its ids.
        res.status(409).json({ error: error.message });
        return;
      }
      if (error instanceof IngestError) {
        // An oversized body is not read further: the connection closes after this answer.
        if (error.status === 413) res.set('Connection', 'close');
        res.status(error.status).set(error.headers).json({ error: error.message });
        return;
      }
      flow.options.logger.error('Event ingest failed', { error: (error as Error)?.message });
      res.status(500).json({ error: 'Internal error; nothing was stored' });
    });
  };
}

type IngestEvent = { name: string; payload: unknown; id?: string };

/**
 * Gives each event without an `id` one derived from the signed request (its timestamp and exact body)
 * and its position: a captured request replayed inside the tolerance window then stores nothing new
 * and wakes nothing (every event is a duplicate), while the same body signed again later is a new
 * request. Events with an id keep it (their redeliveries are deduplicated by it).
 */
function withReplayIds(events: IngestEvent[], header: string, body: Buffer): IngestEvent[] {
  const timestamp = /(?:^|,)\s*t=(\d+)/.exec(header)![1]!;
  const request = createHash('sha256').update(`${timestamp}.`).update(body).digest('hex').slice(0, 32);
  return events.map((event, index) => (event.id === undefined ? { ...event, id: `ingest:${request}:${index}` } : event));
}

/**
 * All events in one statement and one transaction (notifyMany). The advisory locks of their names are
 * taken first, in key order (the lock order of the whole engine): two requests naming the same events
 * in different orders would otherwise each hold one name and wait for the other's. A deadlock on run
 * rows (runs waiting for several events at once) can still be chosen by Postgres to break a cycle;
 * that transaction stored nothing and is tried again.
 */
async function storeEvents(flow: ViewerBackend, events: IngestEvent[]) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await flow.notifyMany(events, 'ingest');
    } catch (error) {
      if ((error as { code?: string }).code !== DEADLOCK_DETECTED || attempt >= 5) throw error;
    }
  }
}

function parseEvents(body: Buffer, maxPayloadSize: number): IngestEvent[] {
  if (body.length === 0) throw new IngestError(400, 'Empty body: send an event { "name", "payload", "id" } or an array of them as JSON');
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new IngestError(400, 'The body is not valid UTF-8: encode the JSON text as UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new IngestError(400, 'Malformed JSON body: send an event { "name", "payload", "id" } or an array of them');
  }
  // The payload may nest 64 levels, inside its event object, inside the array.
  if (deeperThan(parsed, MAX_JSON_DEPTH + 2)) {
    throw new IngestError(400, `JSON nested deeper than ${MAX_JSON_DEPTH} levels: flatten the payload`);
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (list.length === 0) throw new IngestError(400, 'No events: the array is empty');
  if (list.length > MAX_EVENTS_PER_REQUEST) throw new IngestError(400, `Too many events: at most ${MAX_EVENTS_PER_REQUEST} per request`);
  return list.map((item, index) => {
    const where = Array.isArray(parsed) ? `event ${index}` : 'the event';
    if (!isPlainObject(item)) throw new IngestError(400, `Expected ${where} to be an object { "name", "payload", "id" }`);
    const { name, payload, id } = item;
    if (typeof name !== 'string' || name.length === 0) throw new IngestError(400, `Expected ${where} to have a "name" (a non-empty string)`);
    if (id !== undefined && typeof id !== 'string') throw new IngestError(400, `Expected the "id" of ${where} to be a string`);
    try {
      validateEvent(name, payload ?? {}, id, maxPayloadSize);
    } catch (error) {
      throw new IngestError(400, `${where}: ${(error as Error).message}`);
    }
    return { name, payload: payload ?? {}, ...(id === undefined ? {} : { id }) };
  });
}
