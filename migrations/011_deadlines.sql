-- durable-flow schema, version 11: run deadlines (issue 16): the `timeout` and `startBy` options.
-- Released migrations are never edited; add a new numbered file instead.

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- `timeout` (workflow or start option): the run fails with RUN_TIMEOUT if it has not finished by
  -- then (the flow's clock at start() plus the timeout). A child run's is never later than its parent's.
  ADD COLUMN deadline_at timestamptz,
  -- `startBy` (start option): a run whose first execution has not begun by then is cancelled with
  -- DEADLINE_EXCEEDED and never starts.
  ADD COLUMN start_by timestamptz;

-- The claim's sweep of expired runs (durable_flow_expire, lib/db/functions/deadlines.sql): unfinished
-- runs with a deadline, and runs never started with a start-by. A run that has neither (most) is in
-- neither index; a finished run has no wake_at and leaves them.
CREATE INDEX durable_flow_runs_deadline ON {{schema}}.durable_flow_workflow_runs (deadline_at)
  WHERE wake_at IS NOT NULL AND deadline_at IS NOT NULL;
CREATE INDEX durable_flow_runs_start_by ON {{schema}}.durable_flow_workflow_runs (start_by)
  WHERE wake_at IS NOT NULL AND start_by IS NOT NULL AND started_at IS NULL;
