-- `throttle` (migration 013; the claim enforces it, see claim.sql). A run waiting for its throttle key's
-- window (throttle_waiting) carries in its wake_at the time its turn should come, and a claim visits the
-- key only when one of its runs is due. When a waiting run leaves the queue without beginning
-- (cancelled, expired by its startBy, paused), the turns behind it move earlier: this trigger makes the
-- first run still waiting for the key due now, so a claim visits the key and re-times its queue. The
-- flag itself stays on the row (queries read waiting runs with status 'enqueued' only).
--
-- Locks: none of its own. The next run's row FOR UPDATE SKIP LOCKED: one a claim holds is being looked at
-- by that claim; the update is a hint (a wake-up time), never the throttle's decision.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_throttle_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE {{schema}}.durable_flow_workflow_runs SET wake_at = statement_timestamp(), updated_at = clock_timestamp()
  WHERE id = (SELECT id FROM {{schema}}.durable_flow_workflow_runs
              WHERE throttle_key = NEW.throttle_key AND started_at IS NULL AND throttle_waiting AND status = 'enqueued'
                AND id <> NEW.id
              ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    AND wake_at > statement_timestamp();
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS durable_flow_runs_throttle_next ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_throttle_next
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.throttle_waiting AND OLD.status = 'enqueued' AND NEW.status <> 'enqueued' AND NEW.started_at IS NULL)
  EXECUTE FUNCTION {{schema}}.durable_flow_throttle_next();
