import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';

/**
 * `flow.notify` in one round trip: the `durable_flow_notify` function (migrations/001_initial.sql)
 * stores the event, matches pending waits and wakes their runs, taking its locks in the fixed order.
 * Parameters: event id, name, payload, source, advisory lock namespace, clock offset (ms), and for a
 * local worker with free slots (which takes woken runs directly): its owner id, lease ms, how many
 * runs it can take, its queues and its workflows.
 */
export const notifyEvent = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, matched_waits,
       claimed, history, db_now_ms, snapshot
FROM ${quoteIdent(t.schema)}.durable_flow_notify($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10::text[], $11::text[])`;
