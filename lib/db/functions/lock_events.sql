CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_lock_events(p_namespace integer, p_names text[]) RETURNS integer
LANGUAGE sql AS $$
  SELECT count(pg_advisory_xact_lock(p_namespace, k))::integer
  FROM (SELECT DISTINCT {{schema}}.durable_flow_event_lock_key(n) AS k FROM unnest(p_names) AS n ORDER BY 1) AS keys
$$;
