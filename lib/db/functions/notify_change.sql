-- Live changes: '<table letter>:<c|u>:<id>', sent only while a process asked for them.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_live WHERE id = 1 AND live_until > now()) THEN
    PERFORM pg_notify('{{channel}}changes', TG_ARGV[0] || ':' || CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END || ':' || NEW.id);
  END IF;
  RETURN NULL;
END
$$;

-- Heartbeats only move the lease (they leave updated_at alone), so they send no change.
DROP TRIGGER IF EXISTS durable_flow_runs_created ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_created
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');

DROP TRIGGER IF EXISTS durable_flow_runs_changes ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_changes
  AFTER UPDATE ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.updated_at IS DISTINCT FROM NEW.updated_at)
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');

DROP TRIGGER IF EXISTS durable_flow_steps_changes ON {{schema}}.durable_flow_workflow_steps;
CREATE TRIGGER durable_flow_steps_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_steps
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('s');

DROP TRIGGER IF EXISTS durable_flow_waits_changes ON {{schema}}.durable_flow_workflow_waits;
CREATE TRIGGER durable_flow_waits_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_waits
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('w');

DROP TRIGGER IF EXISTS durable_flow_events_changes ON {{schema}}.durable_flow_workflow_events;
CREATE TRIGGER durable_flow_events_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_events
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('e');

DROP TRIGGER IF EXISTS durable_flow_logs_changes ON {{schema}}.durable_flow_workflow_logs;
CREATE TRIGGER durable_flow_logs_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_logs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('l');
