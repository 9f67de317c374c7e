import { createHmac, timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { withTransaction } from '../db/queryable.js';
import type { DurableFlow } from '../flow.js';
import { MAX_JSON_DEPTH, isPlainObject } from '../json.js';
import { validateEvent } from '../events/notify.js';
import type { ResolvedRouterOptions } from './options.js';

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
  ) {
    super(message);
  }
}

/**
 * `POST <mount>/events`: signed event ingest for webhooks and other services. The body is read raw
 * (the signature covers its exact bytes), checked whole, then every event is stored in one transaction:
 * a bad request stores nothing.
 */
export function ingestHandlers(flow: DurableFlow, options: ResolvedRouterOptions): (RequestHandler | ErrorRequestHandler)[] {
  const raw = express.raw({ type: () => true, limit: options.ingestLimit, inflate: false });
  const handle = async (req: Request, res: Response): Promise<void> => {
    if (options.eventSecrets.length === 0) {
      res.status(404).json({ error: 'Event ingest is disabled: configure flow.router({ eventSecret }) to enable it' });
      return;
    }
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (!verifySignature(req.get(SIGNATURE_HEADER), body, options.eventSecrets, options.signatureTolerance)) {
      res.status(401).json({ error: `Invalid or missing ${SIGNATURE_HEADER} header` });
      return;
    }
    const events = parseEvents(body, flow.options.maxPayloadSize);
    const stored = await withTransaction(flow.pool, async (client) => {
      const records = [];
      for (const event of events) {
        records.push(await flow.notify(event.name, event.payload, { ...(event.id === undefined ? {} : { id: event.id }), transaction: client, source: 'ingest' }));
      }
      return records;
    });
    res.status(202).json({
      events: stored.map((e) => ({ id: e.id, eventId: e.eventId, name: e.name, duplicate: e.duplicate })),
    });
  };
  return [
    raw,
    (req: Request, res: Response, next: NextFunction) => {
      handle(req, res).catch(next);
    },
    // Errors of this route answer in JSON, without internals.
    (error: unknown, _req: Request, res: Response, next: NextFunction) => {
      if (res.headersSent) return next(error);
      const status = (error as { status?: number; statusCode?: number }).status ?? (error as { statusCode?: number }).statusCode;
      if (error instanceof IngestError) res.status(error.status).json({ error: error.message });
      else if (status === 413) res.status(413).json({ error: `Body over the ingest limit of ${options.ingestLimit} bytes` });
      else if (status && status >= 400 && status < 500) res.status(status).json({ error: 'Bad request' });
      else if ((error as { code?: string }).code === 'INVALID_ARGUMENT' || (error as { code?: string }).code === 'NOT_SERIALIZABLE') {
        res.status(400).json({ error: (error as Error).message });
      } else {
        flow.options.logger.error('Event ingest failed', { error: (error as Error)?.message });
        res.status(500).json({ error: 'Internal error; nothing was stored' });
      }
    },
  ];
}

function parseEvents(body: Buffer, maxPayloadSize: number): { name: string; payload: unknown; id?: string }[] {
  if (body.length === 0) throw new IngestError(400, 'Empty body: send an event { "name", "payload", "id" } or an array of them as JSON');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new IngestError(400, 'Malformed JSON body');
  }
  // The payload may nest 64 levels, inside its event object, inside the array.
  if (deeperThan(parsed, MAX_JSON_DEPTH + 2)) {
    throw new IngestError(400, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
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
