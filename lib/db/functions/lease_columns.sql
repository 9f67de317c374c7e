-- The columns a lease writes, from the run's previous values: the one definition of a lease, used by
-- durable_flow_lease (a claim, a notify's local claim) and by insertRuns for a run inserted already
-- claimed (previous values 0, 0, 0, NULL: epoch 1, first claim, first attempt, started now). The run is
-- running, due again at its lease expiry (so a crashed worker's run is claimed again then), and
-- claim_count counts claims since it last stopped cleanly.
--
-- IMMUTABLE LANGUAGE sql returning a set: the planner inlines it where it is called (in FROM, or a
-- sub-SELECT) into the expressions it stands for, so it costs no function call, and it is part of the
-- statement that writes the row, so it adds no row version.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_lease_columns(
  p_epoch bigint, p_claim_count integer, p_attempts integer, p_started_at timestamptz, p_now timestamptz,
  p_lease timestamptz
) RETURNS TABLE (
  status text, lease_epoch bigint, lease_expires_at timestamptz, wake_at timestamptz, claim_count integer,
  attempts integer, started_at timestamptz
) LANGUAGE sql IMMUTABLE AS $$
  SELECT 'running'::text, p_epoch + 1, p_lease, p_lease, p_claim_count + 1, p_attempts + 1, coalesce(p_started_at, p_now)
$$;
