-- durable-flow schema, version 9: signals (issue 15, point 5): messages addressed to one run
-- (flow.signal), buffered until a step.waitForSignal of that run consumes them, oldest first, each once.
-- Released migrations are never edited; add a new numbered file instead.

-- One signal sent to one run. `signal_id` (the sender's id, optional) makes sending idempotent: unique
-- per run. `consumed_by_step_id` is the waitForSignal step that took it (its result holds the payload),
-- set in that step's suspension transaction, under the run's row lock, which flow.signal takes too.
-- It goes with its step (never buffered again once consumed). `created_at` is the flow's clock when it was stored: a signal stored after a wait's timeout is too
-- late for that wait, and stays buffered for a later one.
CREATE TABLE {{schema}}.durable_flow_signals (
  id                  bigserial PRIMARY KEY,
  workflow_run_id     bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  name                text NOT NULL,
  payload             jsonb NOT NULL DEFAULT '{}',
  signal_id           text,
  consumed_by_step_id bigint REFERENCES {{schema}}.durable_flow_workflow_steps (id) ON DELETE CASCADE,
  consumed_at         timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX durable_flow_signals_run_signal_id ON {{schema}}.durable_flow_signals (workflow_run_id, signal_id)
  WHERE signal_id IS NOT NULL;
-- "The oldest unconsumed signal named N of run R" (a suspension), and a run's signals on its timeline.
CREATE INDEX durable_flow_signals_unconsumed ON {{schema}}.durable_flow_signals (workflow_run_id, name, id)
  WHERE consumed_by_step_id IS NULL;
CREATE INDEX durable_flow_signals_run ON {{schema}}.durable_flow_signals (workflow_run_id, id);
CREATE INDEX durable_flow_signals_consumed_by ON {{schema}}.durable_flow_signals (consumed_by_step_id)
  WHERE consumed_by_step_id IS NOT NULL;

-- A wait of step.waitForSignal: the signal's name. Its event_name is 'durable_flow.signal' (no event
-- matches it: notify and a suspension's event lookup skip waits with a signal_name).
ALTER TABLE {{schema}}.durable_flow_workflow_waits ADD COLUMN signal_name text;
