-- durable-flow schema, version 4: cron schedules (issue 13).
-- Released migrations are never edited; add a new numbered file instead.

-- One row per schedule: given in a workflow's options (named after the workflow) or made at runtime
-- with flow.schedules.create. `next_at` is the next slot not yet decided, on the database clock (plus
-- the flow's offset): a worker fires the schedule once it is due, locking the row FOR UPDATE SKIP
-- LOCKED, so one process at a time decides its slots; the runs it starts carry the idempotency key
-- `schedule:<name>:<slot ISO>`, whose unique index keeps a slot to one run whatever else races it
-- (a backfill, a process that read an older row). `skipped` is the recent history of slots that
-- started no run (overlap, missed while down), newest first, bounded in code.
CREATE TABLE {{schema}}.durable_flow_schedules (
  name           text PRIMARY KEY,
  workflow_name  text NOT NULL,
  cron           text NOT NULL,
  timezone       text NOT NULL DEFAULT 'UTC',
  input          jsonb,
  overlap        text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow', 'buffer_one', 'cancel_other')),
  catch_up       text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'none', 'all')),
  paused         boolean NOT NULL DEFAULT false,
  next_at        timestamptz,
  last_slot      timestamptz,
  last_run_id    text,
  -- overlap 'buffer_one': the slot waiting for the previous run to finish.
  buffered_slot  timestamptz,
  skipped        jsonb NOT NULL DEFAULT '[]',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Due schedules, for the firing of every worker's claim loop.
CREATE INDEX durable_flow_schedules_due ON {{schema}}.durable_flow_schedules (next_at) WHERE NOT paused;

-- The slot a scheduled run was started for (getRun().scheduledFor); NULL for runs started otherwise.
ALTER TABLE {{schema}}.durable_flow_workflow_runs ADD COLUMN scheduled_for timestamptz;
