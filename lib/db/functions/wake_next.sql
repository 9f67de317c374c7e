-- Wakes the first run waiting for a concurrency slot of p_key (a slot just freed up). Takes the key's
-- advisory lock, which durable_flow_claim holds while it counts and blocks runs of that key, so a run
-- is never blocked just after the slot it needed was freed.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_wake_next(p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock({{concurrency_lock_namespace}}, hashtext(p_key));
  UPDATE {{schema}}.durable_flow_workflow_runs SET wake_at = statement_timestamp(), concurrency_waiting = false,
         updated_at = clock_timestamp()
  WHERE id = (SELECT id FROM {{schema}}.durable_flow_workflow_runs
              WHERE concurrency_key = p_key AND concurrency_waiting
              ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED);
END
$$;
