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
--
-- Since 002_trust.sql, and:
-- - an id already stored with another name or payload is a conflict (is_conflict, nothing stored or
--   woken; the caller raises EVENT_ID_CONFLICT without aborting the caller's transaction);
-- - a wait whose timeout has passed on the flow's clock never matches, though no worker has settled it;
-- - the event's occurred_at is the flow's clock when it was stored (after the name's lock), which the
--   suspension compares with a wait's timeout (resolveWaits);
-- - the name lock is its shared key (durable_flow_event_lock_key);
-- - a matched wait's step keeps its mark (the snapshot it was created in), instead of this
--   transaction's, which would hide from the next wait every event committed before this one.
--
-- Since 008_versions.sql, p_version: the version of the calling process's flow. A woken run pinned to
-- another version is only made due (a worker of its version claims it).
DROP FUNCTION IF EXISTS {{schema}}.durable_flow_notify(text, text, jsonb, text, integer, float8, text, float8, integer, text[], text[]);
-- Since 009_signals.sql, a wait of step.waitForSignal (signal_name set) is never an event's: only a
-- signal sent to its run settles it (flow.signal, then the run's suspension).
-- Since 010_wait_groups.sql, a branch of step.waitAny / waitAll: at most one branch of a waitAny step
-- takes an event, the step's result is written by durable_flow_settle_groups (which cancels the losers in
-- this transaction), and the run wakes when its step is complete. A sleep branch never matches an event.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_notify(
  p_event_id text, p_name text, p_payload jsonb, p_source text, p_lock_namespace integer, p_offset_ms float8,
  p_owner text, p_lease_ms float8, p_claim_limit integer, p_queues text[], p_workflows text[], p_version text
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
  v_groups bigint[];
  v_mark text;
  v_claimed json := '[]';
  v_claimed_ids bigint[] := '{}';
  v_woken timestamptz;
  v_resume_us bigint;
  v_locked integer;
  v_suspended bigint[];
  v_takeable bigint[];
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
  -- The runs of the waits it matches, locked; read under the lock, which keeps every other transaction
  -- from changing them until this one ends: those suspended (to wake), and of those the ones a worker
  -- of the calling process may take (no second query for them, and no generic plan that reads every
  -- suspended run's entry of the status index to find a few by id).
  SELECT count(*), coalesce(array_agg(l.id) FILTER (WHERE l.suspended), '{}'),
         coalesce(array_agg(l.id ORDER BY l.id) FILTER (WHERE l.suspended AND l.takeable), '{}')
  INTO v_locked, v_suspended, v_takeable
  FROM (
    SELECT r.id, r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying') AS suspended,
           p_claim_limit > 0 AND r.queue_name = ANY(p_queues) AND r.workflow_name = ANY(p_workflows)
             AND r.concurrency_key IS NULL  -- runs with a concurrency limit go through durable_flow_claim
             AND (r.pinned_version IS NULL OR r.pinned_version = p_version)  -- pinned to another version: only made due
             -- and runs of a paused workflow (flow.pauseWorkflow) are only made due: a claim sets them aside
             AND NOT EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_pauses p WHERE p.workflow_name = r.workflow_name)
             AS takeable
    FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.id IN (
      SELECT w.workflow_run_id FROM {{schema}}.durable_flow_workflow_waits w
      WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.signal_name IS NULL AND NOT w.is_sleep
        AND w.event_name = p_name AND p_payload @> w.match
        AND (w.timeout_at IS NULL OR w.timeout_at > v_now))
    ORDER BY r.id DESC
    FOR NO KEY UPDATE
  ) l;

  IF v_locked > 0 THEN
    WITH c AS (
      SELECT w.id, w.workflow_step_id, w.group_mode FROM {{schema}}.durable_flow_workflow_waits w
      WHERE w.status = 'pending' AND w.watched_run_id IS NULL AND w.signal_name IS NULL AND NOT w.is_sleep
        AND w.event_name = p_name AND p_payload @> w.match
        AND (w.timeout_at IS NULL OR w.timeout_at > v_now)
    ), pick AS (
      -- At most one branch of a waitAny step takes the event (the first declared); every other wait does.
      SELECT DISTINCT ON (CASE WHEN c.group_mode = 'any' THEN c.workflow_step_id ELSE -c.id END) c.id
      FROM c ORDER BY CASE WHEN c.group_mode = 'any' THEN c.workflow_step_id ELSE -c.id END, c.id
    ), m AS (
      UPDATE {{schema}}.durable_flow_workflow_waits w
      SET status = 'matched', workflow_event_id = v_event.id, updated_at = clock_timestamp(),
          result = CASE WHEN w.group_mode IS NOT NULL THEN p_payload END
      WHERE w.id IN (SELECT id FROM pick) AND w.status = 'pending'
      RETURNING w.workflow_run_id, w.workflow_step_id, w.group_mode
    ), s AS (
      UPDATE {{schema}}.durable_flow_workflow_steps s
      -- exec_snapshot stays the one the wait was created with: the wait after this one sees every event
      -- since (resolveWaits leaves out the events this run's earlier waits took).
      SET status = 'succeeded', result = p_payload, completed_at = v_now, attempts = s.attempts + 1,
          updated_at = clock_timestamp()
      WHERE s.id IN (SELECT workflow_step_id FROM m WHERE group_mode IS NULL)
    )
    SELECT count(*), array_agg(DISTINCT workflow_run_id) FILTER (WHERE group_mode IS NULL),
           array_agg(DISTINCT workflow_step_id) FILTER (WHERE group_mode IS NOT NULL)
    INTO v_matched, v_runs, v_groups FROM m;
    -- A branch of a waitAny / waitAll step: the step is written from its rows (the losers of a waitAny
    -- cancelled now); its run wakes only once the step is complete.
    IF v_groups IS NOT NULL THEN
      v_runs := coalesce(v_runs, '{}') || ARRAY(SELECT g.run_pk FROM {{schema}}.durable_flow_settle_groups(v_groups, v_now) g);
    END IF;

    -- The woken runs that are suspended; a run still executing finds its matched wait when it next suspends.
    v_suspended := ARRAY(SELECT id FROM unnest(v_suspended) id WHERE id = ANY(v_runs));
    -- Runs for a worker of the calling process: claimed now.
    v_takeable := ARRAY(SELECT id FROM unnest(v_takeable) id WHERE id = ANY(v_runs) ORDER BY id LIMIT greatest(p_claim_limit, 0));
    IF cardinality(v_takeable) > 0 THEN
      v_woken := clock_timestamp();
      SELECT l.runs, l.replay INTO v_claimed, v_claimed_ids
      FROM {{schema}}.durable_flow_lease(v_takeable, p_owner, v_now, v_now + p_lease_ms * interval '1 millisecond', v_mark) l;
      -- Each is a sample of the event → resume latency, as a run made ready and claimed by a worker is
      -- (metrics_runs_updated: from the wake to the claim): here both are this transaction's, one
      -- moment for all, so the claims of a workflow are one add.
      v_resume_us := greatest((extract(epoch FROM clock_timestamp() - v_woken) * 1e6)::bigint, 0);
      PERFORM {{schema}}.durable_flow_metrics_add_samples(date_trunc('minute', statement_timestamp()), g.workflow_name, 'resume',
                {{schema}}.durable_flow_metrics_bucket(v_resume_us), g.samples, g.samples * v_resume_us)
      FROM (SELECT c->>'workflow_name' AS workflow_name, count(*) AS samples
            FROM jsonb_array_elements(v_claimed::jsonb) c GROUP BY 1 ORDER BY 1) g;
    END IF;
    -- The others become due (none left when all were claimed: then no statement, whose metric trigger
    -- would run even for no row).
    IF cardinality(v_suspended) > cardinality(v_takeable) THEN
      UPDATE {{schema}}.durable_flow_workflow_runs r
      SET status = 'ready', wake_at = v_now, updated_at = clock_timestamp()
      WHERE r.id = ANY(ARRAY(SELECT id FROM unnest(v_suspended) id WHERE id <> ALL(v_takeable)));
    END IF;
  END IF;

  RETURN QUERY SELECT v_event.id, v_event.event_id, v_event.name, v_event.payload, v_event.occurred_at, false, false,
    v_matched, v_claimed, {{schema}}.durable_flow_history(v_claimed_ids), extract(epoch FROM v_now)::float8 * 1000, v_mark;
END
$$;

-- The signature of the releases before 008_versions.sql, kept for their processes still running during
-- a rolling deploy (a web process of the old release storing an event after the new one migrated): the
-- same notify, for a flow of no version, so a woken run pinned to a version is only made due.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_notify(
  p_event_id text, p_name text, p_payload jsonb, p_source text, p_lock_namespace integer, p_offset_ms float8,
  p_owner text, p_lease_ms float8, p_claim_limit integer, p_queues text[], p_workflows text[]
) RETURNS TABLE (
  event_pk bigint, event_key text, event_name text, event_payload jsonb, event_occurred_at timestamptz,
  is_duplicate boolean, is_conflict boolean, matched_waits integer, claimed json, history json,
  db_now_ms float8, snapshot text
) LANGUAGE sql AS $$
  SELECT * FROM {{schema}}.durable_flow_notify(p_event_id, p_name, p_payload, p_source, p_lock_namespace, p_offset_ms,
    p_owner, p_lease_ms, p_claim_limit, p_queues, p_workflows, NULL::text)
$$;
