-- Metrics (migration 016): counts kept by triggers in the transactions that change runs and steps, so a
-- scrape (lib/metrics/) reads a few small tables and never scans runs. Every write adds to rows of the
-- writing connection's own shard (pg_backend_pid()), so no two transactions contend for a row; the
-- bucket bounds are METRIC_BUCKETS of lib/metrics/buckets.ts (seconds).

-- The bucket of a value in µs (see METRIC_BUCKETS).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_bucket(p_us bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT width_bucket(greatest(p_us, 0) / 1e6::float8, ARRAY[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]::float8[])
$$;

-- One sample of a histogram (durable_flow_metric_samples), added to this connection's shard: its minute
-- (flow clock), workflow, kind and value (µs). The statement triggers group theirs instead.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_sample(p_minute timestamptz, p_workflow text, p_kind text, p_us bigint)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO {{schema}}.durable_flow_metric_samples AS m (minute, workflow_name, kind, bucket, shard, samples, sum_us)
  VALUES (date_trunc('minute', p_minute), p_workflow, p_kind, {{schema}}.durable_flow_metrics_bucket(p_us), pg_backend_pid(), 1, greatest(p_us, 0))
  ON CONFLICT (minute, workflow_name, kind, bucket, shard)
  DO UPDATE SET samples = m.samples + 1, sum_us = m.sum_us + excluded.sum_us;
$$;

-- Runs inserted (one statement, any number of rows): counted by status; those inserted already claimed
-- (direct dispatch) began.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs, children)
  SELECT n.workflow_name, n.status, pg_backend_pid(), count(*), count(*) FILTER (WHERE n.parent_run_id IS NOT NULL)
  FROM new_runs n GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs, children = c.children + excluded.children;
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
  INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs, children)
  SELECT o.workflow_name, o.status, pg_backend_pid(), -count(*), -count(*) FILTER (WHERE o.parent_run_id IS NOT NULL)
  FROM old_runs o GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs, children = c.children + excluded.children;
  RETURN NULL;
END
$$;

-- Runs updated (one statement: a claim's batch, a commit batch, a notify's wake): those whose status
-- changed move the status counts; those that began or ended count in the minute of it; a woken run
-- claimed (ready → running) is a sample of the event → resume latency, from when it was made ready
-- (updated_at, which every wake sets) to now, both on the database's clock. Grouped, so a batch of
-- runs is a few upserts, not a few per run. A statement that changes no status (a heartbeat) writes nothing.
-- The old and new transition tables have no statistics (the planner assumes one row each): without
-- nested loops the join of a statement that changed 10,000 runs (a claim parking a throttled backlog, a
-- bulk cancel) is a hash join, not 10,000 x 10,000 comparisons (24 s, measured by bench/throttle.ts).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_updated() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
BEGIN
  WITH changed AS MATERIALIZED (
    SELECT n.workflow_name, o.status AS old_status, n.status, o.updated_at AS old_updated_at,
           (n.parent_run_id IS NOT NULL)::int AS child,
           CASE WHEN o.started_at IS NULL THEN n.started_at END AS began,
           CASE WHEN o.status IS DISTINCT FROM n.status THEN
             CASE n.status WHEN 'completed' THEN coalesce(n.completed_at, statement_timestamp())
                           WHEN 'failed' THEN coalesce(n.failed_at, statement_timestamp())
                           WHEN 'cancelled' THEN coalesce(n.cancelled_at, statement_timestamp()) END END AS ended
    FROM old_runs o JOIN new_runs n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status OR (o.started_at IS NULL AND n.started_at IS NOT NULL)
  ), counts AS (
    INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs, children)
    SELECT workflow_name, status, pg_backend_pid(), sum(delta), sum(delta * child) FROM (
      SELECT workflow_name, old_status AS status, -1 AS delta, child FROM changed WHERE old_status IS DISTINCT FROM status
      UNION ALL SELECT workflow_name, status, 1, child FROM changed WHERE old_status IS DISTINCT FROM status) d
    GROUP BY 1, 2 HAVING sum(delta) <> 0 OR sum(delta * child) <> 0 ORDER BY 1, 2
    ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs, children = c.children + excluded.children
  ), minutes AS (
    INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, started, completed, failed, cancelled)
    SELECT minute, workflow_name, pg_backend_pid(), sum(started), sum(completed), sum(failed), sum(cancelled) FROM (
      SELECT date_trunc('minute', began) AS minute, workflow_name, 1 AS started, 0 AS completed, 0 AS failed, 0 AS cancelled
      FROM changed WHERE began IS NOT NULL
      UNION ALL
      SELECT date_trunc('minute', ended), workflow_name, 0, (status = 'completed')::int, (status = 'failed')::int, (status = 'cancelled')::int
      FROM changed WHERE ended IS NOT NULL) e
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (minute, workflow_name, shard) DO UPDATE
    SET started = m.started + excluded.started, completed = m.completed + excluded.completed,
        failed = m.failed + excluded.failed, cancelled = m.cancelled + excluded.cancelled
  ), resumed AS (
    SELECT workflow_name, (extract(epoch FROM clock_timestamp() - old_updated_at) * 1e6)::bigint AS us
    FROM changed WHERE old_status = 'ready' AND status = 'running'
  )
  INSERT INTO {{schema}}.durable_flow_metric_samples AS s (minute, workflow_name, kind, bucket, shard, samples, sum_us)
  SELECT date_trunc('minute', statement_timestamp()), workflow_name, 'resume', {{schema}}.durable_flow_metrics_bucket(us), pg_backend_pid(), count(*), sum(greatest(us, 0))
  FROM resumed GROUP BY 2, 4 ORDER BY 2, 4
  ON CONFLICT (minute, workflow_name, kind, bucket, shard) DO UPDATE SET samples = s.samples + excluded.samples, sum_us = s.sum_us + excluded.sum_us;
  RETURN NULL;
