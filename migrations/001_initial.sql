-- durable-flow schema, version 1. Released migrations are never edited; add a new numbered file instead.
-- {{schema}} is replaced by the quoted schema name and {{channel}} by the NOTIFY channel prefix.

-- A run of a workflow. This table is also the work queue: a run is due when wake_at <= now() and
-- nobody holds a live lease on it (while a run executes, wake_at is its lease expiry, so a crashed
-- worker's runs become due again when the lease runs out).
CREATE TABLE {{schema}}.durable_flow_workflow_runs (
  id                bigserial PRIMARY KEY,
  run_id            text NOT NULL,
  workflow_name     text NOT NULL,
  status            text NOT NULL DEFAULT 'enqueued',
  queue_name        text NOT NULL DEFAULT 'default',
  priority          integer NOT NULL DEFAULT 0,
  input             jsonb,
  output            jsonb,
  error             jsonb,
  idempotency_key   text,
  parent_run_id     text,
  parent_step_name  text,
  concurrency_key   text,
  wake_at           timestamptz,
  lease_owner       text,
  lease_epoch       bigint NOT NULL DEFAULT 0,
  lease_expires_at  timestamptz,
  claim_count       integer NOT NULL DEFAULT 0,
  attempts          integer NOT NULL DEFAULT 0,
  created_snapshot  text NOT NULL DEFAULT pg_current_snapshot()::text,
  started_at        timestamptz,
  interrupted_at    timestamptz,
  completed_at      timestamptz,
  failed_at         timestamptz,
  cancelled_at      timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_runs_status_check CHECK (status IN
    ('enqueued', 'running', 'sleeping', 'waiting', 'ready', 'retrying', 'completed', 'failed', 'cancelled'))
) WITH (fillfactor = 80);

CREATE UNIQUE INDEX durable_flow_runs_run_id ON {{schema}}.durable_flow_workflow_runs (run_id);
CREATE UNIQUE INDEX durable_flow_runs_idempotency_key ON {{schema}}.durable_flow_workflow_runs (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- The claim query: due runs in wake order. Terminal and event-waiting runs have no wake_at and stay out.
CREATE INDEX durable_flow_runs_due ON {{schema}}.durable_flow_workflow_runs (wake_at) WHERE wake_at IS NOT NULL;
-- The viewer: newest first, optionally by workflow and status.
CREATE INDEX durable_flow_runs_created ON {{schema}}.durable_flow_workflow_runs (created_at DESC, id DESC);
CREATE INDEX durable_flow_runs_workflow_status ON {{schema}}.durable_flow_workflow_runs (workflow_name, status);
CREATE INDEX durable_flow_runs_status ON {{schema}}.durable_flow_workflow_runs (status, created_at DESC, id DESC);
CREATE INDEX durable_flow_runs_parent ON {{schema}}.durable_flow_workflow_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- A step of a run: its stored result is what a replay returns instead of running the step again.
CREATE TABLE {{schema}}.durable_flow_workflow_steps (
  id               bigserial PRIMARY KEY,
  workflow_run_id  bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  name             text NOT NULL,
  kind             text NOT NULL DEFAULT 'run',
  status           text NOT NULL DEFAULT 'pending',
  attempts         integer NOT NULL DEFAULT 0,
  position         integer,
  result           jsonb,
  error            jsonb,
  cursor           jsonb,
  metadata         jsonb NOT NULL DEFAULT '{}',
  -- The snapshot of the execution that stored this step; a wait that follows it matches every event
  -- not yet visible in that snapshot (see docs/ARCHITECTURE.md, "No lost wake-up").
  exec_snapshot    text,
  started_at       timestamptz,
  completed_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_steps_status_check CHECK (status IN
    ('pending', 'running', 'succeeded', 'sleeping', 'waiting', 'retrying', 'failed'))
);
CREATE UNIQUE INDEX durable_flow_steps_run_name ON {{schema}}.durable_flow_workflow_steps (workflow_run_id, name);

-- An event: from flow.notify, the ingest endpoint or step.sendEvent.
CREATE TABLE {{schema}}.durable_flow_workflow_events (
  id           bigserial PRIMARY KEY,
  event_id     text,
  name         text NOT NULL,
  payload      jsonb NOT NULL DEFAULT '{}',
  source       text,
  txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX durable_flow_events_event_id ON {{schema}}.durable_flow_workflow_events (event_id)
  WHERE event_id IS NOT NULL;
CREATE INDEX durable_flow_events_name_txid ON {{schema}}.durable_flow_workflow_events (name, txid);
CREATE INDEX durable_flow_events_name_id ON {{schema}}.durable_flow_workflow_events (name, id);

-- A run waiting for an event (one per wait step).
CREATE TABLE {{schema}}.durable_flow_workflow_waits (
  id                 bigserial PRIMARY KEY,
  workflow_run_id    bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  workflow_step_id   bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_steps (id) ON DELETE CASCADE,
  workflow_event_id  bigint REFERENCES {{schema}}.durable_flow_workflow_events (id) ON DELETE SET NULL,
  event_name         text NOT NULL,
  status             text NOT NULL DEFAULT 'pending',
  match              jsonb NOT NULL DEFAULT '{}',
  allow_past_events  boolean NOT NULL DEFAULT false,
  since_snapshot     text,
  timeout_at         timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_waits_status_check CHECK (status IN ('pending', 'matched', 'timed_out', 'cancelled'))
);
CREATE UNIQUE INDEX durable_flow_waits_run_step ON {{schema}}.durable_flow_workflow_waits (workflow_run_id, workflow_step_id);
CREATE INDEX durable_flow_waits_pending ON {{schema}}.durable_flow_workflow_waits (event_name) WHERE status = 'pending';
CREATE INDEX durable_flow_waits_event ON {{schema}}.durable_flow_workflow_waits (workflow_event_id) WHERE workflow_event_id IS NOT NULL;

-- A structured log line of a run, optionally of one of its steps. `key` makes a replay write nothing twice.
CREATE TABLE {{schema}}.durable_flow_workflow_logs (
  id                bigserial PRIMARY KEY,
  workflow_run_id   bigint NOT NULL REFERENCES {{schema}}.durable_flow_workflow_runs (id) ON DELETE CASCADE,
  workflow_step_id  bigint REFERENCES {{schema}}.durable_flow_workflow_steps (id) ON DELETE SET NULL,
  key               text NOT NULL,
  level             text NOT NULL,
  message           text NOT NULL,
  data              jsonb NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT durable_flow_logs_level_check CHECK (level IN ('debug', 'info', 'warn', 'error'))
);
CREATE UNIQUE INDEX durable_flow_logs_run_key ON {{schema}}.durable_flow_workflow_logs (workflow_run_id, key);
CREATE INDEX durable_flow_logs_step ON {{schema}}.durable_flow_workflow_logs (workflow_step_id, created_at)
  WHERE workflow_step_id IS NOT NULL;

-- One row: until when some process wants live changes. While nobody does, writes send no change
-- NOTIFY at all (a NOTIFY serialises commits on a database-wide lock, so it is not free).
CREATE TABLE {{schema}}.durable_flow_live (
  id          integer PRIMARY KEY CHECK (id = 1),
  live_until  timestamptz
);
INSERT INTO {{schema}}.durable_flow_live (id, live_until) VALUES (1, NULL);

-- Wake idle workers the moment a run becomes due without a lease: a new run, an event that matched a
-- wait, a run released by a stopping worker. The payload is the queue name; NOTIFY is only a hint.
CREATE FUNCTION {{schema}}.durable_flow_notify_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{{channel}}wake', NEW.queue_name);
  RETURN NULL;
END
$$;

CREATE TRIGGER durable_flow_wake_on_insert
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp())
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();

CREATE TRIGGER durable_flow_wake_on_update
  AFTER UPDATE OF status, wake_at, lease_owner ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (
    NEW.lease_owner IS NULL AND NEW.wake_at IS NOT NULL AND NEW.wake_at <= clock_timestamp()
    AND (OLD.lease_owner IS NOT NULL OR OLD.wake_at IS NULL OR OLD.wake_at > clock_timestamp() OR OLD.status <> NEW.status)
  )
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_wake();

-- Live changes: '<table letter>:<c|u>:<id>', sent only while a process asked for them.
CREATE FUNCTION {{schema}}.durable_flow_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_live WHERE id = 1 AND live_until > now()) THEN
    PERFORM pg_notify('{{channel}}changes', TG_ARGV[0] || ':' || CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END || ':' || NEW.id);
  END IF;
  RETURN NULL;
END
$$;

-- Heartbeats only move the lease (they leave updated_at alone), so they send no change.
CREATE TRIGGER durable_flow_runs_created
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');
CREATE TRIGGER durable_flow_runs_changes
  AFTER UPDATE ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.updated_at IS DISTINCT FROM NEW.updated_at)
  EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('r');
CREATE TRIGGER durable_flow_steps_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_steps
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('s');
CREATE TRIGGER durable_flow_waits_changes
  AFTER INSERT OR UPDATE ON {{schema}}.durable_flow_workflow_waits
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('w');
CREATE TRIGGER durable_flow_events_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_events
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('e');
CREATE TRIGGER durable_flow_logs_changes
  AFTER INSERT ON {{schema}}.durable_flow_workflow_logs
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_notify_change('l');
