-- durable-flow schema, version 18: the claim reads due runs one priority level at a time, in wake
-- order (lib/db/functions/claim.sql), instead of reading every due run to sort them: with 100,000 due
-- runs a claim read and sorted all of them (about 190 ms on two cores) to lease one. The two due
-- indexes of 008_versions.sql are led by priority now, so a level's due runs are one range scan that
-- stops at the first run not due, and the lowest priority present is one probe. The first path's two
-- indexes hold only its own candidates now (no run with a concurrency key, no throttled run that has
-- not begun: the keyed path's), so its scans never walk through the keyed path's backlog. Same
-- indexes, the same rows or fewer: no more index writes per run than before.
-- Released migrations are never edited; add a new numbered file instead.

DROP INDEX {{schema}}.durable_flow_runs_due_unpinned;
CREATE INDEX durable_flow_runs_due_unpinned ON {{schema}}.durable_flow_workflow_runs (priority, wake_at, id)
  WHERE wake_at IS NOT NULL AND pinned_version IS NULL
    AND concurrency_key IS NULL AND (throttle_key IS NULL OR started_at IS NOT NULL);
DROP INDEX {{schema}}.durable_flow_runs_due_pinned;
CREATE INDEX durable_flow_runs_due_pinned ON {{schema}}.durable_flow_workflow_runs (pinned_version, priority, wake_at, id)
  WHERE wake_at IS NOT NULL AND pinned_version IS NOT NULL
    AND concurrency_key IS NULL AND (throttle_key IS NULL OR started_at IS NOT NULL);
-- The keyed path's candidates (runs with a concurrency key, throttled runs not begun) the same way. The
-- keyed index now leaves out the runs parked for a slot (no wake time): a level of them would
-- otherwise be walked through by every probe for the next level.
DROP INDEX {{schema}}.durable_flow_runs_due_keyed;
CREATE INDEX durable_flow_runs_due_keyed ON {{schema}}.durable_flow_workflow_runs (priority, wake_at, id)
  WHERE concurrency_key IS NOT NULL AND wake_at IS NOT NULL;
DROP INDEX {{schema}}.durable_flow_runs_due_throttled;
CREATE INDEX durable_flow_runs_due_throttled ON {{schema}}.durable_flow_workflow_runs (priority, wake_at, id)
  WHERE throttle_key IS NOT NULL AND started_at IS NULL AND wake_at IS NOT NULL;
