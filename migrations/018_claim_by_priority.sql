-- durable-flow schema, version 18: the claim reads due runs one priority level at a time, in wake
-- order (lib/db/functions/claim.sql), instead of reading every due run to sort them: with 100,000 due
-- runs a claim read and sorted all of them (about 190 ms on two cores) to lease one. The two due
-- indexes of 008_versions.sql are led by priority now, so a level's due runs are one range scan that
-- stops at the first run not due, and the lowest priority present is one probe. Same two indexes, same
-- rows (the partial predicates are unchanged): no more index writes per run than before.
-- Released migrations are never edited; add a new numbered file instead.

DROP INDEX {{schema}}.durable_flow_runs_due_unpinned;
CREATE INDEX durable_flow_runs_due_unpinned ON {{schema}}.durable_flow_workflow_runs (priority, wake_at, id)
  WHERE wake_at IS NOT NULL AND pinned_version IS NULL;
DROP INDEX {{schema}}.durable_flow_runs_due_pinned;
CREATE INDEX durable_flow_runs_due_pinned ON {{schema}}.durable_flow_workflow_runs (pinned_version, priority, wake_at, id)
  WHERE wake_at IS NOT NULL AND pinned_version IS NOT NULL;
