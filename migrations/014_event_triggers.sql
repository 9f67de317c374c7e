-- durable-flow schema, version 14: event triggers (issue 16): the workflow option `on: [{ event, match? }]`.
-- Each stored event that matches starts one run of the workflow in the event's own transaction
-- (lib/db/functions/event_triggers.sql, a trigger on the events table), so the process storing the event
-- (a web process doing ingest) need not register the workflow: the triggers live here, synced from the
-- registered workflows at migrate() and at a worker's start (lib/triggers/). Released migrations are
-- never edited; add a new numbered file instead.

CREATE TABLE {{schema}}.durable_flow_event_triggers (
  -- The workflow whose `on` option this entry is, and its index in that list. The rows of a workflow are
  -- exactly its option's entries: a sync replaces them, and deletes them when the option is removed.
  workflow_name     text NOT NULL,
  position          integer NOT NULL,
  event_name        text NOT NULL,
  -- The event's payload must contain it (`payload @> match`), as waits match.
  match             jsonb NOT NULL DEFAULT '{}',
  -- What start() would give the run, resolved from the workflow's options by the process that synced it:
  queue_name        text NOT NULL,
  priority          integer NOT NULL DEFAULT 0,
  -- `timeout` (ms): the run's deadline_at is the event's occurred_at plus it.
  timeout_ms        bigint,
  -- `concurrency` without a key function: the run's concurrency key is the workflow's name.
  concurrency_limit integer,
  -- cancelOn entries with a fixed match: [{ event, match }], stored with the run as start() stores them.
  cancel_on         jsonb NOT NULL DEFAULT '[]',
  -- The version of the flow that synced it (the run's `version`); `pinned`: the run is pinned to it.
  version           text NOT NULL,
  pinned            boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_name, position)
);
-- "The triggers of this event name": read by every stored event.
CREATE INDEX durable_flow_event_triggers_event ON {{schema}}.durable_flow_event_triggers (event_name);
