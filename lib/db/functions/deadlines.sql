-- Run deadlines (migration 011): `timeout` (deadline_at: RUN_TIMEOUT) and `startBy` (start_by:
-- DEADLINE_EXCEEDED). Enforced in SQL so that it holds whatever the run is doing and whoever runs it:
--
-- * durable_flow_deadline_wake (trigger, BEFORE INSERT OR UPDATE): a run that is not finished is never
--   due later than its deadline (nor, until it first starts, than its start-by). It clamps wake_at
--   whatever the statement set it to: a sleep, a wait with no timeout (NULL), a retry, a lease or
--   heartbeat (a running run's wake_at is its lease expiry), a run parked for a concurrency slot or
--   paused (NULL), a delayed start. So at its deadline every run is due, and the claim that meets it
--   ends it (durable_flow_expire) instead of leasing it.
-- * durable_flow_deadline_inherit (trigger, BEFORE INSERT of a child run): a child's deadline is never
--   later than its parent's, so a parent that times out takes its unfinished children with it (each
--   fails with RUN_TIMEOUT by itself, with no lock on the tree).
-- * durable_flow_expire: ends the expired runs among p_ids (the caller may hold their locks; it waits
--   otherwise). Called by every claim (for the expired due runs it meets, of any queue and workflow)
--   and by a worker whose own execution reached its deadline.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_deadline_wake() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_limit timestamptz;
BEGIN
  IF NEW.status NOT IN ('completed', 'failed', 'cancelled') THEN
    -- least() ignores NULLs: the earlier of the two that apply.
    v_limit := least(NEW.deadline_at, CASE WHEN NEW.started_at IS NULL THEN NEW.start_by END);
    IF v_limit IS NOT NULL AND (NEW.wake_at IS NULL OR NEW.wake_at > v_limit) THEN
      NEW.wake_at := v_limit;
    END IF;
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_deadline_inherit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.deadline_at := least(NEW.deadline_at,
    (SELECT p.deadline_at FROM {{schema}}.durable_flow_workflow_runs p WHERE p.run_id = NEW.parent_run_id));
  RETURN NEW;
END
$$;

-- BEFORE triggers fire in name order: a child takes its parent's deadline first, then its wake_at is clamped.
DROP TRIGGER IF EXISTS durable_flow_runs_deadline_inherit ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_deadline_inherit
  BEFORE INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.parent_run_id IS NOT NULL)
  EXECUTE FUNCTION {{schema}}.durable_flow_deadline_inherit();

DROP TRIGGER IF EXISTS durable_flow_runs_deadline_wake ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_deadline_wake
  BEFORE INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.deadline_at IS NOT NULL OR (NEW.start_by IS NOT NULL AND NEW.started_at IS NULL))
  EXECUTE FUNCTION {{schema}}.durable_flow_deadline_wake();

-- Ends the runs of p_ids whose deadline has passed at p_now (the flow's clock); returns their ids.
-- A run never started whose start-by passed first is cancelled (DEADLINE_EXCEEDED); otherwise a run
-- past its deadline fails (RUN_TIMEOUT). Like durable_flow_cancel: lease released and lease_epoch
-- bumped (a worker still executing it writes nothing more: its next write or heartbeat finds the
-- lease gone and aborts its step's signal), pending waits and unfinished steps cancelled. A keyed run
-- that was due without running passes its wake-up on to the next run of its key (durable_flow_wake_next);
-- one that was running frees its slot through the release_slot trigger. Both take the key's advisory
-- lock: a caller that also takes key locks takes these first, in the same sorted pass (see claim.sql).
-- Locks: the runs, id descending (the order of every multi-run lock), for a caller that did not lock them.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_expire(p_ids bigint[], p_now timestamptz)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
  v_ended bigint[];
  v_key text;
BEGIN
  IF cardinality(p_ids) = 0 THEN
    RETURN '{}';
  END IF;
  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs WHERE id = ANY(p_ids) ORDER BY id DESC FOR NO KEY UPDATE;
  FOR v_key IN
    SELECT DISTINCT concurrency_key FROM {{schema}}.durable_flow_workflow_runs
    WHERE id = ANY(p_ids) AND concurrency_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled', 'running')
      AND NOT concurrency_waiting AND wake_at IS NOT NULL
      AND (deadline_at <= p_now OR (started_at IS NULL AND start_by <= p_now))
    ORDER BY 1
  LOOP
    PERFORM {{schema}}.durable_flow_wake_next(v_key);
  END LOOP;
  WITH x AS (
    SELECT r.id, (r.started_at IS NULL AND r.start_by <= p_now AND (r.deadline_at IS NULL OR r.start_by <= r.deadline_at)) AS never_started
    FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.id = ANY(p_ids) AND r.status NOT IN ('completed', 'failed', 'cancelled')
      AND (r.deadline_at <= p_now OR (r.started_at IS NULL AND r.start_by <= p_now))
  ), ended AS (
    UPDATE {{schema}}.durable_flow_workflow_runs r SET
      status = CASE WHEN x.never_started THEN 'cancelled' ELSE 'failed' END,
      cancelled_at = CASE WHEN x.never_started THEN p_now ELSE r.cancelled_at END,
      failed_at = CASE WHEN x.never_started THEN r.failed_at ELSE p_now END,
      error = CASE WHEN x.never_started
        THEN jsonb_build_object('class', 'DurableFlowError', 'code', 'DEADLINE_EXCEEDED', 'message',
          'The run had not started by its startBy deadline (' || to_char(r.start_by AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '): cancelled without running')
        ELSE jsonb_build_object('class', 'DurableFlowError', 'code', 'RUN_TIMEOUT', 'message',
          'The run did not finish within its timeout (deadline ' || to_char(r.deadline_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || ')')
        END,
      wake_at = NULL, held_wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = r.lease_epoch + 1,
      concurrency_waiting = false, pause_requested = false, updated_at = clock_timestamp()
    FROM x WHERE r.id = x.id
    RETURNING r.id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_ended FROM ended;
  UPDATE {{schema}}.durable_flow_workflow_waits SET status = 'cancelled', updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_ended) AND status = 'pending';
  UPDATE {{schema}}.durable_flow_workflow_steps SET status = 'cancelled', completed_at = p_now, updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_ended) AND status IN ('pending', 'running', 'sleeping', 'waiting', 'retrying');
  RETURN v_ended;
END
$$;
