-- durable-flow schema, version 19: the run list's indexes, redesigned so a run version writes fewer
-- index entries (issue 17, point 7) and every list stays a keyset range scan at 10 million runs (point 4).
--
-- The lists are ordered by id now (ids are assigned in creation order; lib/read/lists.ts), so the
-- primary key serves the unfiltered lists and the (created_at, id) indexes go. A run version used to
-- write one entry in each of pkey, run_id, runs_created, runs_workflow_status, runs_workflow_created,
-- runs_status (and runs_due while it had a wake time): 6 for a finished run, 8 for a running one. Now
-- a completed run's version writes 3 (pkey, run_id, runs_by_workflow). A failed or cancelled run's
-- final version also enters runs_by_status (4): those are the small sets a status filter reads.
--
-- runs_due (wake_at) stays, though the claim has indexes of its own (018): the planner still drives the
-- keyed path's candidates from it (without it, a bitmap scan of every due keyed run, 20,000 in
-- test/integration/claim-levels.test.ts), and the harness's next wake, the metrics' lag and the
-- orphaned-workflow check read it. So a running version writes 6 (those, runs_by_status,
-- runs_due_unpinned, runs_due) and a completed one 3.
-- run_id's unique index uses text_pattern_ops: equality, ON CONFLICT and the viewer's run-id prefix
-- search (starts_with, LIKE 'x%') in any collation, from one index.
-- Released migrations are never edited; add a new numbered file instead.

DROP INDEX {{schema}}.durable_flow_runs_created;
DROP INDEX {{schema}}.durable_flow_runs_workflow_created;
DROP INDEX {{schema}}.durable_flow_runs_workflow_status;
DROP INDEX {{schema}}.durable_flow_runs_status;

-- One workflow's runs, newest first (the workflow filter; with a status, filtered in the scan).
CREATE INDEX durable_flow_runs_by_workflow ON {{schema}}.durable_flow_workflow_runs (workflow_name, id DESC);
-- Runs of every status but completed (the small sets), by status, newest first. A completed filter
-- reads the primary key or runs_by_workflow: most runs are completed.
CREATE INDEX durable_flow_runs_by_status ON {{schema}}.durable_flow_workflow_runs (status, id DESC)
  WHERE status <> 'completed';

-- One run's children, newest first (the list's children scope, its child counts, a cancel's tree).
DROP INDEX {{schema}}.durable_flow_runs_parent;
CREATE INDEX durable_flow_runs_parent ON {{schema}}.durable_flow_workflow_runs (parent_run_id, id DESC)
  WHERE parent_run_id IS NOT NULL;

DROP INDEX {{schema}}.durable_flow_runs_run_id;
CREATE UNIQUE INDEX durable_flow_runs_run_id ON {{schema}}.durable_flow_workflow_runs (run_id text_pattern_ops);
