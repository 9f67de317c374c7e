-- durable-flow schema, version 12: start control (issue 16): the workflow options singleton, rateLimit
-- and debounce, decided at start() (lib/workflow/start-control.ts) under an advisory transaction lock per
-- (workflow, option, key). Released migrations are never edited; add a new numbered file instead.

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- `singleton`: the key the run was started under ('' for a singleton without a key function). While
  -- the run is not finished, a start of the same workflow and key returns it (mode 'skip') or cancels it.
  ADD COLUMN singleton_key text,
  -- `rateLimit`: the key the start was counted under ('' without a key function).
  ADD COLUMN rate_limit_key text,
  -- `rateLimit`: when the start was accepted (the flow's clock, taken under the key's lock); NULL for a
  -- start beyond the limit (its run is cancelled with the code RATE_LIMITED at once).
  ADD COLUMN admitted_at timestamptz,
  -- `debounce`: the key of the burst ('' without a key function): while the run is `enqueued` and not
  -- yet due, a start of the same key folds into it (its input replaced, wake_at pushed back).
  ADD COLUMN debounce_key text,
  -- `debounce.maxWait`: the latest the run may begin (its first start plus maxWait); NULL without maxWait.
  ADD COLUMN debounce_deadline timestamptz;

-- "The run of this singleton key not yet finished." Finished runs leave it.
CREATE INDEX durable_flow_runs_singleton ON {{schema}}.durable_flow_workflow_runs (workflow_name, singleton_key)
  WHERE singleton_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
-- "The starts of this rate-limit key accepted since t" (the sliding window).
CREATE INDEX durable_flow_runs_rate_limit ON {{schema}}.durable_flow_workflow_runs (workflow_name, rate_limit_key, admitted_at)
  WHERE rate_limit_key IS NOT NULL AND admitted_at IS NOT NULL;
-- "The debounced run of this key that has not begun." Runs leave it when a worker claims them.
CREATE INDEX durable_flow_runs_debounce ON {{schema}}.durable_flow_workflow_runs (workflow_name, debounce_key)
  WHERE debounce_key IS NOT NULL AND status = 'enqueued';
