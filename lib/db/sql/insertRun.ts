import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';

/** The columns and values both inserts share ($1–$10), plus the cancelOn triggers of the run ($11). */
const COLUMNS = `run_id, workflow_name, queue_name, priority, input, idempotency_key, parent_run_id,
   parent_step_name, concurrency_key, concurrency_limit`;
const VALUES = `$1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10`;

const withCancelTriggers = (t: Tables, insert: string, returning: string): string => `
WITH run AS (
  ${insert}
  ON CONFLICT DO NOTHING
  RETURNING ${returning}
), triggers AS (
  INSERT INTO ${t.cancelTriggers} (workflow_run_id, event_name, match)
  SELECT run.id, x.event, x.match FROM run, jsonb_to_recordset($11::jsonb) AS x(event text, match jsonb)
)
SELECT * FROM run`;

/**
 * Creates a run, due after `$12` ms. A second start with the same run id or idempotency key inserts
 * nothing (and the caller reads the first run back): both are unique indexes.
 */
export const insertRun = (t: Tables): string =>
  withCancelTriggers(
    t,
    `INSERT INTO ${t.runs} (${COLUMNS}, status, wake_at)
     VALUES (${VALUES}, 'enqueued', ${nowSql('$13')} + $12::float8 * interval '1 millisecond')`,
    'id, run_id',
  );

/** The run a conflicting start collided with: same idempotency key first, then same run id. */
export const findRunByKeys = (t: Tables): string => `
SELECT run_id FROM ${t.runs}
WHERE ($2::text IS NOT NULL AND idempotency_key = $2) OR run_id = $1
ORDER BY (idempotency_key IS NOT DISTINCT FROM $2) DESC
LIMIT 1`;

/**
 * Creates a run already claimed by a worker of this process that has a free slot (`$12` owner, `$13`
 * lease ms): it starts at once, without a NOTIFY or a claim round trip. Same conflict rules as
 * insertRun; returns what a claim returns. Never used for runs with a concurrency limit.
 */
export const insertClaimedRun = (t: Tables): string => {
  const now = nowSql('$14');
  return withCancelTriggers(
    t,
    `INSERT INTO ${t.runs} (${COLUMNS}, status, wake_at, lease_owner, lease_epoch, lease_expires_at, claim_count, attempts, started_at)
     VALUES (${VALUES}, 'running', ${now} + $13::float8 * interval '1 millisecond', $12, 1,
             ${now} + $13::float8 * interval '1 millisecond', 1, 1, ${now})`,
    `id, run_id, workflow_name, input::text AS input, lease_epoch, claim_count, attempts, created_snapshot,
     parent_run_id, queue_name, false AS replay, extract(epoch FROM ${now}) * 1000 AS db_now_ms,
     pg_current_snapshot()::text AS snapshot`,
  );
};
