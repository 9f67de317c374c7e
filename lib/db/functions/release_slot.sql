-- A run with a concurrency key stopped executing (suspended, finished, handed back): its slot is free.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_release_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_wake_next(NEW.concurrency_key);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS durable_flow_runs_release_slot ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_release_slot
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.concurrency_key IS NOT NULL)
  EXECUTE FUNCTION {{schema}}.durable_flow_release_slot();
