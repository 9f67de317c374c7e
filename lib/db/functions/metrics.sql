-- Metrics (migration 016): counts kept by triggers in the transactions that change runs and steps, so a
-- scrape (lib/metrics/) reads a few small tables and never scans runs. Every write adds to rows of the
-- writing connection's own shard (pg_backend_pid()), so no two transactions contend for a row; the
-- bucket bounds are METRIC_BUCKETS of lib/metrics/buckets.ts (seconds).

-- The bucket of a value in µs (see METRIC_BUCKETS).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_bucket(p_us bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT width_bucket(greatest(p_us, 0) / 1e6::float8, ARRAY[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]::float8[])
$$;

-- The three adds below write every rollup row of the triggers: an UPDATE of this shard's row when it
-- exists, which is one WAL record (a HOT update: the tables' only index is the primary key, never
-- changed), where INSERT ... ON CONFLICT DO UPDATE of an existing row is two (a row lock, then the
-- update). The insert runs only when no row was updated: the row's first write of the minute (or
-- bucket, status), or its row was folded away by durable_flow_metrics_compact. No other connection
-- writes this shard's rows (compact only deletes them, under a row lock this UPDATE waits for and then
-- finds the row gone), so the insert meets no conflict; ON CONFLICT stays as the guard of that
-- argument, on the rare path only. In REPEATABLE READ or SERIALIZABLE (a caller's own transaction,
-- start({ transaction })), an UPDATE of a row compact deleted since the snapshot is a serialisation
-- failure where the insert is not: those keep the single upsert of before.
-- PL/pgSQL, not SQL: the statements are planned once per session.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_add_count(p_workflow text, p_status text, p_runs bigint, p_children bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') = 'read committed' THEN
    UPDATE {{schema}}.durable_flow_run_counts c SET runs = c.runs + p_runs, children = c.children + p_children
    WHERE c.workflow_name = p_workflow AND c.status = p_status AND c.shard = pg_backend_pid();
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  INSERT INTO {{schema}}.durable_flow_run_counts AS c (workflow_name, status, shard, runs, children)
  VALUES (p_workflow, p_status, pg_backend_pid(), p_runs, p_children)
  ON CONFLICT (workflow_name, status, shard) DO UPDATE SET runs = c.runs + excluded.runs, children = c.children + excluded.children;
END
$$;

CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_add_minute(
  p_minute timestamptz, p_workflow text, p_started bigint, p_completed bigint, p_failed bigint, p_cancelled bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') = 'read committed' THEN
    UPDATE {{schema}}.durable_flow_metric_minutes m
    SET started = m.started + p_started, completed = m.completed + p_completed, failed = m.failed + p_failed,
        cancelled = m.cancelled + p_cancelled
    WHERE m.minute = p_minute AND m.workflow_name = p_workflow AND m.shard = pg_backend_pid();
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  INSERT INTO {{schema}}.durable_flow_metric_minutes AS m (minute, workflow_name, shard, started, completed, failed, cancelled)
  VALUES (p_minute, p_workflow, pg_backend_pid(), p_started, p_completed, p_failed, p_cancelled)
  ON CONFLICT (minute, workflow_name, shard) DO UPDATE
  SET started = m.started + excluded.started, completed = m.completed + excluded.completed,
      failed = m.failed + excluded.failed, cancelled = m.cancelled + excluded.cancelled;
END
$$;

CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_add_samples(
  p_minute timestamptz, p_workflow text, p_kind text, p_bucket integer, p_samples bigint, p_sum_us bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') = 'read committed' THEN
    UPDATE {{schema}}.durable_flow_metric_samples m SET samples = m.samples + p_samples, sum_us = m.sum_us + p_sum_us
    WHERE m.minute = p_minute AND m.workflow_name = p_workflow AND m.kind = p_kind AND m.bucket = p_bucket
      AND m.shard = pg_backend_pid();
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  INSERT INTO {{schema}}.durable_flow_metric_samples AS m (minute, workflow_name, kind, bucket, shard, samples, sum_us)
  VALUES (p_minute, p_workflow, p_kind, p_bucket, pg_backend_pid(), p_samples, p_sum_us)
  ON CONFLICT (minute, workflow_name, kind, bucket, shard)
  DO UPDATE SET samples = m.samples + excluded.samples, sum_us = m.sum_us + excluded.sum_us;
END
$$;

-- One sample of a histogram (durable_flow_metric_samples), added to this connection's shard: its minute
-- (flow clock), workflow, kind and value (µs). The statement triggers group theirs instead.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_sample(p_minute timestamptz, p_workflow text, p_kind text, p_us bigint)
RETURNS void LANGUAGE sql AS $$
  SELECT {{schema}}.durable_flow_metrics_add_samples(date_trunc('minute', p_minute), p_workflow, p_kind,
    {{schema}}.durable_flow_metrics_bucket(p_us), 1, greatest(p_us, 0));
$$;

-- Runs inserted (one statement, any number of rows): counted by status; those inserted already claimed
-- (direct dispatch) began. Each trigger below groups its rows first and adds each group once, in
-- sorted key order (the subquery's ORDER BY: the add runs as its rows come out).
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_metrics_add_count(g.workflow_name, g.status, g.runs, g.children)
  FROM (SELECT n.workflow_name, n.status, count(*) AS runs, count(*) FILTER (WHERE n.parent_run_id IS NOT NULL) AS children
        FROM new_runs n GROUP BY 1, 2 ORDER BY 1, 2) g;
  PERFORM {{schema}}.durable_flow_metrics_add_minute(g.minute, g.workflow_name, g.started, 0, 0, 0)
  FROM (SELECT date_trunc('minute', n.started_at) AS minute, n.workflow_name, count(*) AS started
        FROM new_runs n WHERE n.started_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2) g;
  RETURN NULL;
END
$$;

-- Runs truncated (TRUNCATE ... CASCADE, a test's or an operator's reset): no run is left to count. The
-- minutes and samples stay: they are the history of what ran. TRUNCATE holds the runs table's ACCESS
-- EXCLUSIVE lock, so no run changes meanwhile.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM {{schema}}.durable_flow_run_counts;
  RETURN NULL;
END
$$;

-- Runs deleted (a prune, an app's own DELETE): their statuses no longer count.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_metrics_add_count(g.workflow_name, g.status, -g.runs, -g.children)
  FROM (SELECT o.workflow_name, o.status, count(*) AS runs, count(*) FILTER (WHERE o.parent_run_id IS NOT NULL) AS children
        FROM old_runs o GROUP BY 1, 2 ORDER BY 1, 2) g;
  RETURN NULL;
END
$$;

-- Runs updated (one statement: a claim's batch, a commit batch, a notify's wake): those whose status
-- changed move the status counts; those that began or ended count in the minute of it; a woken run
-- claimed (ready → running) is a sample of the event → resume latency, from when it was made ready
-- (updated_at, which every wake sets) to now, both on the database's clock (a run notify claims for a
-- local worker goes waiting → running: notify.sql takes its sample). Grouped, so a batch of runs is a
-- few adds, not a few per run. A statement that changes no status (a heartbeat) writes nothing.
-- The old and new transition tables have no statistics (the planner assumes one row each): without
-- nested loops the join of a statement that changed 10,000 runs (a claim parking a throttled backlog, a
-- bulk cancel) is a hash join, not 10,000 x 10,000 comparisons (24 s, measured by bench/throttle.ts).
-- The adds are primary-key lookups, which need no nested loop.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_runs_updated() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
  v_adds bigint;
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
  ), counts AS MATERIALIZED (
    SELECT {{schema}}.durable_flow_metrics_add_count(g.workflow_name, g.status, g.runs, g.children)
    FROM (SELECT workflow_name, status, sum(delta)::bigint AS runs, sum(delta * child)::bigint AS children FROM (
            SELECT workflow_name, old_status AS status, -1 AS delta, child FROM changed WHERE old_status IS DISTINCT FROM status
            UNION ALL SELECT workflow_name, status, 1, child FROM changed WHERE old_status IS DISTINCT FROM status) d
          GROUP BY 1, 2 HAVING sum(delta) <> 0 OR sum(delta * child) <> 0 ORDER BY 1, 2) g
  ), minutes AS MATERIALIZED (
    SELECT {{schema}}.durable_flow_metrics_add_minute(g.minute, g.workflow_name, g.started, g.completed, g.failed, g.cancelled)
    FROM (SELECT minute, workflow_name, sum(started)::bigint AS started, sum(completed)::bigint AS completed,
                 sum(failed)::bigint AS failed, sum(cancelled)::bigint AS cancelled FROM (
            SELECT date_trunc('minute', began) AS minute, workflow_name, 1 AS started, 0 AS completed, 0 AS failed, 0 AS cancelled
            FROM changed WHERE began IS NOT NULL
            UNION ALL
            SELECT date_trunc('minute', ended), workflow_name, 0, (status = 'completed')::int, (status = 'failed')::int, (status = 'cancelled')::int
            FROM changed WHERE ended IS NOT NULL) e
          GROUP BY 1, 2 ORDER BY 1, 2) g
  ), resumed AS MATERIALIZED (
    SELECT {{schema}}.durable_flow_metrics_add_samples(date_trunc('minute', statement_timestamp()), g.workflow_name, 'resume', g.bucket, g.samples, g.sum_us)
    FROM (SELECT workflow_name, {{schema}}.durable_flow_metrics_bucket(us) AS bucket, count(*) AS samples, sum(greatest(us, 0))::bigint AS sum_us
          FROM (SELECT workflow_name, (extract(epoch FROM clock_timestamp() - old_updated_at) * 1e6)::bigint AS us
                FROM changed WHERE old_status = 'ready' AND status = 'running') r
          GROUP BY 1, 2 ORDER BY 1, 2) g
  )
  -- Each CTE runs its adds once, when counted here (in this order).
  SELECT (SELECT count(*) FROM counts) + (SELECT count(*) FROM minutes) + (SELECT count(*) FROM resumed) INTO v_adds;
  RETURN NULL;
END
$$;

-- Steps stored as succeeded or failed in the statement that inserts them (the usual case: a step's
-- result is written with the next write): samples of their runs' workflows, grouped by bucket.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_metrics_steps_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.durable_flow_metrics_add_samples(g.minute, g.workflow_name, 'step', g.bucket, g.samples, g.sum_us)
  FROM (SELECT minute, workflow_name, {{schema}}.durable_flow_metrics_bucket(us) AS bucket, count(*) AS samples, sum(greatest(us, 0))::bigint AS sum_us
        FROM (SELECT date_trunc('minute', s.completed_at) AS minute, r.workflow_name, (extract(epoch FROM s.completed_at - s.started_at) * 1e6)::bigint AS us
              FROM new_steps s JOIN {{schema}}.durable_flow_workflow_runs r ON r.id = s.workflow_run_id
              WHERE s.kind = 'run' AND s.status IN ('succeeded', 'failed') AND s.started_at IS NOT NULL AND s.completed_at IS NOT NULL) x
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3) g;
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

DROP TRIGGER IF EXISTS durable_flow_runs_metrics_truncate ON {{schema}}.durable_flow_workflow_runs;
CREATE TRIGGER durable_flow_runs_metrics_truncate
  AFTER TRUNCATE ON {{schema}}.durable_flow_workflow_runs
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.durable_flow_metrics_runs_truncated();
