import type pg from 'pg';
import type { SqlTexts } from '../db/sql/index.js';
import { fromPg, fromSequelizeTransaction, isPgClient, isSequelizeTransaction, withTransaction } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { EventRecord, NotifyOptions } from '../types.js';

export const MAX_EVENT_NAME = 255;
export const MAX_EVENT_ID = 255;

interface EventRow {
  id: string | number;
  event_id: string | null;
  name: string;
  payload: unknown;
  occurred_at: Date | string;
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

function toRecord(row: EventRow, duplicate: boolean, matchedWaits: number): EventRecord {
  return {
    id: String(row.id),
    eventId: row.event_id,
    name: row.name,
    payload: row.payload,
    occurredAt: new Date(row.occurred_at),
    duplicate,
    matchedWaits,
  };
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
  const transaction = options.transaction;
  if (transaction !== undefined && transaction !== null) {
    if (isSequelizeTransaction(transaction)) return run(fromSequelizeTransaction(transaction));
    if (isPgClient(transaction)) return run(fromPg(transaction));
    throw new DurableFlowError('INVALID_ARGUMENT', 'Expected `transaction` to be a Sequelize transaction or a pg client inside a transaction');
  }
  return withTransaction(env.pool, (client) => run(fromPg(client)));
}

async function record(env: NotifyEnv, db: Queryable, name: string, payloadText: string, options: NotifyOptions): Promise<EventRecord> {
  const id = options.id ?? null;
  const [inserted] = await db.query<EventRow>(env.sql.insertEvent, [id, name, payloadText, options.source ?? 'notify', env.lockNamespace]);
  if (!inserted) {
    const [first] = await db.query<EventRow>(env.sql.findEventById, [id]);
    if (!first) throw new DurableFlowError('INVALID_STATE', `Event id "${String(id)}" collided with an event that no longer exists; try again`);
    return toRecord(first, true, 0);
  }
  const runs = await db.query(env.sql.lockWaitingRuns, [name, payloadText]);
  if (runs.length === 0) return toRecord(inserted, false, 0);
  const [matched] = await db.query<{ matched: number }>(env.sql.matchWaits, [name, payloadText, inserted.id, env.clockOffsetMs()]);
  return toRecord(inserted, false, matched?.matched ?? 0);
}
