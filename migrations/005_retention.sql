-- durable-flow schema, version 5: what retention needs (flow option `retention`, flow.prune()).
-- Released migrations are never edited; add a new numbered file instead.

-- Pruning finds the events stored before its cutoff oldest first; without this, every pass would read
-- the whole events table to find there is nothing to delete. (Runs are found through
-- durable_flow_runs_created: a run finished before a cutoff was created before it too.)
CREATE INDEX durable_flow_events_occurred ON {{schema}}.durable_flow_workflow_events (occurred_at, id);