END
$$;

-- Steps stored as succeeded or failed in the statement that inserts them (the usual case: a step's
-- result is written with the next write): samples of their runs' workflows, grouped by bucket.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_steps_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {{schema}}.durable_flow_metric_samples AS m (minute, workflow_name, kind, bucket, shard, samples, sum_us)
  SELECT minute, workflow_name, 'step', {{schema}}.durable_flow_metrics_bucket(us), pg_backend_pid(), count(*), sum(greatest(us, 0))
  FROM (SELECT date_trunc('minute', s.completed_at) AS minute, r.workflow_name, (extract(epoch FROM s.completed_at - s.started_at) * 1e6)::bigint AS us
        FROM new_steps s JOIN {{schema}}.durable_flow_workflow_runs r ON r.id = s.workflow_run_id
        WHERE s.kind = 'run' AND s.status IN ('succeeded', 'failed') AND s.started_at IS NOT NULL AND s.completed_at IS NOT NULL) x
  GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
  ON CONFLICT (minute, workflow_name, kind, bucket, shard) DO UPDATE SET samples = m.samples + excluded.samples, sum_us = m.sum_us + excluded.sum_us;
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
  -- One fold at a time ('dfmx', second key 0): two would lock shard-0 rows against each other. A fold
  -- already under way makes this one a no-op; nothing else takes this lock.
  IF NOT pg_try_advisory_xact_lock(1684434296, 0) THEN
    RETURN 0;
  END IF;
  WITH moved AS (
    DELETE FROM {{schema}}.durable_flow_run_counts c
    WHERE (c.workflow_name, c.status, c.shard) IN (
      SELECT x.workflow_name, x.status, x.shard FROM {{schema}}.durable_flow_run_counts x WHERE x.shard <> 0 FOR UPDATE SKIP LOCKED)
    RETURNING c.workflow_name, c.status, c.runs, c.children
  ), ins AS (
    INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs, children)
    SELECT workflow_name, status, 0, sum(runs), sum(children) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs, children = c.children + excluded.children
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
  AFTER UPDATE ON {{schema}}.durable_flow_workflow_runs
  REFERENCING OLD TABLE AS old_runs NEW TABLE AS new_runs FOR EACH STATEMENT
  EXECUTE FUNCTION {{schema}}.durable_flow_metrics_runs_updated();

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
