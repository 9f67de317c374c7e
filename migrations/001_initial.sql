-- durable-flow schema, version 1. Released migrations are never edited; add a new numbered file instead.
-- {{schema}} is replaced by the quoted schema name and {{channel}} by the NOTIFY channel prefix.

-- A run of a workflow. This table is also the work queue: a run is due when wake_at <= now() and
-- nobody holds a live lease on it (while a run executes, wake_at is its lease expiry, so a crashed
-- worker's runs become due again when the lease runs out).
CREATE TABLE {{schema}}.durable_flow_workflow_runs (
  id                bigserial PRIMARY KEY,
  run_id            text NOT NULL,
  workflow_name     text NOT NULL,
  status            text NOT NULL DEFAULT 'enqueued',
  queue_name        text NOT NULL DEFAULT 'default',
  priority          integer NOT NULL DEFAULT 0,
  input             jsonb,
  output            jsonb,
  error             jsonb,
  idempotency_key   text,
  parent_run_id     text,
  parent_step_name  text,
  concurrency_key   text,
  concurrency_limit integer,
  -- Blocked by its concurrency limit: no wake_at until a run of its key frees a slot.
  concurrency_waiting boolean NOT NULL DEFAULT false,
  -- Some wait watches this run (step.invoke, step.waitForWorkflow): its finish trigger has work to do.
  watched           boolean NOT NULL DEFAULT false,
  wake_at           timestamptz,
  lease_owner       text,
  lease_epoch       bigint NOT NULL DEFAULT 0,
  lease_expires_at  timestamptz,
  claim_count       integer NOT NULL DEFAULT 0,
  attempts          integer NOT NULL DEFAULT 0,
  created_snapshot  text NOT NULL DEFAULT pg_current_snapshot()::text,
  started_at        timestamptz,
  interrupted_at    timestamptz,
  completed_at      timestamptz,
  failed_at         timestamptz,
  cancelled_at      timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_runs_status_check CHECK (status IN
    ('enqueued', 'running', 'sleeping', 'waiting', 'ready', 'retrying', 'completed', 'failed', 'cancelled'))
) WITH (fillfactor = 80);

CREATE UNIQUE INDEX durable_flow_runs_run_id ON {{schema}}.durable_flow_workflow_runs (run_id);
CREATE UNIQUE INDEX durable_flow_runs_idempotency_key ON {{schema}}.durable_flow_workflow_runs (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- The claim query: due runs in wake order. Terminal and event-waiting runs have no wake_at and stay out.
CREATE INDEX durable_flow_runs_due ON {{schema}}.durable_flow_workflow_runs (wake_at) WHERE wake_at IS NOT NULL;
-- The viewer: newest first, optionally by workflow and status.
CREATE INDEX durable_flow_runs_created ON {{schema}}.durable_flow_workflow_runs (created_at DESC, id DESC);
CREATE INDEX durable_flow_runs_workflow_status ON {{schema}}.durable_flow_workflow_runs (workflow_name, status);
CREATE INDEX durable_flow_runs_workflow_created ON {{schema}}.durable_flow_workflow_runs (workflow_name, created_at DESC, id DESC);
CREATE INDEX durable_flow_runs_status ON {{schema}}.durable_flow_workflow_runs (status, created_at DESC, id DESC);
CREATE INDEX durable_flow_runs_parent ON {{schema}}.durable_flow_workflow_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- Concurrency limits: due runs that have a key, runs of a key executing now, and runs waiting for a slot.
CREATE INDEX durable_flow_runs_due_keyed ON {{schema}}.durable_flow_workflow_runs (wake_at) WHERE concurrency_key IS NOT NULL;
CREATE INDEX durable_flow_runs_key_running ON {{schema}}.durable_flow_workflow_runs (concurrency_key)
  WHERE concurrency_key IS NOT NULL AND status = 'running';
CREATE INDEX durable_flow_runs_key_waiting ON {{schema}}.durable_flow_workflow_runs (concurrency_key, priority, id)
  WHERE concurrency_waiting;

-- A step of a run: its stored result is what a replay returns instead of running the step again.
CREATE TABLE {{schema}}.durable_flow_workflow_steps (
  id               bigserial PRIMARY KEY,
  workflow_run_id  bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  name             text NOT NULL,
  kind             text NOT NULL DEFAULT 'run',
  status           text NOT NULL DEFAULT 'pending',
  attempts         integer NOT NULL DEFAULT 0,
  position         integer,
  result           jsonb,
  error            jsonb,
  cursor           jsonb,
  metadata         jsonb NOT NULL DEFAULT '{}',
  -- The snapshot of the execution that stored this step; a wait that follows it matches every event
  -- not yet visible in that snapshot (see docs/ARCHITECTURE.md, "No lost wake-up").
  exec_snapshot    text,
  started_at       timestamptz,
  completed_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_steps_status_check CHECK (status IN
    ('pending', 'running', 'succeeded', 'sleeping', 'waiting', 'retrying', 'failed'))
);
CREATE UNIQUE INDEX durable_flow_steps_run_name ON {{schema}}.durable_flow_workflow_steps (workflow_run_id, name);

-- An event: from flow.notify, the ingest endpoint or step.sendEvent.
CREATE TABLE {{schema}}.durable_flow_workflow_events (
  id           bigserial PRIMARY KEY,
  event_id     text,
  name         text NOT NULL,
  payload      jsonb NOT NULL DEFAULT '{}',
  source       text,
  txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX durable_flow_events_event_id ON {{schema}}.durable_flow_workflow_events (event_id)
  WHERE event_id IS NOT NULL;
CREATE INDEX durable_flow_events_name_txid ON {{schema}}.durable_flow_workflow_events (name, txid);
CREATE INDEX durable_flow_events_name_id ON {{schema}}.durable_flow_workflow_events (name, id);

-- A run waiting for an event (one per wait step).
CREATE TABLE {{schema}}.durable_flow_workflow_waits (
  id                 bigserial PRIMARY KEY,
  workflow_run_id    bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  workflow_step_id   bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_steps (id) ON DELETE CASCADE,
  workflow_event_id  bigint REFERENCES {{schema}}.durable_flow_workflow_events (id) ON DELETE SET NULL,
  event_name         text NOT NULL,
  status             text NOT NULL DEFAULT 'pending',
  match              jsonb NOT NULL DEFAULT '{}',
  allow_past_events  boolean NOT NULL DEFAULT false,
  -- Set for step.invoke / step.waitForWorkflow: the wait ends when this run finishes (not on an event).
  watched_run_id     text,
  since_snapshot     text,
  timeout_at         timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_waits_status_check CHECK (status IN ('pending', 'matched', 'timed_out', 'cancelled'))
);
CREATE UNIQUE INDEX durable_flow_waits_run_step ON {{schema}}.durable_flow_workflow_waits (workflow_run_id, workflow_step_id);
CREATE INDEX durable_flow_waits_pending ON {{schema}}.durable_flow_workflow_waits (event_name)
  WHERE status = 'pending' AND watched_run_id IS NULL;
CREATE INDEX durable_flow_waits_watched ON {{schema}}.durable_flow_workflow_waits (watched_run_id)
  WHERE status = 'pending' AND watched_run_id IS NOT NULL;
CREATE INDEX durable_flow_waits_event ON {{schema}}.durable_flow_workflow_waits (workflow_event_id) WHERE workflow_event_id IS NOT NULL;

-- A structured log line of a run, optionally of one of its steps. `key` makes a replay write nothing twice.
CREATE TABLE {{schema}}.durable_flow_workflow_logs (
  id                bigserial PRIMARY KEY,
  workflow_run_id   bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  workflow_step_id  bigint REFERENCES {{schema}}.durable_flow_workflow_steps (id) ON DELETE SET NULL,
  key               text NOT NULL,
  level             text NOT NULL,
  message           text NOT NULL,
  data              jsonb NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_logs_level_check CHECK (level IN ('debug', 'info', 'warn', 'error'))
);
CREATE UNIQUE INDEX durable_flow_logs_run_key ON {{schema}}.durable_flow_workflow_logs (workflow_run_id, key);
CREATE INDEX durable_flow_logs_step ON {{schema}}.durable_flow_workflow_logs (workflow_step_id, created_at)
  WHERE workflow_step_id IS NOT NULL;

-- cancelOn: an event with this name whose payload contains `match` cancels the run.
CREATE TABLE {{schema}}.durable_flow_cancel_triggers (
  id               bigserial PRIMARY KEY,
  workflow_run_id  bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  event_name       text NOT NULL,
  match            jsonb NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX durable_flow_cancel_triggers_event ON {{schema}}.durable_flow_cancel_triggers (event_name);
CREATE INDEX durable_flow_cancel_triggers_run ON {{schema}}.durable_flow_cancel_triggers (workflow_run_id);

-- One row: until when some process wants live changes. While nobody does, writes send no change
-- NOTIFY at all (a NOTIFY serialises commits on a database-wide lock, so it is not free).
CREATE TABLE {{schema}}.durable_flow_live (
  id          integer PRIMARY KEY CHECK (id = 1),
  live_until  timestamptz
);
INSERT INTO {{schema}}.durable_flow_live (id, live_until) VALUES (1, NULL);

-- ============================================================================================
-- Functions. Hot paths that need several statements in a fixed lock order run here, in one round trip.
-- Lock order everywhere: advisory locks (event names, sorted; concurrency keys, sorted) → runs, by id
-- descending (a child is newer than its parent, so children come before parents) → waits.
-- ============================================================================================

-- The step history of the given runs (with each wait step's wait), as the executor replays it.
CREATE FUNCTION {{schema}}.durable_flow_history(p_run_ids bigint[]) RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT coalesce(json_agg(json_build_object(
      'run', s.workflow_run_id, 'id', s.id, 'name', s.name, 'kind', s.kind, 'status', s.status,
      'attempts', s.attempts, 'position', s.position, 'result', s.result::text, 'error', s.error,
      'cursor', s.cursor, 'metadata', s.metadata, 'snapshot', s.exec_snapshot,
      'waitId', w.id, 'waitStatus', w.status
    ) ORDER BY s.id), '[]')
  FROM {{schema}}.durable_flow_workflow_steps s
  LEFT JOIN {{schema}}.durable_flow_workflow_waits w ON w.workflow_step_id = s.id
  WHERE s.workflow_run_id = ANY(p_run_ids)
$$;

-- Wakes the first run waiting for a concurrency slot of p_key (a slot just freed up). Takes the key's
-- advisory lock, which durable_flow_claim holds while it counts and blocks runs of that key, so a run
-- is never blocked just after the slot it needed was freed.
CREATE FUNCTION {{schema}}.durable_flow_wake_next(p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(1684433016, hashtext(p_key));
  UPDATE {{schema}}.durable_flow_workflow_runs SET wake_at = statement_timestamp(), concurrency_waiting = false,
         updated_at = clock_timestamp()
  WHERE id = (SELECT id FROM {{schema}}.durable_flow_workflow_runs
              WHERE concurrency_key = p_key AND concurrency_waiting
              ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED);
END
$$;

-- Leases runs the caller has locked to p_owner until p_lease: what every claim writes (durable_flow_claim,
-- and durable_flow_notify for runs it wakes for a local worker). Returns the claimed runs as the
-- worker reads them, and the ids of those that ran before (their history is replayed).
CREATE FUNCTION {{schema}}.durable_flow_lease(
  p_ids bigint[], p_owner text, p_now timestamptz, p_lease timestamptz, OUT runs jsonb, OUT replay bigint[]
) LANGUAGE sql AS $$
  WITH previous AS (
    SELECT id, started_at FROM {{schema}}.durable_flow_workflow_runs WHERE id = ANY(p_ids)
  ), claimed AS (
    UPDATE {{schema}}.durable_flow_workflow_runs r SET
      status = 'running', lease_owner = p_owner, lease_epoch = r.lease_epoch + 1,
      lease_expires_at = p_lease, wake_at = p_lease, claim_count = r.claim_count + 1,
      attempts = r.attempts + 1, started_at = coalesce(r.started_at, p_now), updated_at = clock_timestamp()
    FROM previous
    WHERE r.id = previous.id
    RETURNING r.id, r.run_id, r.workflow_name, r.input::text AS input, r.lease_epoch, r.claim_count,
              r.attempts, r.created_snapshot, r.parent_run_id, r.queue_name,
              previous.started_at IS NOT NULL AS replay
  )
  SELECT coalesce(jsonb_agg(c), '[]'), coalesce(array_agg(c.id) FILTER (WHERE c.replay), '{}') FROM claimed c
$$;

-- A worker's claim, in one round trip: up to p_limit due runs of its queues and workflows, leased to
-- p_owner, with their step history, the time the next not-yet-due run wakes, the database clock and a
-- snapshot (the low-water mark of waits created in these executions).
--
-- Lock: FOR UPDATE SKIP LOCKED on the due rows, so claimers never wait for each other and never claim
-- the same run. A run that is executing is due again only when its lease expired (its wake_at is the
-- lease expiry); the claim bumps lease_epoch, which fences every later write of the worker that lost
-- it. claim_count counts claims since the run last stopped cleanly (the executor fails a run that
-- keeps killing its worker).
--
-- Runs with a concurrency key take a second path: under the key's advisory lock (also taken when a
-- slot frees, durable_flow_wake_next), count the runs of that key executing now, lease those that fit
-- and park the others (concurrency_waiting, no wake_at) until a slot frees.
--
-- The planner must drive this from the wake_at index whatever its statistics say (a table that just
-- grew from empty looks tiny to it): sequential scans are off inside the function, and the workflow
-- filter is an expression so the (workflow_name, status) index is never chosen instead.
CREATE FUNCTION {{schema}}.durable_flow_claim(
  p_queues text[], p_workflows text[], p_limit integer, p_owner text, p_lease_ms float8, p_offset_ms float8
) RETURNS TABLE (runs json, steps json, next_wake_ms float8, db_now_ms float8, snapshot text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
  v_now timestamptz := statement_timestamp() + p_offset_ms * interval '1 millisecond';
  v_lease timestamptz := v_now + p_lease_ms * interval '1 millisecond';
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
    SELECT l.runs, l.replay INTO v_runs, v_replay FROM {{schema}}.durable_flow_lease(v_due, p_owner, v_now, v_lease) l;
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

    SELECT l.runs, l.replay INTO v_more, v_more_replay FROM {{schema}}.durable_flow_lease(v_admit, p_owner, v_now, v_lease) l;
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
    pg_current_snapshot()::text;
END
$$;

-- Cancels runs that have not finished, with every run they started (step.invoke) that has not either.
-- Bumping lease_epoch fences their executors: the next write of a worker executing one finds its
-- lease gone. Pending waits are cancelled. Runs are locked children first (descending id), the order
-- in which a finishing child locks its parent.
CREATE FUNCTION {{schema}}.durable_flow_cancel(p_run_ids bigint[], p_reason text, p_offset_ms float8)
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
  RETURN cardinality(v_cancelled);
END
$$;

-- flow.notify in one round trip: store the event (once per event_id), match every pending wait it
-- satisfies, store its payload as the wait step's result, and make the suspended runs due.
-- A matching cancelOn trigger cancels its run instead. Waits for a run (step.invoke) are not events.
-- Locks, in the order every other path takes them: the event name's advisory lock (so a wait being
-- created at this moment either sees this event or is seen by it), then the runs (by id), then the waits.
--
-- When the calling process has a worker with free slots (p_claim_limit > 0), up to that many woken runs
-- of its queues and workflows are claimed for it right here (leased to p_owner, as durable_flow_claim
-- would) and returned with their history: they resume without a NOTIFY, without a claim round trip.
-- Their executions' snapshot carries this transaction's id and event, so those runs never take this
-- event for a later one. The other woken runs become due and the wake trigger NOTIFYs the workers.
CREATE FUNCTION {{schema}}.durable_flow_notify(
  p_event_id text, p_name text, p_payload jsonb, p_source text, p_lock_namespace integer, p_offset_ms float8,
  p_owner text, p_lease_ms float8, p_claim_limit integer, p_queues text[], p_workflows text[]
) RETURNS TABLE (
  event_pk bigint, event_key text, event_name text, event_payload jsonb, event_occurred_at timestamptz,
  is_duplicate boolean, matched_waits integer, claimed json, history json, db_now_ms float8, snapshot text
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_event {{schema}}.durable_flow_workflow_events%ROWTYPE;
  v_now timestamptz := clock_timestamp() + p_offset_ms * interval '1 millisecond';
  v_matched integer := 0;
  v_runs bigint[];
  v_claimed json := '[]';
  v_claimed_ids bigint[] := '{}';
BEGIN
  PERFORM pg_advisory_xact_lock(p_lock_namespace, hashtext(p_name));
  INSERT INTO {{schema}}.durable_flow_workflow_events (event_id, name, payload, source)
  VALUES (p_event_id, p_name, p_payload, p_source)
  ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING
  RETURNING * INTO v_event;
  IF NOT FOUND THEN
    SELECT * INTO v_event FROM {{schema}}.durable_flow_workflow_events e WHERE e.event_id = p_event_id;
    RETURN QUERY SELECT v_event.id, v_event.event_id, v_event.name, v_event.payload, v_event.occurred_at, true, 0,
      '[]'::json, '[]'::json, NULL::float8, NULL::text;
    RETURN;
  END IF;

  -- cancelOn: runs (with their children) that this event cancels.
  PERFORM {{schema}}.durable_flow_cancel(
    ARRAY(SELECT DISTINCT t.workflow_run_id FROM {{schema}}.durable_flow_cancel_triggers t
          JOIN {{schema}}.durable_flow_workflow_runs r ON r.id = t.workflow_run_id
          WHERE t.event_name = p_name AND p_payload @> t.match
            AND r.status NOT IN ('completed', 'failed', 'cancelled')),
    'Cancelled by event "' || p_name || '"', p_offset_ms);

  PERFORM 1 FROM {{schema}}.durable_flow_workflow_runs r
  WHERE r.id IN (
    SELECT w.workflow_run_id FROM {{schema}}.durable_flow_workflow_waits w
    WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.event_name = p_name AND p_payload @> w.match)
  ORDER BY r.id DESC
  FOR NO KEY UPDATE;

  IF FOUND THEN
    WITH m AS (
      UPDATE {{schema}}.durable_flow_workflow_waits w
      SET status = 'matched', workflow_event_id = v_event.id, updated_at = clock_timestamp()
      WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.event_name = p_name AND p_payload @> w.match
      RETURNING w.workflow_run_id, w.workflow_step_id
    ), s AS (
      UPDATE {{schema}}.durable_flow_workflow_steps s
      SET status = 'succeeded', result = p_payload, completed_at = v_now, attempts = s.attempts + 1,
          updated_at = clock_timestamp(),
          -- The low-water mark for the wait after this one: later events, not this one.
          exec_snapshot = pg_current_snapshot()::text || '|' || pg_current_xact_id()::text || '|' || v_event.id::text
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
        p_owner, v_now, v_now + p_lease_ms * interval '1 millisecond') l;
    END IF;
    -- The others that are suspended become due; a run still executing finds its matched wait when it
    -- next suspends.
    UPDATE {{schema}}.durable_flow_workflow_runs r
    SET status = 'ready', wake_at = v_now, updated_at = clock_timestamp()
    WHERE r.id = ANY(v_runs) AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying');
  END IF;

  RETURN QUERY SELECT v_event.id, v_event.event_id, v_event.name, v_event.payload, v_event.occurred_at, false, v_matched,
    v_claimed, {{schema}}.durable_flow_history(v_claimed_ids), extract(epoch FROM v_now)::float8 * 1000,
    pg_current_snapshot()::text || '|' || pg_current_xact_id()::text || '|' || v_event.id::text;
END
$$;


-- A watched run finished (completed, failed or cancelled): every wait watching it (step.invoke,
-- step.waitForWorkflow) is matched, its step stores the outcome, and runs suspended on it become due.
-- It runs on the row lock of the finishing run. A suspension creating a wait on a run sets that run's
-- `watched` flag (taking its row lock) in the transaction that inserts the wait, so either the finish
-- sees the flag and the wait, or the suspension sees the finished run. Unwatched runs skip all this.
CREATE FUNCTION {{schema}}.durable_flow_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
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
    RETURNING w.workflow_run_id, w.workflow_step_id
  ), s AS (
    UPDATE {{schema}}.durable_flow_workflow_steps s
    SET status = 'succeeded', result = v_outcome, completed_at = statement_timestamp(),
        attempts = s.attempts + 1, exec_snapshot = pg_current_snapshot()::text, updated_at = clock_timestamp()
    WHERE s.id IN (SELECT workflow_step_id FROM m)
  )
  UPDATE {{schema}}.durable_flow_workflow_runs r
  SET status = 'ready', wake_at = statement_timestamp(), updated_at = clock_timestamp()
  WHERE r.id IN (SELECT workflow_run_id FROM m)
    AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying');
  RETURN NULL;
END
$$;

CREATE TRIGGER durable_flow_runs_finished
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.watched AND NEW.status IN ('completed', 'failed', 'cancelled')
                     AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
  EXECUTE FUNCTION {{schema}}.durable_flow_run_finished();

-- A run with a concurrency key stopped executing (suspended, finished, handed back): its slot is free.
CREATE FUNCTION {{schema}}.durable_flow_release_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_wake_next(NEW.concurrency_key);
  RETURN NULL;
END
$$;

CREATE TRIGGER durable_flow_runs_release_slot
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.concurrency_key IS NOT NULL)
  EXECUTE FUNCTION {{schema}}.durable_flow_release_slot();

-- Wake idle workers the moment a run becomes due without a lease: a new run, an event that matched a
-- wait, a run released by a stopping worker. The payload is the queue name ('*', any queue, for a name
-- too long for a NOTIFY payload, which must stay under 8000 bytes); NOTIFY is only a hint.
CREATE FUNCTION {{schema}}.durable_flow_notify_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{{channel}}wake', CASE WHEN octet_length(NEW.queue_name) <= 1000 THEN NEW.queue_name ELSE '*' END);
  RETURN NULL;
END
$$;

CREATE TRIGGER durable_flow_wake_on_insert
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp())
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();

CREATE TRIGGER durable_flow_wake_on_update
  AFTER UPDATE OF status, wake_at, lease_owner ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (
    NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp()
    AND (OLD.lease_owner IS NOT NULL OR OLD.wake_at IS NULL OR OLD.wake_at > clock_timestamp() OR OLD.status <> NEW.status)
  )
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();

-- Live changes: '<table letter>:<c|u>:<id>', sent only while a process asked for them.
CREATE FUNCTION {{schema}}.durable_flow_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_live WHERE id = 1 AND live_until > now()) THEN
    PERFORM pg_notify('{{channel}}changes', TG_ARGV[0] || ':' || CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END || ':' || NEW.id);
  END IF;
  RETURN NULL;
END
$$;

-- Heartbeats only move the lease (they leave updated_at alone), so they send no change.
CREATE TRIGGER durable_flow_runs_created
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');
CREATE TRIGGER durable_flow_runs_changes
  AFTER UPDATE ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.updated_at IS DISTINCT FROM NEW.updated_at)
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');
CREATE TRIGGER durable_flow_steps_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_steps
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('s');
CREATE TRIGGER durable_flow_waits_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_waits
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('w');
CREATE TRIGGER durable_flow_events_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_events
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('e');
CREATE TRIGGER durable_flow_logs_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_logs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('l');
