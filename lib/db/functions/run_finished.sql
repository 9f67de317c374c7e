-- A watched run finished (completed, failed or cancelled): every wait watching it (step.invoke,
-- step.waitForWorkflow) is matched, its step stores the outcome, and runs suspended on it become due.
-- It runs on the row lock of the finishing run. A suspension creating a wait on a run sets that run's
-- `watched` flag (taking its row lock) in the transaction that inserts the wait, so either the finish
-- sees the flag and the wait, or the suspension sees the finished run. Unwatched runs skip all this.
--
-- Since 002_trust.sql, and a wait whose timeout has passed is left to its timeout (the suspension settles it);
-- the wait step keeps the mark it was created with (see durable_flow_notify).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_outcome jsonb := jsonb_build_object('runId', NEW.run_id, 'workflow', NEW.workflow_name, 'status', NEW.status);
BEGIN
  IF NEW.status = 'completed' THEN
    IF NEW.output IS NOT NULL THEN
      v_outcome := v_outcome || jsonb_build_object('result', NEW.output);
    END IF;
  ELSE
    v_outcome := v_outcome || jsonb_build_object('error', coalesce(NEW.error, 'null'::jsonb));
  END IF;
  WITH m AS (
    UPDATE {{schema}}.durable_flow_workflow_waits w SET status = 'matched', updated_at = clock_timestamp()
    WHERE w.watched_run_id = NEW.run_id AND w.status = 'pending'
      AND (w.timeout_at IS NULL OR w.timeout_at > coalesce(NEW.completed_at, NEW.failed_at, NEW.cancelled_at, statement_timestamp()))
    RETURNING w.workflow_run_id, w.workflow_step_id
  ), s AS (
    UPDATE {{schema}}.durable_flow_workflow_steps s
    SET status = 'succeeded', result = v_outcome, completed_at = statement_timestamp(),
        attempts = s.attempts + 1, updated_at = clock_timestamp()
    WHERE s.id IN (SELECT workflow_step_id FROM m)
  )
  UPDATE {{schema}}.durable_flow_workflow_runs r
  SET status = 'ready', wake_at = statement_timestamp(), updated_at = clock_timestamp()
  WHERE r.id IN (SELECT workflow_run_id FROM m)
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
