-- Cancels runs that have not finished, with every run they started (step.invoke) that has not either.
-- Bumping lease_epoch fences their executors: the next write of a worker executing one finds its
-- lease gone. Pending waits are cancelled. Runs are locked children first (descending id), the order
-- in which a finishing child locks its parent.
--
-- Since 002_trust.sql, and a cancelled run's unfinished steps become `cancelled` with its pending waits.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_cancel(p_run_ids bigint[], p_reason text, p_offset_ms float8)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[];
  v_cancelled bigint[];
  v_key text;
BEGIN
  IF cardinality(p_run_ids) = 0 THEN
    RETURN 0;
  END IF;
  WITH RECURSIVE tree AS (
    SELECT r.id, r.run_id FROM {{schema}}.durable_flow_workflow_runs r WHERE r.id = ANY(p_run_ids)
    UNION
    SELECT c.id, c.run_id FROM {{schema}}.durable_flow_workflow_runs c JOIN tree t ON c.parent_run_id = t.run_id
  )
  SELECT array_agg(id) INTO v_ids FROM tree;
  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs
  WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled')
  ORDER BY id DESC
  FOR NO KEY UPDATE;
  -- Keyed runs that were due (woken for a slot, or new) pass their wake-up on to the next in line.
  FOR v_key IN
    SELECT DISTINCT concurrency_key FROM {{schema}}.durable_flow_workflow_runs
    WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled', 'running')
      AND concurrency_key IS NOT NULL AND wake_at IS NOT NULL
  LOOP
    PERFORM {{schema}}.durable_flow_wake_next(v_key);
  END LOOP;
  WITH c AS (
    UPDATE {{schema}}.durable_flow_workflow_runs SET
      status = 'cancelled',
      cancelled_at = statement_timestamp() + p_offset_ms * interval '1 millisecond',
      wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1,
      concurrency_waiting = false,
      error = coalesce(error, jsonb_build_object('class', 'RunCancelled', 'message', p_reason)),
      updated_at = clock_timestamp()
    WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled')
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_cancelled FROM c;
  UPDATE {{schema}}.durable_flow_workflow_waits SET status = 'cancelled', updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_cancelled) AND status = 'pending';
  UPDATE {{schema}}.durable_flow_workflow_steps
  SET status = 'cancelled', completed_at = statement_timestamp() + p_offset_ms * interval '1 millisecond',
      updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_cancelled) AND status IN ('pending', 'running', 'sleeping', 'waiting', 'retrying');
  RETURN cardinality(v_cancelled);
END
$$;
