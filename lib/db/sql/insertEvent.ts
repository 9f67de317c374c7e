import type { Tables } from '../tables.js';

/**
 * Stores an event after taking its name's advisory lock (see lockEventNames for why). A repeated
 * event id inserts nothing; the caller then reads the first event back.
 */
export const insertEvent = (t: Tables): string => `
WITH name_lock AS (
  SELECT pg_advisory_xact_lock($5, hashtext($2)) AS locked
)
INSERT INTO ${t.events} (event_id, name, payload, source)
SELECT $1, $2, $3::jsonb, $4 FROM name_lock
ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING
RETURNING id, event_id, name, payload, source, occurred_at, created_at`;

export const findEventById = (t: Tables): string => `
SELECT id, event_id, name, payload, source, occurred_at, created_at FROM ${t.events} WHERE event_id = $1`;

/**
 * Locks, in id order, the runs that have a pending wait the event `$1` with payload `$2` matches
 * (lock order: event name, then runs, then waits).
 */
export const lockWaitingRuns = (t: Tables): string => `
SELECT id FROM ${t.runs}
WHERE id IN (
  SELECT workflow_run_id FROM ${t.waits}
  WHERE status = 'pending' AND event_name = $1 AND $2::jsonb @> match
)
ORDER BY id
FOR NO KEY UPDATE`;

/**
 * Matches every pending wait for the event, stores the payload as its step's result, and makes each
 * run that was suspended due now (the wake trigger then NOTIFYs the workers). A run still executing
 * keeps its status: its executor finds the matched wait when it next suspends.
 */
export const matchWaits = (t: Tables, now: string): string => `
WITH m AS (
  UPDATE ${t.waits} SET status = 'matched', workflow_event_id = $3, updated_at = clock_timestamp()
  WHERE status = 'pending' AND event_name = $1 AND $2::jsonb @> match
  RETURNING workflow_run_id, workflow_step_id
), s AS (
  UPDATE ${t.steps} SET status = 'succeeded', result = $2::jsonb, completed_at = ${now},
         attempts = attempts + 1, updated_at = clock_timestamp(),
         -- The mark for the wait after this one: later events, not this one (see resolveWaits).
         exec_snapshot = pg_current_snapshot()::text || '|' || pg_current_xact_id()::text || '|' || $3::text
  WHERE id IN (SELECT workflow_step_id FROM m)
), r AS (
  UPDATE ${t.runs} SET status = 'ready', wake_at = ${now}, updated_at = clock_timestamp()
  WHERE id IN (SELECT workflow_run_id FROM m)
    AND lease_owner IS NULL AND status IN ('waiting', 'sleeping', 'retrying')
  RETURNING run_id
)
SELECT (SELECT count(*) FROM m)::int AS matched, coalesce((SELECT json_agg(run_id) FROM r), '[]') AS woken`;
