-- Event triggers (the workflow option `on`, migration 014): every event row inserted (flow.notify, signed
-- ingest's durable_flow_notify_many, step.sendEvent: all of them insert through durable_flow_notify)
-- starts one run of each workflow with a trigger of its name whose match the payload contains, in the
-- event's own transaction: the runs exist exactly when the event commits. A duplicate event id inserts
-- no row (ON CONFLICT DO NOTHING), so it starts nothing again; the run's idempotency key
-- `event:<the event's database id>` (unique per workflow) keeps it to one run per event and workflow
-- even so. Several entries of one workflow matching one event start one run (the first entry's).
--
-- The run is the row start() inserts for that workflow (insertRun.ts): input = the payload, queue,
-- priority, concurrency (no key function), cancelOn (fixed matches), version / pinned_version,
-- deadline_at (`timeout`), enqueued and due at the event's occurred_at (the flow's clock). Its mark
-- (created_snapshot) is the event's own, as durable_flow_notify's local claims write it: its waits never
-- take this event or any stored before it in this transaction. A paused workflow's run queues, and a
-- claim sets it aside (as any start's).
--
-- A trigger marked `deferred` (its workflow's start needs the workflow's code: singleton, rateLimit,
-- debounce, a concurrency key function, a cancelOn match function) stores a pending start in
-- durable_flow_trigger_starts instead (unique per workflow and event), which a worker registering the
-- workflow turns into a run through start() (lib/triggers/deferred.ts).
--
-- Locks: none of its own. It runs inside durable_flow_notify after the event name's advisory lock, and
-- inserts new rows only (unique-index checks on run_id and (workflow_name, idempotency_key), which
-- no other transaction can hold for this event's key: the event id is unique first). Reading the
-- trigger table takes no lock; a sync writing it does not block it.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_event_start() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_mark text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM {{schema}}.durable_flow_event_triggers t WHERE t.event_name = NEW.name AND NEW.payload @> t.match) THEN
    RETURN NULL;
  END IF;
  v_mark := pg_current_snapshot()::text || '|' || pg_current_xact_id()::text || '|' || NEW.id::text;
  WITH t AS (
    SELECT DISTINCT ON (t.workflow_name) t.* FROM {{schema}}.durable_flow_event_triggers t
    WHERE t.event_name = NEW.name AND NEW.payload @> t.match
    ORDER BY t.workflow_name, t.position
  ), deferred AS (
    INSERT INTO {{schema}}.durable_flow_trigger_starts (workflow_name, workflow_event_id, payload)
    SELECT t.workflow_name, NEW.id, NEW.payload FROM t WHERE t.deferred ORDER BY t.workflow_name
    ON CONFLICT DO NOTHING
  ), ins AS (
    INSERT INTO {{schema}}.durable_flow_workflow_runs
      (run_id, workflow_name, queue_name, priority, input, idempotency_key, concurrency_key, concurrency_limit,
       status, wake_at, version, pinned_version, deadline_at, created_snapshot)
    SELECT gen_random_uuid()::text, t.workflow_name, t.queue_name, t.priority, NEW.payload, 'event:' || NEW.id::text,
           CASE WHEN t.concurrency_limit IS NOT NULL THEN t.workflow_name END, t.concurrency_limit,
           'enqueued', NEW.occurred_at, t.version, CASE WHEN t.pinned THEN t.version END,
           NEW.occurred_at + t.timeout_ms * interval '1 millisecond', v_mark
    FROM t WHERE NOT t.deferred ORDER BY t.workflow_name
    ON CONFLICT DO NOTHING
    RETURNING id, workflow_name
  )
  INSERT INTO {{schema}}.durable_flow_cancel_triggers (workflow_run_id, event_name, match)
  SELECT DISTINCT ins.id, c.event, c.match
  FROM ins JOIN t ON t.workflow_name = ins.workflow_name
  CROSS JOIN jsonb_to_recordset(t.cancel_on) AS c(event text, match jsonb);
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS durable_flow_events_start ON {{schema}}.durable_flow_workflow_events;
CREATE TRIGGER durable_flow_events_start AFTER INSERT ON {{schema}}.durable_flow_workflow_events
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.durable_flow_event_start();
