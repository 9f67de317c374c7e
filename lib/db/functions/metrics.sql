-- Metrics (migration 016): counts kept by triggers in the transactions that change runs and steps, so a
-- scrape (lib/metrics/) reads a few small tables and never scans runs. Every write adds to rows of the
-- writing connection's own shard (pg_backend_pid()), so no two transactions contend for a row; the
-- bucket bounds are METRIC_BUCKETS of lib/metrics/buckets.ts (seconds).

-- One sample of a histogram (durable_flow_metric_samples): its minute (flow clock), workflow, kind, value (µs).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_sample(p_minute timestamptz, p_workflow text, p_kind text, p_us bigint)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO {{schema}}.durable_flow_metric_samples AS m (minute, workflow_name, kind, bucket, shard, samples, sum_us)
  VALUES (date_trunc('minute', p_minute), p_workflow, p_kind,
          width_bucket(greatest(p_us, 0) / 1e6::float8, ARRAY[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]::float8[]),
          pg_backend_pid(), 1, greatest(p_us, 0))
  ON CONFLICT (minute, workflow_name, kind, bucket, shard)
  DO UPDATE SET samples = m.samples + 1, sum_us = m.sum_us + excluded.sum_us;
$$;

-- Runs inserted (one statement, any number of rows): counted by status; those inserted already claimed
-- (direct dispatch) began.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs)
  SELECT n.workflow_name, n.status, pg_backend_pid(), count(*) FROM new_runs n GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs;
  INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, started)
  SELECT date_trunc('minute', n.started_at), n.workflow_name, pg_backend_pid(), count(*)
  FROM new_runs n WHERE n.started_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (minute, workflow_name, shard) DO UPDATE SET started = m.started + excluded.started;
  RETURN NULL;
END
$$;

-- Runs deleted (a prune, an app's own DELETE): their statuses no longer count.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs)
  SELECT o.workflow_name, o.status, pg_backend_pid(), -count(*) FROM old_runs o GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs;
  RETURN NULL;
END
$$;

-- A run changed status or began: the status counts move, the minute of its start or end counts it, and a
-- woken run claimed (ready → running) is a sample of the event → resume latency, from when it was made
-- ready (updated_at, which every wake sets) to now (the database's clock for both).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_ended timestamptz;
BEGIN
  IF OLD.status IS DISTINCT FROM NEW.status THEN
    INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs)
    VALUES (NEW.workflow_name, OLD.status, pg_backend_pid(), -1), (NEW.workflow_name, NEW.status, pg_backend_pid(), 1)
    ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs;
    v_ended := CASE NEW.status WHEN 'completed' THEN NEW.completed_at WHEN 'failed' THEN NEW.failed_at WHEN 'cancelled' THEN NEW.cancelled_at END;
    IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
      INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, completed, failed, cancelled)
      VALUES (date_trunc('minute', coalesce(v_ended, statement_timestamp())), NEW.workflow_name, pg_backend_pid(),
              (NEW.status = 'completed')::int, (NEW.status = 'failed')::int, (NEW.status = 'cancelled')::int)
      ON CONFLICT (minute, workflow_name, shard) DO UPDATE
      SET completed = m.completed + excluded.completed, failed = m.failed + excluded.failed, cancelled = m.cancelled + excluded.cancelled;
    ELSIF OLD.status = 'ready' AND NEW.status = 'running' THEN
      PERFORM {{schema}}.durable_flow_metrics_sample(statement_timestamp(), NEW.workflow_name, 'resume', (extract(epoch FROM clock_timestamp() - OLD.updated_at) * 1e6)::bigint);
    END IF;
  END IF;
  IF OLD.started_at IS NULL AND NEW.started_at IS NOT NULL THEN
    INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, started)
    VALUES (date_trunc('minute', NEW.started_at), NEW.workflow_name, pg_backend_pid(), 1)
    ON CONFLICT (minute, workflow_name, shard) DO UPDATE SET started = m.started + 1;
  END IF;
  RETURN NULL;
END
$$;

-- Steps stored as succeeded or failed in the statement that inserts them (the usual case: a step's
-- result is written with the next write): one sample each, of its run's workflow.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_steps_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_metrics_sample(s.completed_at, r.workflow_name, 'step', (extract(epoch FROM s.completed_at - s.started_at) * 1e6)::bigint)
  FROM new_steps s JOIN {{schema}}.durable_flow_workflow_runs r ON r.id = s.workflow_run_id
  WHERE s.kind = 'run' AND s.status IN ('succeeded', 'failed') AND s.started_at IS NOT NULL AND s.completed_at IS NOT NULL
  ORDER BY r.workflow_name, s.id;
  RETURN NULL;
END
$$;

-- A step row that existed (running, retrying) ended.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_step_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_metrics_sample(NEW.completed_at, r.workflow_name, 'step', (extract(epoch FROM NEW.completed_at - NEW.started_at) * 1e6)::bigint)
  FROM {{schema}}.durable_flow_workflow_runs r WHERE r.id = NEW.workflow_run_id;
  RETURN NULL;
END
$$;

