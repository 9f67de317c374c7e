import type { EventRecord } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';
import { EMPTY_BATCH, toClaimedBatch } from './claimed.js';
import type { ClaimedBatch, ClaimedRunRow, HistoryRow, LeaseTarget } from './claimed.js';
import type { Statement } from './statement.js';

/**
 * `flow.notify` in one round trip: the `durable_flow_notify` function (migrations/002_trust.sql)
 * stores the event, matches pending waits and wakes their runs, taking its locks in the fixed order.
 * Parameters: event id, name, payload, source, advisory lock namespace, clock offset (ms), and for a
 * local worker with free slots (which takes woken runs directly): its owner id, lease ms, how many
 * runs it can take, its queues and its workflows; the flow's version (a woken run pinned to another is
 * only made due).
 */
export const notifyEventSql = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, is_conflict, matched_waits,
       claimed, history, db_now_ms, snapshot
FROM ${quoteIdent(t.schema)}.durable_flow_notify($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10::text[], $11::text[], $12)`;

/**
 * Many events in one statement (signed ingest): `durable_flow_notify_many` locks all their names
 * first, in key order, then stores each as `durable_flow_notify` does. One row per event, in order.
 * Parameters: the events as JSON `[{ id?, name, payload }]`, source, lock namespace, clock offset (ms).
 */
export const notifyEventsSql = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, is_conflict, matched_waits
FROM ${quoteIdent(t.schema)}.durable_flow_notify_many($1::jsonb, $2, $3, $4)`;

/** An event's row as both statements return it. */
interface EventRow {
  event_pk: string | number;
  event_key: string | null;
  event_name: string;
  event_payload: unknown;
  event_occurred_at: Date | string;
  is_duplicate: boolean;
  is_conflict: boolean;
  matched_waits: number;
}

/** What storing an event answers. */
export interface StoredEvent {
  /** With a conflict: the event stored earlier under the same id (see `conflict`). */
  event: EventRecord;
  /** The id was stored already with another name or payload: nothing was stored or woken. */
  conflict: boolean;
}

function toStoredEvent(row: EventRow): StoredEvent {
  return {
    event: {
      id: String(row.event_pk),
      eventId: row.event_key,
      name: row.event_name,
      payload: row.event_payload,
      occurredAt: new Date(row.event_occurred_at),
      duplicate: row.is_duplicate,
      matchedWaits: row.matched_waits,
    },
    conflict: row.is_conflict,
  };
}

/**
 * Stores one event (durable_flow_notify); with `claim`, the runs it wakes that were leased to that
 * worker come back with their history. Undefined if the statement answered nothing.
 */
export async function notifyEvent(
  db: Queryable,
  statement: Statement,
  p: { id: string | null; name: string; payload: string; source: string; lockNamespace: number; offsetMs: number; claim: LeaseTarget | undefined; version: string },
): Promise<(StoredEvent & { claimed: ClaimedBatch }) | undefined> {
  const [row] = await db.query<EventRow & { claimed: ClaimedRunRow[]; history: HistoryRow[]; db_now_ms: number | null; snapshot: string | null }>(
    statement,
    [
      p.id,
      p.name,
      p.payload,
      p.source,
      p.lockNamespace,
      p.offsetMs,
      p.claim?.owner ?? null,
      p.claim?.leaseTtlMs ?? 0,
      p.claim?.limit ?? 0,
      p.claim?.queues ?? [],
      p.claim?.workflows ?? [],
      p.version,
    ],
  );
  if (!row) return undefined;
  const claimed = row.claimed.length > 0 ? toClaimedBatch(row.claimed, row.history, row.snapshot ?? '', row.db_now_ms ?? 0) : EMPTY_BATCH;
  return { ...toStoredEvent(row), claimed };
}

/** Stores many events in one statement (durable_flow_notify_many); one answer per event, in order. */
export async function notifyEvents(
  db: Queryable,
  statement: Statement,
  p: { events: { id?: string | undefined; name: string; payload: unknown }[]; source: string; lockNamespace: number; offsetMs: number },
): Promise<StoredEvent[]> {
  const rows = await db.query<EventRow>(statement, [
    JSON.stringify(p.events.map((e) => ({ id: e.id ?? null, name: e.name, payload: e.payload ?? {} }))),
    p.source,
    p.lockNamespace,
    p.offsetMs,
  ]);
  return rows.map(toStoredEvent);
}
