-- Leases runs the caller has locked to p_owner until p_lease: what every claim writes (durable_flow_claim,
-- and durable_flow_notify for runs it wakes for a local worker). Returns the claimed runs as the
-- worker reads them, and the ids of those that ran before (their history is replayed).
--
-- Now with p_mark: the low-water mark of the execution the claim starts (see resume_snapshot above).
-- The lease's own columns come from durable_flow_lease_columns (lease_columns.sql), their one definition.
-- Since 007_operator.sql, with pause_requested: a run flow.pause() asked to pause while its lease ran
-- out (its worker died) is handed back at once by its new execution, which leaves it 'paused'.
-- A run that replays another (flow.replay, flow.rerunFrom: replay_of) has its history loaded even before
-- it first starts: a throttled rerun's copied steps (rerun.ts sets no started_at for it).
-- Since 011_deadlines.sql, with deadline_ms: the run's deadline (`timeout`), for the worker's timer.
-- Since 017_trace_context.sql, with trace_context: start()'s trace context, the parent of the execution's spans.
-- PL/pgSQL, not SQL: its statement is planned once per session (with lease_columns inlined into it),
-- where a SQL function's body is parsed and planned again at every call.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_lease(
  p_ids bigint[], p_owner text, p_now timestamptz, p_lease timestamptz, p_mark text, OUT runs jsonb, OUT replay bigint[]
) LANGUAGE plpgsql AS $$
BEGIN
  WITH previous AS (
    SELECT id, started_at FROM {{schema}}.durable_flow_workflow_runs WHERE id = ANY(p_ids)
  ), claimed AS (
    UPDATE {{schema}}.durable_flow_workflow_runs r SET
      (status, lease_epoch, lease_expires_at, wake_at, claim_count, attempts, started_at) =
        (SELECT * FROM {{schema}}.durable_flow_lease_columns(r.lease_epoch, r.claim_count, r.attempts, r.started_at, p_now, p_lease)),
      lease_owner = p_owner, updated_at = clock_timestamp(),
      -- After a clean stop, this execution's mark; after a crash, the mark of the execution that crashed
      -- (a run inserted already claimed has none: its creation's).
      resume_snapshot = CASE WHEN r.claim_count = 0 THEN p_mark ELSE coalesce(r.resume_snapshot, r.created_snapshot) END
    FROM previous
    WHERE r.id = previous.id
    RETURNING r.id, r.run_id, r.workflow_name, r.input::text AS input, r.lease_epoch, r.claim_count,
              r.attempts, r.created_snapshot, r.resume_snapshot, r.parent_run_id, r.queue_name,
              previous.started_at IS NOT NULL OR r.replay_of IS NOT NULL AS replay, r.pause_requested,
              extract(epoch FROM r.deadline_at) * 1000 AS deadline_ms, r.trace_context
  )
  SELECT coalesce(jsonb_agg(c), '[]'), coalesce(array_agg(c.id) FILTER (WHERE c.replay), '{}') INTO runs, replay
  FROM claimed c;
END
$$;
