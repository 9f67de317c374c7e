-- durable-flow schema, version 8: versions and pinned runs (issue 15).
-- Released migrations are never edited; add a new numbered file instead.

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- The `version` of the flow that started the run (its option, or the hash of its workflows' code).
  ADD COLUMN version text,
  -- Set only for a workflow with `versioning: 'pinned'` (= version): the run is claimed only by a
  -- worker whose flow has this version. flow.repin() moves it to another.
  ADD COLUMN pinned_version text;

-- The claim takes due runs that are not pinned, or pinned to its own version. Two partial indexes
-- split the due runs that way, so due runs pinned to a version no live worker has are never read by
-- the claims of other versions (the claim is a BitmapOr of the two; see docs/ARCHITECTURE.md).
CREATE INDEX durable_flow_runs_due_unpinned ON {{schema}}.durable_flow_workflow_runs (wake_at)
  WHERE wake_at IS NOT NULL AND pinned_version IS NULL;
CREATE INDEX durable_flow_runs_due_pinned ON {{schema}}.durable_flow_workflow_runs (pinned_version, wake_at)
  WHERE wake_at IS NOT NULL AND pinned_version IS NOT NULL;

-- The claim and a notify's local claim now take the worker's version: lib/db/functions/claim.sql and
-- notify.sql drop the old signatures and create the new ones in one transaction (applied by the same
-- migrate() call, right after this file), so no call ever finds neither.

-- The runs not finished that are pinned: the viewer counts those pinned to another version than its
-- own, flow.repin() moves them. Finished runs leave it, so it stays as small as the pinned backlog.
CREATE INDEX durable_flow_runs_pinned_live ON {{schema}}.durable_flow_workflow_runs (pinned_version, workflow_name)
  WHERE pinned_version IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
