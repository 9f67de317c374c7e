-- durable-flow schema, version 7: the operator tools (issue 14): pause, replay and rerun, repairs,
-- bulk operations, and the audit trail of all of them.
-- Released migrations are never edited; add a new numbered file instead.

-- 'paused': not terminal, never claimed (no wake_at) until flow.resume() makes it due again. The new
-- constraint is added NOT VALID then validated, so the check of the existing rows does not hold the
-- table's strongest lock longer than adding it takes.
ALTER TABLE {{schema}}.durable_flow_workflow_runs DROP CONSTRAINT durable_flow_runs_status_check;
ALTER TABLE {{schema}}.durable_flow_workflow_runs ADD CONSTRAINT durable_flow_runs_status_check CHECK (status IN
  ('enqueued', 'running', 'sleeping', 'waiting', 'ready', 'retrying', 'paused', 'completed', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE {{schema}}.durable_flow_workflow_runs VALIDATE CONSTRAINT durable_flow_runs_status_check;

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- flow.pause() of a run a worker holds: the worker's next write that ends its execution (or hands
  -- it back) leaves it 'paused' instead, and it starts no step after the one running.
  ADD COLUMN pause_requested boolean NOT NULL DEFAULT false,
  -- flow.pauseWorkflow(): the wake_at a due run of a paused workflow had when a claim set it aside
  -- (wake_at NULL meanwhile, so claims never scan it); resumeWorkflow() puts it back.
  ADD COLUMN held_wake_at timestamptz,
  -- flow.replay() / flow.rerunFrom(): the run this one replays.
  ADD COLUMN replay_of text;
CREATE INDEX durable_flow_runs_held ON {{schema}}.durable_flow_workflow_runs (workflow_name) WHERE held_wake_at IS NOT NULL;
CREATE INDEX durable_flow_runs_replay_of ON {{schema}}.durable_flow_workflow_runs (replay_of) WHERE replay_of IS NOT NULL;

-- Workflows whose runs are not claimed (flow.pauseWorkflow), by name. Small: read by every claim.
CREATE TABLE {{schema}}.durable_flow_workflow_pauses (
  workflow_name text PRIMARY KEY,
  actor         text,
  reason        text,
  paused_at     timestamptz NOT NULL DEFAULT now()
);

-- Bulk operations (flow.bulk): durable, worked through in batches by id order up to max_run_id (the
-- newest run when it was made); `cursor` is the last run id done, moved in the transaction that acts
-- on the batch, so a crash re-does no run. Whoever holds the lease (lease_owner, lease_expires_at)
-- works on it; an expired lease is taken over.
CREATE TABLE {{schema}}.durable_flow_operations (
  id               text PRIMARY KEY,
  action           text NOT NULL CHECK (action IN ('cancel', 'retry', 'replay')),
  filter           jsonb NOT NULL DEFAULT '{}',
  status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
  total            integer NOT NULL DEFAULT 0,
  done             integer NOT NULL DEFAULT 0,
  failed           integer NOT NULL DEFAULT 0,
  max_run_id       bigint NOT NULL DEFAULT 0,
  cursor           bigint NOT NULL DEFAULT 0,
  actor            text,
  reason           text,
  error            jsonb,
  lease_owner      text,
  lease_expires_at timestamptz,
  completed_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX durable_flow_operations_running ON {{schema}}.durable_flow_operations (lease_expires_at) WHERE status = 'running';

-- The audit trail: one row per operator action (and per run a bulk operation acts on). No foreign key:
-- it outlives the runs it names (retention keeps it `retention.audit`, a year by default).
CREATE TABLE {{schema}}.durable_flow_audit (
  id            bigserial PRIMARY KEY,
  at            timestamptz NOT NULL DEFAULT now(),
  actor         text,
  action        text NOT NULL,
  workflow_name text,
  run_id        text,
  step_name     text,
  operation_id  text,
  reason        text,
  details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX durable_flow_audit_run ON {{schema}}.durable_flow_audit (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX durable_flow_audit_operation ON {{schema}}.durable_flow_audit (operation_id, id) WHERE operation_id IS NOT NULL;
CREATE INDEX durable_flow_audit_at ON {{schema}}.durable_flow_audit (at, id);
