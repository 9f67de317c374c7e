-- step.waitAny / step.waitAll (since 010_wait_groups.sql): writes the result of the group steps p_steps
-- from their wait rows, right after a caller matched some of their branches: durable_flow_notify, a
-- finishing watched run (durable_flow_run_finished) or a suspension (settleWaits). The caller holds the
-- waiting run's row lock, which every writer of a run's waits takes before its waits, so the branches of
-- one step are decided by one transaction at a time and this function sees the others' outcome.
-- - 'any': the matched row (callers match at most one per step; the first by id if ever more) wins: the
--   step succeeds with { key, value }, and every other row of the step is cancelled, so no later event,
--   finishing run or timer can match it.
-- - 'all': once every row is matched, the step succeeds with { <key>: <value>, ... }.
-- - A group step already settled otherwise (a suspension failed it with WaitTimeoutError) has its pending
--   rows cancelled.
-- Returns the steps it completed, with their run and result.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_settle_groups(p_steps bigint[], p_now timestamptz)
RETURNS TABLE (run_pk bigint, step_pk bigint, step_result jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH g AS (
    SELECT w.workflow_step_id AS sid, min(w.group_mode) AS mode, count(*) AS total,
           count(*) FILTER (WHERE w.status = 'matched') AS matched,
           (array_agg(jsonb_build_object('key', w.branch, 'value', coalesce(w.result, 'null'::jsonb)) ORDER BY w.id)
              FILTER (WHERE w.status = 'matched'))[1] AS first,
           jsonb_object_agg(w.branch, coalesce(w.result, 'null'::jsonb)) FILTER (WHERE w.status = 'matched') AS every
    FROM {{schema}}.durable_flow_workflow_waits w
    WHERE w.workflow_step_id = ANY(p_steps) AND w.group_mode IS NOT NULL
    GROUP BY w.workflow_step_id
  ), done AS (
    UPDATE {{schema}}.durable_flow_workflow_steps s
    SET status = 'succeeded', result = CASE WHEN g.mode = 'any' THEN g.first ELSE g.every END,
        completed_at = p_now, attempts = s.attempts + 1, updated_at = clock_timestamp()
    FROM g
    WHERE s.id = g.sid AND s.status NOT IN ('succeeded', 'failed', 'cancelled')
      AND ((g.mode = 'any' AND g.matched > 0) OR (g.mode = 'all' AND g.matched = g.total))
    RETURNING s.workflow_run_id, s.id, s.result
  )
  SELECT done.workflow_run_id, done.id, done.result FROM done;

  UPDATE {{schema}}.durable_flow_workflow_waits w SET status = 'cancelled', updated_at = clock_timestamp()
  FROM {{schema}}.durable_flow_workflow_steps s
  WHERE w.workflow_step_id = ANY(p_steps) AND w.group_mode IS NOT NULL AND w.status = 'pending'
    AND s.id = w.workflow_step_id AND s.status IN ('succeeded', 'failed', 'cancelled');
END
$$;
