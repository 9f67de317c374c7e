import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';

/**
 * Stores step results and log lines of one execution in a single statement (one round trip, one
 * commit), fenced by the lease: the `lease` CTE matches the run only while its `lease_epoch` is the
 * one this execution claimed, and every insert selects FROM it, so a worker that lost its lease writes
 * nothing (`held` = 0 tells it so).
 *
 * Without a transition the fence is a `FOR NO KEY UPDATE` row lock: a concurrent claim skips the row
 * until this commit ends, and a claim that already won has bumped the epoch. With a transition the
 * fence is the UPDATE of the run itself (completing, failing or suspending it and releasing the lease).
 *
 * Parameters: $1 run id, $2 lease epoch, $3 steps (JSON array), $4 logs (JSON array), $5 snapshot of
 * this execution, $6 clock offset (ms); with a transition: $7 status, $8 output (JSON text), $9 error,
 * $10 wake time, $11 wake now.
 */
export const commitSteps = (t: Tables, transition: boolean): string => {
  const now = nowSql('$6');
  const lease = transition
    ? `UPDATE ${t.runs} SET
         status = $7,
         output = CASE WHEN $7 = 'completed' THEN $8::jsonb ELSE output END,
         error = CASE WHEN $7 = 'completed' THEN NULL ELSE coalesce($9::jsonb, error) END,
         wake_at = CASE WHEN $11::boolean THEN ${now} ELSE $10::timestamptz END,
         lease_owner = NULL,
         lease_expires_at = NULL,
         claim_count = 0,
         completed_at = CASE WHEN $7 = 'completed' THEN ${now} ELSE completed_at END,
         failed_at = CASE WHEN $7 = 'failed' THEN ${now} ELSE failed_at END,
         interrupted_at = CASE WHEN $7 IN ('sleeping', 'waiting', 'retrying', 'ready') THEN ${now} ELSE interrupted_at END,
         updated_at = clock_timestamp()
       WHERE id = $1 AND lease_epoch = $2
       RETURNING id`
    : `SELECT id FROM ${t.runs} WHERE id = $1 AND lease_epoch = $2 FOR NO KEY UPDATE`;
  return `
WITH lease AS (
  ${lease}
), st AS (
  INSERT INTO ${t.steps} AS s
    (workflow_run_id, name, kind, status, attempts, position, result, error, cursor, metadata,
     exec_snapshot, started_at, completed_at, updated_at)
  SELECT lease.id, x.name, coalesce(x.kind, 'run'), x.status, coalesce(x.attempts, 0), x.position,
         x.result::jsonb, x.error, x.cursor, coalesce(x.metadata, '{}'::jsonb), $5, x.started_at,
         x.completed_at, clock_timestamp()
  FROM lease
  CROSS JOIN jsonb_to_recordset($3::jsonb) AS x(
    name text, kind text, status text, attempts integer, position integer, result text, error jsonb,
    cursor jsonb, metadata jsonb, started_at timestamptz, completed_at timestamptz)
  ON CONFLICT (workflow_run_id, name) DO UPDATE SET
    status = EXCLUDED.status,
    attempts = greatest(s.attempts, EXCLUDED.attempts),
    result = EXCLUDED.result,
    error = EXCLUDED.error,
    cursor = coalesce(EXCLUDED.cursor, s.cursor),
    metadata = s.metadata || EXCLUDED.metadata,
    exec_snapshot = EXCLUDED.exec_snapshot,
    started_at = coalesce(s.started_at, EXCLUDED.started_at),
    completed_at = EXCLUDED.completed_at,
    updated_at = EXCLUDED.updated_at
  RETURNING s.id, s.name
), lg AS (
  INSERT INTO ${t.logs} (workflow_run_id, workflow_step_id, key, level, message, data, created_at, updated_at)
  SELECT lease.id, coalesce(st.id, x.step_id), x.key, x.level, x.message, coalesce(x.data, '{}'::jsonb), x.at, x.at
  FROM lease
  CROSS JOIN jsonb_to_recordset($4::jsonb) AS x(
    step_name text, step_id bigint, key text, level text, message text, data jsonb, at timestamptz)
  LEFT JOIN st ON st.name = x.step_name
  ON CONFLICT (workflow_run_id, key) DO NOTHING
)
SELECT (SELECT count(*) FROM lease)::int AS held,
       coalesce((SELECT json_agg(json_build_array(st.id, st.name)) FROM st), '[]') AS steps`;
};
