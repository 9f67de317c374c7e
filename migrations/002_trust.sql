-- durable-flow schema, version 2: the promises of DESIGN.md "Trust". Released migrations are never
-- edited; functions are redefined here whole (docs/ARCHITECTURE.md explains each lock they take).

-- A wait sees every event committed after the step before it first began, whatever crashes happen in
-- between. resume_snapshot is the low-water mark of the executions since the run last stopped cleanly:
-- set by the first claim after a clean stop, kept by the claims that follow a crash (a step the dead
-- execution began, perhaps firing the event its next wait needs, may have left no row at all).
ALTER TABLE {{schema}}.durable_flow_workflow_runs ADD COLUMN resume_snapshot text;

-- Idempotency keys belong to their workflow: two workflows may use the same key.
DROP INDEX {{schema}}.durable_flow_runs_idempotency_key;
CREATE UNIQUE INDEX durable_flow_runs_workflow_idempotency_key
  ON {{schema}}.durable_flow_workflow_runs (workflow_name, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A cancelled run's unfinished steps are `cancelled`, not left looking live (sleeping, waiting…).
ALTER TABLE {{schema}}.durable_flow_workflow_steps DROP CONSTRAINT durable_flow_steps_status_check;
ALTER TABLE {{schema}}.durable_flow_workflow_steps ADD CONSTRAINT durable_flow_steps_status_check CHECK (status IN
  ('pending', 'running', 'succeeded', 'sleeping', 'waiting', 'retrying', 'failed', 'cancelled'));
UPDATE {{schema}}.durable_flow_workflow_steps s SET status = 'cancelled', updated_at = clock_timestamp()
FROM {{schema}}.durable_flow_workflow_runs r
WHERE r.id = s.workflow_run_id AND r.status = 'cancelled'
  AND s.status IN ('pending', 'running', 'sleeping', 'waiting', 'retrying');
UPDATE {{schema}}.durable_flow_workflow_waits w SET status = 'cancelled', updated_at = clock_timestamp()
FROM {{schema}}.durable_flow_workflow_runs r
WHERE r.id = w.workflow_run_id AND r.status = 'cancelled' AND w.status = 'pending';

-- The advisory lock that serialises a wait being created with an event of its name being stored. Names
-- share 64 locks (by hash), so one transaction storing or awaiting any number of event names holds at
-- most 64 of them: 20 requests of 1,000 distinct names each cannot exhaust the lock table. Taken in
-- key order everywhere (durable_flow_lock_events).
CREATE FUNCTION {{schema}}.durable_flow_event_lock_key(p_name text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtext(p_name) & 63 $$;

CREATE FUNCTION {{schema}}.durable_flow_lock_events(p_namespace integer, p_names text[]) RETURNS integer
LANGUAGE sql AS $$
  SELECT count(pg_advisory_xact_lock(p_namespace, k))::integer
  FROM (SELECT DISTINCT {{schema}}.durable_flow_event_lock_key(n) AS k FROM unnest(p_names) AS n ORDER BY 1) AS keys
$$;

-- Now with p_mark: the low-water mark of the execution the claim starts (see resume_snapshot above).
DROP FUNCTION {{schema}}.durable_flow_lease(bigint[], text, timestamptz, timestamptz);
CREATE FUNCTION {{schema}}.durable_flow_lease(
  p_ids bigint[], p_owner text, p_now timestamptz, p_lease timestamptz, p_mark text, OUT runs jsonb, OUT replay bigint[]
) LANGUAGE sql AS $$
  WITH previous AS (
    SELECT id, started_at FROM {{schema}}.durable_flow_workflow_runs WHERE id = ANY(p_ids)
  ), claimed AS (
    UPDATE {{schema}}.durable_flow_workflow_runs r SET
      status = 'running', lease_owner = p_owner, lease_epoch = r.lease_epoch + 1,
      lease_expires_at = p_lease, wake_at = p_lease, claim_count = r.claim_count + 1,
      attempts = r.attempts + 1, started_at = coalesce(r.started_at, p_now), updated_at = clock_timestamp(),
      -- After a clean stop, this execution's mark; after a crash, the mark of the execution that crashed
      -- (a run inserted already claimed has none: its creation's).
      resume_snapshot = CASE WHEN r.claim_count = 0 THEN p_mark ELSE coalesce(r.resume_snapshot, r.created_snapshot) END
    FROM previous
    WHERE r.id = previous.id
    RETURNING r.id, r.run_id, r.workflow_name, r.input::text AS input, r.lease_epoch, r.claim_count,
              r.attempts, r.created_snapshot, r.resume_snapshot, r.parent_run_id, r.queue_name,
              previous.started_at IS NOT NULL AS replay
  )
  SELECT coalesce(jsonb_agg(c), '[]'), coalesce(array_agg(c.id) FILTER (WHERE c.replay), '{}') FROM claimed c
$$;

-- As in 001, with the claim's snapshot handed to durable_flow_lease as the executions' mark.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_claim(
  p_queues text[], p_workflows text[], p_limit integer, p_owner text, p_lease_ms float8, p_offset_ms float8
) RETURNS TABLE (runs json, steps json, next_wake_ms float8, db_now_ms float8, snapshot text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
  v_now timestamptz := statement_timestamp() + p_offset_ms * interval '1 millisecond';
  v_lease timestamptz := v_now + p_lease_ms * interval '1 millisecond';
  v_mark text := pg_current_snapshot()::text;
  v_runs jsonb := '[]';
  v_more jsonb;
  v_replay bigint[] := '{}';
  v_more_replay bigint[];
  v_count integer := 0;
  v_due bigint[];
  v_candidates bigint[];
  v_keys text[];
  v_admit bigint[];
  v_block bigint[];
BEGIN
  -- Runs without a concurrency limit: lock the due ones, lease them.
  SELECT coalesce(array_agg(d.id), '{}'), count(*) INTO v_due, v_count
  FROM (
    SELECT r.id FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.wake_at <= v_now AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
      AND r.concurrency_key IS NULL
    ORDER BY r.priority, r.wake_at, r.id
    LIMIT p_limit
    FOR UPDATE OF r SKIP LOCKED
  ) d;
  IF v_count > 0 THEN
    SELECT l.runs, l.replay INTO v_runs, v_replay FROM {{schema}}.durable_flow_lease(v_due, p_owner, v_now, v_lease, v_mark) l;
  END IF;

  -- Runs with a concurrency limit, when slots remain and some are due.
  IF v_count < p_limit AND EXISTS (
    SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.wake_at <= v_now AND r.concurrency_key IS NOT NULL
      AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
  ) THEN
    SELECT array_agg(c.id), array_agg(DISTINCT c.concurrency_key) INTO v_candidates, v_keys
    FROM (
      SELECT r.id, r.concurrency_key FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at <= v_now AND r.concurrency_key IS NOT NULL
        AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
      ORDER BY r.priority, r.wake_at, r.id
      LIMIT (p_limit - v_count) * 4
    ) c;
    PERFORM pg_advisory_xact_lock(1684433016, k.h)
    FROM (SELECT DISTINCT hashtext(key) AS h FROM unnest(v_keys) AS key ORDER BY 1) AS k;
    WITH locked AS (
      SELECT r.id, r.concurrency_key, r.concurrency_limit, r.priority, r.wake_at
      FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.id = ANY(v_candidates) AND r.wake_at <= v_now
      FOR UPDATE SKIP LOCKED
    ), busy AS (
      SELECT r.concurrency_key, count(*) AS n FROM {{schema}}.durable_flow_workflow_runs r
      -- Every run of the key holding a live lease, candidates included: one may have been claimed by
      -- another worker between choosing the candidates and taking the key lock.
      WHERE r.concurrency_key = ANY(v_keys) AND r.status = 'running' AND r.lease_expires_at > v_now
      GROUP BY r.concurrency_key
    ), ranked AS (
      SELECT l.id, l.priority, l.wake_at,
             row_number() OVER (PARTITION BY l.concurrency_key ORDER BY l.priority, l.wake_at, l.id)
               <= greatest(coalesce(l.concurrency_limit, 1) - coalesce(b.n, 0), 0) AS fits
      FROM locked l LEFT JOIN busy b ON b.concurrency_key = l.concurrency_key
    ), numbered AS (
      SELECT id, fits, row_number() OVER (PARTITION BY fits ORDER BY priority, wake_at, id) AS n FROM ranked
    )
    SELECT coalesce(array_agg(id) FILTER (WHERE fits AND n <= p_limit - v_count), '{}'),
           coalesce(array_agg(id) FILTER (WHERE NOT fits), '{}')
      INTO v_admit, v_block
    FROM numbered;

    -- No free slot: park them until a run of their key leaves 'running' (durable_flow_wake_next).
    UPDATE {{schema}}.durable_flow_workflow_runs SET wake_at = NULL, concurrency_waiting = true,
           updated_at = clock_timestamp()
    WHERE id = ANY(v_block);

    SELECT l.runs, l.replay INTO v_more, v_more_replay
    FROM {{schema}}.durable_flow_lease(v_admit, p_owner, v_now, v_lease, v_mark) l;
    v_runs := v_runs || v_more;
    v_replay := v_replay || v_more_replay;
  END IF;

  RETURN QUERY SELECT
    v_runs::json,
    {{schema}}.durable_flow_history(v_replay),
    (SELECT extract(epoch FROM n.wake_at - v_now)::float8 * 1000
       FROM (SELECT r.wake_at FROM {{schema}}.durable_flow_workflow_runs r
             WHERE r.wake_at > v_now AND r.queue_name = ANY(p_queues)
               AND (r.workflow_name || '') = ANY(p_workflows)
             ORDER BY r.wake_at LIMIT 1) n),
    extract(epoch FROM v_now)::float8 * 1000,
    v_mark;
END
$$;

-- As in 001, and a cancelled run's unfinished steps become `cancelled` with its pending waits.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_cancel(p_run_ids bigint[], p_reason text, p_offset_ms float8)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[];
  v_cancelled bigint[];
  v_key text;
BEGIN
  IF cardinality(p_run_ids) = 0 THEN
    RETURN 0;
  END IF;
  WITH RECURSIVE tree AS (
    SELECT r.id, r.run_id FROM {{schema}}.durable_flow_workflow_runs r WHERE r.id = ANY(p_run_ids)
    UNION
    SELECT c.id, c.run_id FROM {{schema}}.durable_flow_workflow_runs c JOIN tree t ON c.parent_run_id = t.run_id
  )
  SELECT array_agg(id) INTO v_ids FROM tree;
  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs
  WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled')
  ORDER BY id DESC
  FOR NO KEY UPDATE;
  -- Keyed runs that were due (woken for a slot, or new) pass their wake-up on to the next in line.
  FOR v_key IN
    SELECT DISTINCT concurrency_key FROM {{schema}}.durable_flow_workflow_runs
    WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled', 'running')
      AND concurrency_key IS NOT NULL AND wake_at IS NOT NULL
  LOOP
    PERFORM {{schema}}.durable_flow_wake_next(v_key);
  END LOOP;
  WITH c AS (
    UPDATE {{schema}}.durable_flow_workflow_runs SET
      status = 'cancelled',
      cancelled_at = statement_timestamp() + p_offset_ms * interval '1 millisecond',
      wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1,
      concurrency_waiting = false,
      error = coalesce(error, jsonb_build_object('class', 'RunCancelled', 'message', p_reason)),
      updated_at = clock_timestamp()
    WHERE id = ANY(v_ids) AND status NOT IN ('completed', 'failed', 'cancelled')
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_cancelled FROM c;
  UPDATE {{schema}}.durable_flow_workflow_waits SET status = 'cancelled', updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_cancelled) AND status = 'pending';
  UPDATE {{schema}}.durable_flow_workflow_steps
  SET status = 'cancelled', completed_at = statement_timestamp() + p_offset_ms * interval '1 millisecond',
      updated_at = clock_timestamp()
  WHERE workflow_run_id = ANY(v_cancelled) AND status IN ('pending', 'running', 'sleeping', 'waiting', 'retrying');
  RETURN cardinality(v_cancelled);
END
$$;

-- As in 001, and:
-- - an id already stored with another name or payload is a conflict (is_conflict, nothing stored or
--   woken; the caller raises EVENT_ID_CONFLICT without aborting the caller's transaction);
-- - a wait whose timeout has passed on the flow's clock never matches, though no worker has settled it;
-- - the event's occurred_at is the flow's clock when it was stored (after the name's lock), which the
--   suspension compares with a wait's timeout (resolveWaits);
-- - the name lock is its shared key (durable_flow_event_lock_key);
-- - a matched wait's step keeps its mark (the snapshot it was created in), instead of this
--   transaction's, which would hide from the next wait every event committed before this one.
DROP FUNCTION {{schema}}.durable_flow_notify(text, text, jsonb, text, integer, float8, text, float8, integer, text[], text[]);
CREATE FUNCTION {{schema}}.durable_flow_notify(
  p_event_id text, p_name text, p_payload jsonb, p_source text, p_lock_namespace integer, p_offset_ms float8,
  p_owner text, p_lease_ms float8, p_claim_limit integer, p_queues text[], p_workflows text[]
) RETURNS TABLE (
  event_pk bigint, event_key text, event_name text, event_payload jsonb, event_occurred_at timestamptz,
  is_duplicate boolean, is_conflict boolean, matched_waits integer, claimed json, history json,
  db_now_ms float8, snapshot text
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_event {{schema}}.durable_flow_workflow_events%ROWTYPE;
  v_now timestamptz;
  v_matched integer := 0;
  v_runs bigint[];
  v_mark text;
  v_claimed json := '[]';
  v_claimed_ids bigint[] := '{}';
BEGIN
  PERFORM pg_advisory_xact_lock(p_lock_namespace, {{schema}}.durable_flow_event_lock_key(p_name));
  v_now := clock_timestamp() + p_offset_ms * interval '1 millisecond';
  INSERT INTO {{schema}}.durable_flow_workflow_events (event_id, name, payload, source, occurred_at)
  VALUES (p_event_id, p_name, p_payload, p_source, v_now)
  ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING
  RETURNING * INTO v_event;
  IF NOT FOUND THEN
    SELECT * INTO v_event FROM {{schema}}.durable_flow_workflow_events e WHERE e.event_id = p_event_id;
    RETURN QUERY SELECT v_event.id, v_event.event_id, v_event.name, v_event.payload, v_event.occurred_at, true,
      (v_event.name <> p_name OR v_event.payload <> p_payload), 0, '[]'::json, '[]'::json, NULL::float8, NULL::text;
    RETURN;
  END IF;

  -- cancelOn: runs (with their children) that this event cancels.
  PERFORM {{schema}}.durable_flow_cancel(
    ARRAY(SELECT DISTINCT t.workflow_run_id FROM {{schema}}.durable_flow_cancel_triggers t
          JOIN {{schema}}.durable_flow_workflow_runs r ON r.id = t.workflow_run_id
          WHERE t.event_name = p_name AND p_payload @> t.match
            AND r.status NOT IN ('completed', 'failed', 'cancelled')),
    'Cancelled by event "' || p_name || '"', p_offset_ms);

  v_mark := pg_current_snapshot()::text || '|' || pg_current_xact_id()::text || '|' || v_event.id::text;
  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs r
  WHERE r.id IN (
    SELECT w.workflow_run_id FROM {{schema}}.durable_flow_workflow_waits w
    WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.event_name = p_name AND p_payload @> w.match
      AND (w.timeout_at IS NULL OR w.timeout_at > v_now))
  ORDER BY r.id DESC
  FOR NO KEY UPDATE;

  IF FOUND THEN
    WITH m AS (
      UPDATE {{schema}}.durable_flow_workflow_waits w
      SET status = 'matched', workflow_event_id = v_event.id, updated_at = clock_timestamp()
      WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.event_name = p_name AND p_payload @> w.match
        AND (w.timeout_at IS NULL OR w.timeout_at > v_now)
      RETURNING w.workflow_run_id, w.workflow_step_id
    ), s AS (
      UPDATE {{schema}}.durable_flow_workflow_steps s
      -- exec_snapshot stays the one the wait was created with: the wait after this one sees every event
      -- since (resolveWaits leaves out the events this run's earlier waits took).
      SET status = 'succeeded', result = p_payload, completed_at = v_now, attempts = s.attempts + 1,
          updated_at = clock_timestamp()
      WHERE s.id IN (SELECT workflow_step_id FROM m)
    )
    SELECT count(*), array_agg(DISTINCT workflow_run_id) INTO v_matched, v_runs FROM m;

    -- Runs for a worker of the calling process: claimed now.
    IF p_claim_limit > 0 THEN
      SELECT l.runs, l.replay INTO v_claimed, v_claimed_ids
      FROM {{schema}}.durable_flow_lease(
        ARRAY(SELECT r.id FROM {{schema}}.durable_flow_workflow_runs r
              WHERE r.id = ANY(v_runs) AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying')
                AND r.queue_name = ANY(p_queues) AND r.workflow_name = ANY(p_workflows)
                AND r.concurrency_key IS NULL  -- runs with a concurrency limit go through durable_flow_claim
              ORDER BY r.id LIMIT p_claim_limit),
        p_owner, v_now, v_now + p_lease_ms * interval '1 millisecond', v_mark) l;
    END IF;
    -- The others that are suspended become due; a run still executing finds its matched wait when it
    -- next suspends.
    UPDATE {{schema}}.durable_flow_workflow_runs r
    SET status = 'ready', wake_at = v_now, updated_at = clock_timestamp()
    WHERE r.id = ANY(v_runs) AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying');
  END IF;

  RETURN QUERY SELECT v_event.id, v_event.event_id, v_event.name, v_event.payload, v_event.occurred_at, false, false,
    v_matched, v_claimed, {{schema}}.durable_flow_history(v_claimed_ids), extract(epoch FROM v_now)::float8 * 1000, v_mark;
END
$$;

-- As in 001, and a wait whose timeout has passed is left to its timeout (the suspension settles it);
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

-- Many events in one round trip (signed ingest: one request, one transaction): the name locks of all
-- of them first, in key order, then each event exactly as durable_flow_notify stores it. Returns one
-- row per event, in the order given.
CREATE FUNCTION {{schema}}.durable_flow_notify_many(
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
                                          p_lock_namespace, p_offset_ms, NULL, 0, 0, '{}', '{}') n;
  END LOOP;
END
$$;
