import type pg from 'pg';
import type { SqlTexts } from '../db/sql/index.js';
import { queryableFor } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { EventRecord, NotifyOptions } from '../types.js';

export const MAX_EVENT_NAME = 255;
export const MAX_EVENT_ID = 255;

interface NotifyRow {
  event_pk: string | number;
  event_key: string | null;
  event_name: string;
  event_payload: unknown;
  event_occurred_at: Date | string;
  is_duplicate: boolean;
  matched_waits: number;
}

export interface NotifyEnv {
  pool: pg.Pool;
  sql: SqlTexts;
  lockNamespace: number;
  maxPayloadSize: number;
  clockOffsetMs(): number;
}

/** Checks an event before anything is stored: a bad one is refused whole. Returns the payload as JSON text. */
export function validateEvent(name: unknown, payload: unknown, id: unknown, maxPayloadSize: number): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_EVENT_NAME) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Expected an event name to be a non-empty string of at most ${MAX_EVENT_NAME} characters, got ${typeof name === 'string' ? `a string of ${name.length}` : typeof name}`,
    );
  }
  if (id !== undefined && id !== null && (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID)) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected an event id to be a non-empty string of at most ${MAX_EVENT_ID} characters`);
  }
  encodeJson(name, 'The event name', maxPayloadSize);
  if (typeof id === 'string') encodeJson(id, 'The event id', maxPayloadSize);
  return encodeJson(payload === undefined ? {} : payload, `The payload of event "${name.slice(0, 80)}"`, maxPayloadSize)!;
}

/**
 * Records an event and, in the same transaction, matches every pending wait it satisfies and makes
 * their runs due. Inside the caller's transaction when one is given (nothing is woken unless it
 * commits); otherwise in a transaction of its own.
 */
export async function notify(env: NotifyEnv, name: unknown, payload: unknown, options: NotifyOptions = {}): Promise<EventRecord> {
  if (typeof options !== 'object' || options === null) {
    throw new DurableFlowError('INVALID_ARGUMENT', 'Expected the options of notify to be an object');
  }
  const payloadText = validateEvent(name, payload, options.id, env.maxPayloadSize);
  const run = (db: Queryable) => record(env, db, name as string, payloadText, options);
  // One statement: atomic on its own, or part of the caller's transaction when one is given.
  return run(queryableFor(env.pool, options.transaction));
}

async function record(env: NotifyEnv, db: Queryable, name: string, payloadText: string, options: NotifyOptions): Promise<EventRecord> {
  const [row] = await db.query<NotifyRow>(env.sql.notifyEvent, [
    options.id ?? null,
    name,
    payloadText,
    options.source ?? 'notify',
    env.lockNamespace,
    env.clockOffsetMs(),
  ]);
  if (!row) throw new DurableFlowError('INVALID_STATE', `Storing event "${name}" returned nothing; try again`);
  return {
    id: String(row.event_pk),
    eventId: row.event_key,
    name: row.event_name,
    payload: row.event_payload,
    occurredAt: new Date(row.event_occurred_at),
    duplicate: row.is_duplicate,
    matchedWaits: row.matched_waits,
  };
}
