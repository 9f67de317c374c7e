-- durable-flow schema, version 14: event triggers (issue 16): the workflow option `on: [{ event, match? }]`.
-- Each stored event that matches starts one run of the workflow in the event's own transaction
-- (lib/db/functions/event_triggers.sql, a trigger on the events table), so the process storing the event
-- (a web process doing ingest) need not register the workflow: the triggers live here, synced from the
-- registered workflows at migrate() and at a worker's start (lib/triggers/). A workflow whose start needs
-- its code (singleton, rateLimit, debounce, a concurrency key function, a cancelOn match function) gets a
-- pending start instead, finished by a worker that registers it. Released migrations are never edited;
-- add a new numbered file instead.

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
  -- The start needs the workflow's code: the event's transaction stores a row of
  -- durable_flow_trigger_starts instead of the run (the columns above, but event_name and match, unused).
  deferred          boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_name, position)
);
-- "The triggers of this event name": read by every stored event.
CREATE INDEX durable_flow_event_triggers_event ON {{schema}}.durable_flow_event_triggers (event_name);

-- Pending starts of triggers whose workflow's start needs its code (`deferred`): one per event and
-- workflow, stored in the event's transaction; a worker registering the workflow starts the run through
-- start() (start control and key functions apply; idempotency key event:<event db id>) and deletes the
-- row in the same transaction (lib/triggers/deferred.ts). No foreign key: an event pruned meanwhile
-- still starts its run (the payload is here).
CREATE TABLE {{schema}}.durable_flow_trigger_starts (
  id                bigserial PRIMARY KEY,
  workflow_name     text NOT NULL,
  -- The event's database id (durable_flow_workflow_events.id).
  workflow_event_id bigint NOT NULL,
  payload           jsonb NOT NULL,
  -- Failed attempts to start it (its start threw: a key function, the input); after 5 it is left here
  -- with its error, for an operator to look at (and delete, or reset attempts to 0 to try again).
  attempts          integer NOT NULL DEFAULT 0,
  error             text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workflow_name, workflow_event_id)
);
-- "The oldest pending start of this workflow": starts of one workflow are taken one at a time, in order.
CREATE INDEX durable_flow_trigger_starts_workflow ON {{schema}}.durable_flow_trigger_starts (workflow_name, id);
