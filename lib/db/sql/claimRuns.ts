import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';

/**
 * Claims up to `$3` due runs for one worker and, in the same round trip, loads their step history and
 * the time the next not-yet-due run wakes.
 *
 * Lock: `FOR UPDATE SKIP LOCKED` on the due rows, so concurrent claimers never wait for each other and
 * never claim the same run. A run that is executing is due again only when its lease has expired
 * (wake_at is the lease expiry then); the claim bumps `lease_epoch`, which fences every later write of
 * the worker that lost it. `claim_count` counts claims since the run last stopped cleanly: a run whose
 * execution keeps killing its process is failed by the executor once it passes the limit.
 */
export const claimRuns = (t: Tables): string => {
  const now = nowSql('$6');
  return `
WITH due AS (
  SELECT id, started_at AS previous_started_at
  FROM ${t.runs}
  WHERE wake_at <= ${now}
    AND queue_name = ANY($1::text[])
    AND workflow_name = ANY($2::text[])
  ORDER BY priority, wake_at, id
  LIMIT $3
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE ${t.runs} r SET
    status = 'running',
    lease_owner = $4,
    lease_epoch = r.lease_epoch + 1,
    lease_expires_at = ${now} + $5::float8 * interval '1 millisecond',
    wake_at = ${now} + $5::float8 * interval '1 millisecond',
    claim_count = r.claim_count + 1,
    attempts = r.attempts + 1,
    started_at = coalesce(r.started_at, ${now}),
    updated_at = clock_timestamp()
  FROM due
  WHERE r.id = due.id
  RETURNING r.id, r.run_id, r.workflow_name, r.input::text AS input, r.lease_epoch, r.claim_count,
            r.attempts, r.created_snapshot, r.parent_run_id, r.queue_name,
            due.previous_started_at IS NOT NULL AS replay
)
SELECT
  coalesce((SELECT json_agg(c) FROM claimed c), '[]') AS runs,
  coalesce((
    SELECT json_agg(json_build_object(
      'run', s.workflow_run_id, 'id', s.id, 'name', s.name, 'kind', s.kind, 'status', s.status,
      'attempts', s.attempts, 'position', s.position, 'result', s.result::text, 'error', s.error,
      'cursor', s.cursor, 'metadata', s.metadata, 'snapshot', s.exec_snapshot,
      'waitId', w.id, 'waitStatus', w.status
    ) ORDER BY s.id)
    FROM ${t.steps} s
    LEFT JOIN ${t.waits} w ON w.workflow_step_id = s.id
    WHERE s.workflow_run_id IN (SELECT id FROM claimed WHERE replay)
  ), '[]') AS steps,
  (SELECT extract(epoch FROM min(wake_at) - ${now}) * 1000
     FROM ${t.runs}
    WHERE wake_at > ${now} AND queue_name = ANY($1::text[]) AND workflow_name = ANY($2::text[])) AS next_wake_ms,
  extract(epoch FROM ${now}) * 1000 AS db_now_ms,
  pg_current_snapshot()::text AS snapshot`;
};
