import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';

/**
 * `flow.notify` in one round trip: the `durable_flow_notify` function (migrations/001_initial.sql)
 * stores the event, matches pending waits and wakes their runs, taking its locks in the fixed order.
 * Parameters: event id, name, payload, source, advisory lock namespace, clock offset (ms).
 */
export const notifyEvent = (t: Tables): string => `
SELECT event_pk, event_key, event_name, event_payload, event_occurred_at, is_duplicate, matched_waits
FROM ${quoteIdent(t.schema)}.durable_flow_notify($1, $2, $3::jsonb, $4, $5, $6)`;
