import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';

/**
 * Creates a run, due after `$10` ms. A second start with the same run id or idempotency key inserts
 * nothing (and the caller reads the first run back): both are unique indexes.
 */
export const insertRun = (t: Tables): string => `
INSERT INTO ${t.runs}
  (run_id, workflow_name, status, queue_name, priority, input, idempotency_key, parent_run_id,
   parent_step_name, concurrency_key, wake_at)
VALUES ($1, $2, 'enqueued', $3, $4, $5::jsonb, $6, $7, $8, $9, ${nowSql('$11')} + $10::float8 * interval '1 millisecond')
ON CONFLICT DO NOTHING
RETURNING run_id`;

/** The run a conflicting start collided with: same idempotency key first, then same run id. */
export const findRunByKeys = (t: Tables): string => `
SELECT run_id FROM ${t.runs}
WHERE ($2::text IS NOT NULL AND idempotency_key = $2) OR run_id = $1
ORDER BY (idempotency_key IS NOT DISTINCT FROM $2) DESC
LIMIT 1`;

/**
 * Creates a run already claimed by a worker of this process that has a free slot (`$10` owner, `$11`
 * lease ms): it starts at once, without a NOTIFY or a claim round trip. Same conflict rules as
 * insertRun; returns what a claim returns.
 */
export const insertClaimedRun = (t: Tables): string => {
  const now = nowSql('$12');
  return `
INSERT INTO ${t.runs}
  (run_id, workflow_name, status, queue_name, priority, input, idempotency_key, parent_run_id,
   parent_step_name, concurrency_key, wake_at, lease_owner, lease_epoch, lease_expires_at, claim_count,
   attempts, started_at)
VALUES ($1, $2, 'running', $3, $4, $5::jsonb, $6, $7, $8, $9, ${now} + $11::float8 * interval '1 millisecond',
        $10, 1, ${now} + $11::float8 * interval '1 millisecond', 1, 1, ${now})
ON CONFLICT DO NOTHING
RETURNING id, run_id, workflow_name, input::text AS input, lease_epoch, claim_count, attempts, created_snapshot,
          parent_run_id, queue_name, false AS replay, extract(epoch FROM ${now}) * 1000 AS db_now_ms,
          pg_current_snapshot()::text AS snapshot`;
};
