-- durable-flow schema, version 16: metrics (issue 17, point 1). Counts a scrape or the viewer's Metrics
-- page reads without scanning runs: the triggers of lib/db/functions/metrics.sql keep them in the
-- transactions that change runs and steps. Released migrations are never edited; add a new numbered file.

-- Runs by workflow and status. Each connection adds its deltas to rows of its own (`shard` =
-- pg_backend_pid(), unique among live backends), so concurrent transactions never wait on one hot row
-- nor deadlock on two; durable_flow_metrics_compact() folds them into shard 0. A status's count is the
-- sum over shards.
CREATE TABLE {{schema}}.durable_flow_run_counts (
  workflow_name text NOT NULL,
  status        text NOT NULL,
  shard         integer NOT NULL,
  runs          bigint NOT NULL,
  -- Of those, the child runs (a parent_run_id, which never changes): the viewer's top-level counts are
  -- runs - children.
  children      bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (workflow_name, status, shard)
);
-- The runs already there, counted once (the only scan of runs metrics ever make).
INSERT INTO {{schema}}.durable_flow_run_counts (workflow_name, status, shard, runs, children)
SELECT workflow_name, status, 0, count(*), count(*) FILTER (WHERE parent_run_id IS NOT NULL)
FROM {{schema}}.durable_flow_workflow_runs GROUP BY 1, 2;

-- Per minute (the flow's clock: the run's own started_at / completed_at / failed_at / cancelled_at) and
-- workflow: runs that began (their first claim), completed, failed, were cancelled. Sharded as above.
-- minute = '-infinity' holds the totals of the minutes pruned (kept > 1 day), so totals never go down.
CREATE TABLE {{schema}}.durable_flow_metric_minutes (
  minute        timestamptz NOT NULL,
  workflow_name text NOT NULL,
  shard         integer NOT NULL,
  started       bigint NOT NULL DEFAULT 0,
  completed     bigint NOT NULL DEFAULT 0,
  failed        bigint NOT NULL DEFAULT 0,
  cancelled     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, workflow_name, shard)
);

-- Histograms per minute and workflow: `kind` 'step' (a step's duration, started_at → completed_at, when
-- it succeeds or fails), 'resume' (a woken run, from being made ready by an event, a signal or a
-- child's end, to the claim that resumes it) or 'lag' (the age of the oldest due run, sampled when the
-- metrics are read, at most once a minute a process). `bucket` b counts samples with METRIC_BUCKETS[b] <= x <
-- METRIC_BUCKETS[b + 1] (lib/metrics/buckets.ts; 0: below the first bound); `sum_us` their sum.
CREATE TABLE {{schema}}.durable_flow_metric_samples (
  minute        timestamptz NOT NULL,
  workflow_name text NOT NULL,
  kind          text NOT NULL,
  bucket        integer NOT NULL,
  shard         integer NOT NULL,
  samples       bigint NOT NULL DEFAULT 0,
  sum_us        bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, workflow_name, kind, bucket, shard),
  CONSTRAINT durable_flow_metric_samples_kind_check CHECK (kind IN ('step', 'resume', 'lag'))
);
