-- Wake idle workers the moment a run becomes due without a lease: a new run, an event that matched a
-- wait, a run released by a stopping worker. The payload is the queue name ('*', any queue, for a name
-- too long for a NOTIFY payload, which must stay under 8000 bytes); NOTIFY is only a hint.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_notify_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{{channel}}wake', CASE WHEN octet_length(NEW.queue_name) <= 1000 THEN NEW.queue_name ELSE '*' END);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS durable_flow_wake_on_insert ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_wake_on_insert
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp())
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();

DROP TRIGGER IF EXISTS durable_flow_wake_on_update ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_wake_on_update
  AFTER UPDATE OF status, wake_at, lease_owner ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (
    NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp()
    AND (OLD.lease_owner IS NOT NULL OR OLD.wake_at IS NULL OR OLD.wake_at > clock_timestamp() OR OLD.status <> NEW.status)
  )
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();
