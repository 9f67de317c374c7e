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
--
-- Since 002_trust.sql, with the claim's snapshot handed to durable_flow_lease as the executions' mark.
--
-- Since 007_operator.sql, paused workflows (flow.pauseWorkflow, the small table
-- durable_flow_workflow_pauses): their runs are not claimed, and their due runs are set aside
-- (held_wake_at keeps the wake_at, wake_at NULL), a batch per claim, so no claim scans them again;
-- once the workflow is resumed, claims put set-aside runs back. Both checks are an EXISTS on a table
-- or a partial index that is empty unless an operator paused something.
--
-- Since 008_versions.sql, p_version: the claiming worker's flow version. A run pinned to a version
-- (a workflow with `versioning: 'pinned'`) is claimed only by a worker of that version; due runs are
-- read through two partial indexes (durable_flow_runs_due_unpinned, and durable_flow_runs_due_pinned
-- by version), so due runs pinned to a version no worker has are never read by the others' claims.
-- Runs with a concurrency key keep their own index (durable_flow_runs_due_keyed) with the version as a
-- filter: a backlog of keyed runs pinned to another version is still read by those claims.
--
-- Since 011_deadlines.sql, run deadlines (lib/db/functions/deadlines.sql): a claim first ends the due
-- runs whose deadline (timeout) or start-by passed, of every queue and workflow (no code of theirs
-- runs: any worker may), up to 1000, SKIP LOCKED, through durable_flow_expire; it never leases such a
-- run. Keyed ones are ended in the keyed path, after the key locks are taken in its one sorted pass
-- (their keys with the candidates'): ending one wakes the next run of its key, under that key's lock.
-- Both checks are an EXISTS on a partial index holding only runs with a deadline.
DROP FUNCTION IF EXISTS {{schema}}.durable_flow_claim(text[], text[], integer, text, float8, float8);
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_claim(
  p_queues text[], p_workflows text[], p_limit integer, p_owner text, p_lease_ms float8, p_offset_ms float8,
  p_version text
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
  v_paused text[];
  v_expired bigint[] := '{}';
  v_expired_keyed bigint[] := '{}';
  v_expired_keys text[] := '{}';
BEGIN
  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r WHERE r.wake_at IS NOT NULL AND r.deadline_at <= v_now)
     OR EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r
                WHERE r.wake_at IS NOT NULL AND r.start_by <= v_now AND r.started_at IS NULL) THEN
    SELECT coalesce(array_agg(e.id) FILTER (WHERE e.concurrency_key IS NULL), '{}'),
           coalesce(array_agg(e.id) FILTER (WHERE e.concurrency_key IS NOT NULL), '{}'),
           coalesce(array_agg(DISTINCT e.concurrency_key) FILTER (WHERE e.concurrency_key IS NOT NULL), '{}')
      INTO v_expired, v_expired_keyed, v_expired_keys
    FROM (
      SELECT r.id, r.concurrency_key FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at IS NOT NULL AND (r.deadline_at <= v_now OR (r.start_by <= v_now AND r.started_at IS NULL))
      ORDER BY r.id DESC LIMIT 1000
      FOR UPDATE SKIP LOCKED
    ) e;
    PERFORM {{schema}}.durable_flow_expire(v_expired, v_now);
  END IF;

  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_pauses) THEN
    SELECT coalesce(array_agg(p.workflow_name), '{}') INTO v_paused
    FROM {{schema}}.durable_flow_workflow_pauses p WHERE p.workflow_name = ANY(p_workflows);
    IF cardinality(v_paused) > 0 THEN
      UPDATE {{schema}}.durable_flow_workflow_runs r SET held_wake_at = r.wake_at, wake_at = NULL, updated_at = clock_timestamp()
      WHERE r.id IN (
        SELECT h.id FROM {{schema}}.durable_flow_workflow_runs h
        WHERE h.wake_at <= v_now AND (h.workflow_name || '') = ANY(v_paused) AND h.queue_name = ANY(p_queues)
        ORDER BY h.wake_at LIMIT 1000
        FOR UPDATE SKIP LOCKED
      );
      p_workflows := ARRAY(SELECT unnest(p_workflows) EXCEPT SELECT unnest(v_paused));
    END IF;
  END IF;
  IF EXISTS (
    SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r WHERE r.held_wake_at IS NOT NULL AND r.workflow_name = ANY(p_workflows)
  ) THEN
    UPDATE {{schema}}.durable_flow_workflow_runs r SET wake_at = r.held_wake_at, held_wake_at = NULL, updated_at = clock_timestamp()
    WHERE r.id IN (
      SELECT h.id FROM {{schema}}.durable_flow_workflow_runs h
      WHERE h.held_wake_at IS NOT NULL AND h.workflow_name = ANY(p_workflows)
      LIMIT 1000
      FOR UPDATE SKIP LOCKED
    );
  END IF;

  -- Runs without a concurrency limit: lock the due ones, lease them. Not pinned, or pinned to this
  -- worker's version: planned with p_version known, a BitmapOr of the two partial indexes, which reads
  -- no due run pinned to another version (docs/ARCHITECTURE.md, Claim, has the measurements).
  SELECT coalesce(array_agg(d.id), '{}'), count(*) INTO v_due, v_count
  FROM (
    SELECT r.id FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.wake_at <= v_now AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
      AND r.concurrency_key IS NULL AND (r.pinned_version IS NULL OR r.pinned_version = p_version)
      AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
    ORDER BY r.priority, r.wake_at, r.id
    LIMIT p_limit
    FOR UPDATE OF r SKIP LOCKED
  ) d;
  IF v_count > 0 THEN
    SELECT l.runs, l.replay INTO v_runs, v_replay FROM {{schema}}.durable_flow_lease(v_due, p_owner, v_now, v_lease, v_mark) l;
  END IF;

  -- Runs with a concurrency limit, when slots remain and some are due.
  IF cardinality(v_expired_keyed) > 0 OR (v_count < p_limit AND EXISTS (
    SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r
    WHERE r.wake_at <= v_now AND r.concurrency_key IS NOT NULL
      AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
      AND (r.pinned_version IS NULL OR r.pinned_version = p_version)
      AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
  )) THEN
    SELECT array_agg(c.id), array_agg(DISTINCT c.concurrency_key) INTO v_candidates, v_keys
    FROM (
      SELECT r.id, r.concurrency_key FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at <= v_now AND r.concurrency_key IS NOT NULL
        AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
        AND (r.pinned_version IS NULL OR r.pinned_version = p_version)
        AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
      ORDER BY r.priority, r.wake_at, r.id
      LIMIT (p_limit - v_count) * 4
    ) c;
    PERFORM pg_advisory_xact_lock({{concurrency_lock_namespace}}, k.h)
    FROM (SELECT DISTINCT hashtext(key) AS h FROM unnest(coalesce(v_keys, '{}') || v_expired_keys) AS key ORDER BY 1) AS k;
    PERFORM {{schema}}.durable_flow_expire(v_expired_keyed, v_now);
    WITH locked AS (
      SELECT r.id, r.concurrency_key, r.concurrency_limit, r.priority, r.wake_at
      FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.id = ANY(v_candidates) AND r.wake_at <= v_now
      AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
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
