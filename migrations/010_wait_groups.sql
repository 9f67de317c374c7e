-- durable-flow schema, version 10: composable waits (issue 15, point 4): step.waitAny and step.waitAll.
-- Released migrations are never edited; add a new numbered file instead.
--
-- A waitAny / waitAll step has one wait row per branch (`branch`: its key), all with the step's
-- `group_mode`. A branch is an event (event_name, match), a run to finish (watched_run_id) or a sleep
-- (`is_sleep`: no event ever matches it, its timeout_at is its wake time and its expiry is its match).
-- A matched branch keeps its value in `result` (the event payload, the run's outcome, null for a sleep);
-- the step's own result is written from its rows by durable_flow_settle_groups, in the transaction that
-- matched the branch: for 'any' the first matched branch wins ({ key, value }) and the other rows are
-- cancelled at once; for 'all' the step succeeds when every row is matched.
-- A plain wait has branch '' and no group_mode: nothing changes for it.
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD COLUMN branch text NOT NULL DEFAULT '';
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD COLUMN group_mode text;
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD COLUMN is_sleep boolean NOT NULL DEFAULT false;
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD COLUMN result jsonb;
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD CONSTRAINT durable_flow_waits_group_mode_check
  CHECK (group_mode IN ('any', 'all'));

-- One row per (step, branch) instead of one per step.
DROP INDEX {{schema}}.durable_flow_waits_run_step;
CREATE UNIQUE INDEX durable_flow_waits_run_step ON {{schema}}.durable_flow_workflow_waits (workflow_run_id, workflow_step_id, branch);
