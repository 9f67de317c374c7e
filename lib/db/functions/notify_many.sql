-- Many events in one round trip (signed ingest: one request, one transaction): the name locks of all
-- of them first, in key order, then each event exactly as durable_flow_notify stores it. Returns one
-- row per event, in the order given.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_notify_many(
  p_events jsonb, p_source text, p_lock_namespace integer, p_offset_ms float8
) RETURNS TABLE (
  event_pk bigint, event_key text, event_name text, event_payload jsonb, event_occurred_at timestamptz,
  is_duplicate boolean, is_conflict boolean, matched_waits integer
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_item record;
BEGIN
  PERFORM {{schema}}.durable_flow_lock_events(p_lock_namespace, ARRAY(SELECT e->>'name' FROM jsonb_array_elements(p_events) e));
  FOR v_item IN SELECT e->>'id' AS id, e->>'name' AS name, e->'payload' AS payload
                FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, n) ORDER BY n
  LOOP
    RETURN QUERY SELECT n.event_pk, n.event_key, n.event_name, n.event_payload, n.event_occurred_at, n.is_duplicate,
                        n.is_conflict, n.matched_waits
      FROM {{schema}}.durable_flow_notify(v_item.id, v_item.name, coalesce(v_item.payload, '{}'::jsonb), p_source,
                                          p_lock_namespace, p_offset_ms, NULL, 0, 0, '{}', '{}', NULL) n;
  END LOOP;
END
$$;
