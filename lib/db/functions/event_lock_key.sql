-- The advisory lock that serialises a wait being created with an event of its name being stored. Names
-- share 64 locks (by hash), so one transaction storing or awaiting any number of event names holds at
-- most 64 of them: 20 requests of 1,000 distinct names each cannot exhaust the lock table. Taken in
-- key order everywhere (durable_flow_lock_events).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_event_lock_key(p_name text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtext(p_name) & 63 $$;
