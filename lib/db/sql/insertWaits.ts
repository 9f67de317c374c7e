import type { Tables } from '../tables.js';

/**
 * Records new waits of run `$1` (their step rows were stored just before, in the same transaction).
 * `since_snapshot` is the low-water mark: events not yet visible in it count as "after the wait began".
 */
export const insertWaits = (t: Tables): string => `
INSERT INTO ${t.waits}
  (workflow_run_id, workflow_step_id, event_name, match, allow_past_events, since_snapshot, timeout_at)
SELECT $1, s.id, x.event_name, x.match, x.allow_past_events, x.since_snapshot, x.timeout_at
FROM jsonb_to_recordset($2::jsonb) AS x(
  step_name text, event_name text, match jsonb, allow_past_events boolean, since_snapshot text, timeout_at timestamptz)
JOIN ${t.steps} s ON s.workflow_run_id = $1 AND s.name = x.step_name
ON CONFLICT (workflow_run_id, workflow_step_id) DO NOTHING`;
