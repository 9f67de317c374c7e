import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';

/**
 * `flow.notify` in one round trip: the `durable_flow_notify` function (migrations/002_trust.sql)
 * stores the event, matches pending waits and wakes their runs, taking its locks in the fixed order.
 * Parameters: event id, name, payload, source, advisory lock namespace, clock offset (ms), and for a
 * local worker with free slots (which takes woken runs directly): its owner id, lease ms, how many
 * runs it can take, its queues and its workflows.
 */
export const notifyEvent = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, is_conflict, matched_waits,
       claimed, history, db_now_ms, snapshot
FROM ${quoteIdent(t.schema)}.durable_flow_notify($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10::text[], $11::text[])`;

/**
 * Many events in one statement (signed ingest): `durable_flow_notify_many` locks all their names
 * first, in key order, then stores each as `durable_flow_notify` does. One row per event, in order.
 * Parameters: the events as JSON `[{ id?, name, payload }]`, source, lock namespace, clock offset (ms).
 */
export const notifyEvents = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, is_conflict, matched_waits
FROM ${quoteIdent(t.schema)}.durable_flow_notify_many($1::jsonb, $2, $3, $4)`;