-- Folds the rows of other shards into shard 0 (SKIP LOCKED: a row a transaction is writing stays for the
-- next pass, and this never waits on a writer), minutes older than p_keep_after into minute '-infinity'
-- (the totals of the pruned past). Called by the metrics reads (at most once a minute a process) and by
-- the prune pass. Returns the rows folded.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_compact(p_now timestamptz, p_keep_after timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_counts integer;
  v_minutes integer;
  v_samples integer;
BEGIN
  WITH moved AS (
    DELETE FROM {{schema}}.durable_flow_run_counts c
    WHERE (c.workflow_name, c.status, c.shard) IN (
      SELECT x.workflow_name, x.status, x.shard FROM {{schema}}.durable_flow_run_counts x WHERE x.shard <> 0 FOR UPDATE SKIP LOCKED)
    RETURNING c.workflow_name, c.status, c.runs
  ), ins AS (
    INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs)
    SELECT workflow_name, status, 0, sum(runs) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs
  )
  SELECT count(*) INTO v_counts FROM moved;

  WITH moved AS (
    DELETE FROM {{schema}}.durable_flow_metric_minutes m
    WHERE (m.minute, m.workflow_name, m.shard) IN (
      SELECT x.minute, x.workflow_name, x.shard FROM {{schema}}.durable_flow_metric_minutes x
      WHERE (x.shard <> 0 AND x.minute < date_trunc('minute', p_now)) OR (x.minute < p_keep_after AND x.minute > '-infinity')
      FOR UPDATE SKIP LOCKED)
    RETURNING CASE WHEN m.minute < p_keep_after THEN '-infinity'::timestamptz ELSE m.minute END AS minute,
              m.workflow_name, m.started, m.completed, m.failed, m.cancelled
  ), ins AS (
    INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, started, completed, failed, cancelled)
    SELECT minute, workflow_name, 0, sum(started), sum(completed), sum(failed), sum(cancelled) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (minute, workflow_name, shard) DO UPDATE
    SET started = m.started + excluded.started, completed = m.completed + excluded.completed,
        failed = m.failed + excluded.failed, cancelled = m.cancelled + excluded.cancelled
  )
  SELECT count(*) INTO v_minutes FROM moved;

  WITH moved AS (
    DELETE FROM {{schema}}.durable_flow_metric_samples m
    WHERE (m.minute, m.workflow_name, m.kind, m.bucket, m.shard) IN (
      SELECT x.minute, x.workflow_name, x.kind, x.bucket, x.shard FROM {{schema}}.durable_flow_metric_samples x
      WHERE (x.shard <> 0 AND x.minute < date_trunc('minute', p_now)) OR (x.minute < p_keep_after AND x.minute > '-infinity')
      FOR UPDATE SKIP LOCKED)
    RETURNING CASE WHEN m.minute < p_keep_after THEN '-infinity'::timestamptz ELSE m.minute END AS minute,
              m.workflow_name, m.kind, m.bucket, m.samples, m.sum_us
  ), ins AS (
    INSERT INTO {{schema}}.durable_flow_metric_samples AS m (minute, workflow_name, kind, bucket, shard, samples, sum_us)
    SELECT minute, workflow_name, kind, bucket, 0, sum(samples), sum(sum_us) FROM moved GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (minute, workflow_name, kind, bucket, shard) DO UPDATE
    SET samples = m.samples + excluded.samples, sum_us = m.sum_us + excluded.sum_us
  )
  SELECT count(*) INTO v_samples FROM moved;
  RETURN v_counts + v_minutes + v_samples;
END
$$;

DROP TRIGGER IF EXISTS durable_flow_runs_metrics_insert ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_metrics_insert
  AFTER INSERT ON {{schema}}.durable_flow_workflow_runs
  REFERENCING NEW TABLE AS new_runs FOR EACH STATEMENT
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_runs_inserted();

DROP TRIGGER IF EXISTS durable_flow_runs_metrics_delete ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_metrics_delete
  AFTER DELETE ON {{schema}}.durable_flow_workflow_runs
  REFERENCING OLD TABLE AS old_runs FOR EACH STATEMENT
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_runs_deleted();

DROP TRIGGER IF EXISTS durable_flow_runs_metrics_update ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_metrics_update
  AFTER UPDATE OF status, started_at ON {{schema}}.durable_flow_workflow_runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR (OLD.started_at IS NULL AND NEW.started_at IS NOT NULL))
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_run_changed();

DROP TRIGGER IF EXISTS durable_flow_steps_metrics_insert ON {{schema}}.durable_flow_workflow_steps;
CREATE TRIGGER durable_flow_steps_metrics_insert
  AFTER INSERT ON {{schema}}.durable_flow_workflow_steps
  REFERENCING NEW TABLE AS new_steps FOR EACH STATEMENT
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_steps_inserted();

DROP TRIGGER IF EXISTS durable_flow_steps_metrics_end ON {{schema}}.durable_flow_workflow_steps;
CREATE TRIGGER durable_flow_steps_metrics_end
  AFTER UPDATE OF status ON {{schema}}.durable_flow_workflow_steps
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('succeeded', 'failed') AND NEW.kind = 'run'
                     AND NEW.started_at IS NOT NULL AND NEW.completed_at IS NOT NULL)
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_step_ended();
