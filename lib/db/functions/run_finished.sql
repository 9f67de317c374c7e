-- A watched run finished (completed, failed or cancelled): every wait watching it (step.invoke,
-- step.waitForWorkflow) is matched, its step stores the outcome, and runs suspended on it become due.
-- It runs on the row lock of the finishing run. A suspension creating a wait on a run sets that run's
-- `watched` flag (taking its row lock) in the transaction that inserts the wait, so either the finish
-- sees the flag and the wait, or the suspension sees the finished run. Unwatched runs skip all this.
--
-- Since 002_trust.sql, and a wait whose timeout has passed is left to its timeout (the suspension settles it);
-- the wait step keeps the mark it was created with (see durable_flow_notify).
-- Since 010_wait_groups.sql, a branch of step.waitAny / waitAll is matched as durable_flow_notify does, and
-- the waiting runs are locked before their waits (notify's order).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_outcome jsonb := jsonb_build_object('runId', NEW.run_id, 'workflow', NEW.workflow_name, 'status', NEW.status);
  v_runs bigint[];
  v_groups bigint[];
BEGIN
  IF NEW.status = 'completed' THEN
    IF NEW.output IS NOT NULL THEN
      v_outcome := v_outcome || jsonb_build_object('result', NEW.output);
    END IF;
  ELSE
    v_outcome := v_outcome || jsonb_build_object('error', coalesce(NEW.error, 'null'::jsonb));
  END IF;
  -- The waiting runs first, as notify locks them (runs, then their waits): the branches of one waitAny /
  -- waitAll step are decided by one transaction at a time.
  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs r
  WHERE r.id IN (SELECT w.workflow_run_id FROM {{schema}}.durable_flow_workflow_waits w
                 WHERE w.watched_run_id = NEW.run_id AND w.status = 'pending')
  ORDER BY r.id DESC
  FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  WITH c AS (
    SELECT w.id, w.workflow_step_id, w.group_mode FROM {{schema}}.durable_flow_workflow_waits w
    WHERE w.watched_run_id = NEW.run_id AND w.status = 'pending'
      AND (w.timeout_at IS NULL OR w.timeout_at > coalesce(NEW.completed_at, NEW.failed_at, NEW.cancelled_at, statement_timestamp()))
  ), pick AS (
    -- At most one branch of a waitAny step (the first declared) takes the outcome.
    SELECT DISTINCT ON (CASE WHEN c.group_mode = 'any' THEN c.workflow_step_id ELSE -c.id END) c.id
    FROM c ORDER BY CASE WHEN c.group_mode = 'any' THEN c.workflow_step_id ELSE -c.id END, c.id
  ), m AS (
    UPDATE {{schema}}.durable_flow_workflow_waits w
    SET status = 'matched', updated_at = clock_timestamp(), result = CASE WHEN w.group_mode IS NOT NULL THEN v_outcome END
    WHERE w.id IN (SELECT id FROM pick) AND w.status = 'pending'
    RETURNING w.workflow_run_id, w.workflow_step_id, w.group_mode
  ), s AS (
    UPDATE {{schema}}.durable_flow_workflow_steps s
    SET status = 'succeeded', result = v_outcome, completed_at = statement_timestamp(),
        attempts = s.attempts + 1, updated_at = clock_timestamp()
    WHERE s.id IN (SELECT workflow_step_id FROM m WHERE group_mode IS NULL)
  )
  SELECT array_agg(DISTINCT workflow_run_id) FILTER (WHERE group_mode IS NULL),
         array_agg(DISTINCT workflow_step_id) FILTER (WHERE group_mode IS NOT NULL)
  INTO v_runs, v_groups FROM m;
  -- A branch of a waitAny / waitAll step (see durable_flow_notify): its run wakes once the step is complete.
  IF v_groups IS NOT NULL THEN
    v_runs := coalesce(v_runs, '{}') || ARRAY(SELECT g.run_pk FROM {{schema}}.durable_flow_settle_groups(v_groups, statement_timestamp()) g);
  END IF;
  UPDATE {{schema}}.durable_flow_workflow_runs r
  SET status = 'ready', wake_at = statement_timestamp(), updated_at = clock_timestamp()
  WHERE r.id = ANY(v_runs)
    AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying');
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS durable_flow_runs_finished ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_finished
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.watched AND NEW.status IN ('completed', 'failed', 'cancelled')
                     AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
  EXECUTE FUNCTION {{schema}}.durable_flow_run_finished();
