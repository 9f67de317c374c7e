-- Leases runs the caller has locked to p_owner until p_lease: what every claim writes (durable_flow_claim,
-- and durable_flow_notify for runs it wakes for a local worker). Returns the claimed runs as the
-- worker reads them, and the ids of those that ran before (their history is replayed).
--
-- Now with p_mark: the low-water mark of the execution the claim starts (see resume_snapshot above).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_lease(
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
