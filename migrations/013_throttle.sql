-- durable-flow schema, version 13: the `throttle` workflow option (issue 16): at most `limit` runs of a
-- key begin (their first execution: started_at) in any interval of length `period`; the excess waits
-- its turn and is never dropped. Enforced by durable_flow_claim (lib/db/functions/claim.sql) under an
-- advisory transaction lock per throttle key. Released migrations are never edited; add a new numbered file instead.

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- The key the run is throttled under (`<workflow>` or `<workflow>:<key(input)>`, as concurrency_key),
  -- with the workflow's limit and period when it started: NULL for a run of a workflow without `throttle`.
  ADD COLUMN throttle_key text,
  ADD COLUMN throttle_limit integer,
  ADD COLUMN throttle_period_ms bigint,
  -- A claim found the key's window full: the run waits for its turn (its wake_at is when the window
  -- should have room for it, so no claim reads it before). Claims of the key take waiting runs first,
  -- in (priority, id) order, whatever their wake_at.
  ADD COLUMN throttle_waiting boolean NOT NULL DEFAULT false;

-- "The throttled runs that have not begun, due first" (the claim's candidates).
CREATE INDEX durable_flow_runs_due_throttled ON {{schema}}.durable_flow_workflow_runs (wake_at)
  WHERE throttle_key IS NOT NULL AND started_at IS NULL;
-- "The runs waiting for this key's window, in turn order" (a claim reads its head and its tail).
CREATE INDEX durable_flow_runs_throttle_queue ON {{schema}}.durable_flow_workflow_runs (throttle_key, priority, id)
  WHERE throttle_waiting AND status = 'enqueued' AND started_at IS NULL;
-- "The runs of this key that began since t" (the sliding window).
CREATE INDEX durable_flow_runs_throttle_started ON {{schema}}.durable_flow_workflow_runs (throttle_key, started_at)
  WHERE throttle_key IS NOT NULL AND started_at IS NOT NULL;
