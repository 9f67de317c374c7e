-- A worker's claim, in one round trip: up to p_limit due runs of its queues and workflows, leased to
-- p_owner, with their step history, the time the next not-yet-due run wakes, the database clock and a
-- snapshot (the low-water mark of waits created in these executions).
--
-- Lock: FOR UPDATE SKIP LOCKED on the due rows, so claimers never wait for each other and never claim
-- the same run. A run that is executing is due again only when its lease expired (its wake_at is the
-- lease expiry); the claim bumps lease_epoch, which fences every later write of the worker that lost
-- it. claim_count counts claims since the run last stopped cleanly (the executor fails a run that
-- keeps killing its worker).
--
-- Runs with a concurrency key take a second path: under the key's advisory lock (also taken when a
-- slot frees, durable_flow_wake_next), count the runs of that key executing now, lease those that fit
-- and park the others (concurrency_waiting, no wake_at) until a slot frees.
--
-- The planner must drive this from the wake_at index whatever its statistics say (a table that just
-- grew from empty looks tiny to it): sequential scans are off inside the function, and the workflow
-- filter is an expression so the (workflow_name, status) index is never chosen instead.
-- JIT is off too: its statements are small, and a cost estimate that JIT would compile (a throttled
-- backlog the statistics have not seen yet) cost tens of milliseconds of compilation per claim.
--
-- Since 002_trust.sql, with the claim's snapshot handed to durable_flow_lease as the executions' mark.
--
-- Since 007_operator.sql, paused workflows (flow.pauseWorkflow, the small table
-- durable_flow_workflow_pauses): their runs are not claimed, and their due runs are set aside
-- (held_wake_at keeps the wake_at, wake_at NULL), a batch per claim, so no claim scans them again;
-- once the workflow is resumed, claims put set-aside runs back. Both checks are an EXISTS on a table
-- or a partial index that is empty unless an operator paused something.
--
-- Since 008_versions.sql, p_version: the claiming worker's flow version. A run pinned to a version
-- (a workflow with `versioning: 'pinned'`) is claimed only by a worker of that version; due runs are
-- read through two partial indexes (durable_flow_runs_due_unpinned, and durable_flow_runs_due_pinned
-- by version), so due runs pinned to a version no worker has are never read by the others' claims.
-- Runs with a concurrency key keep their own index (durable_flow_runs_due_keyed) with the version as a
-- filter: a backlog of keyed runs pinned to another version is still read by those claims.
--
-- Since 011_deadlines.sql, run deadlines (lib/db/functions/deadlines.sql): a claim first ends the due
-- runs whose deadline (timeout) or start-by passed, of every queue and workflow (no code of theirs
-- runs: any worker may), up to 1000, SKIP LOCKED, through durable_flow_expire; it never leases such a
-- run. Keyed ones are ended in the keyed path, after the key locks are taken in its one sorted pass
-- (their keys with the candidates'): ending one wakes the next run of its key, under that key's lock.
-- Both checks are an EXISTS on a partial index holding only runs with a deadline.
--
-- Since 013_throttle.sql, `throttle`: a run with a throttle_key that has not begun (started_at NULL) is
-- never claimed by the first path; it goes through the keyed path, which also takes the advisory lock of
-- each throttle key among its candidates ({{throttle_lock_namespace}}, after the concurrency-key locks in
-- the same sorted pass), counts the runs of the key that began in the last period (room = limit minus
-- that), and admits at most `room` of the key's runs in (priority, id) order: the due candidates and the
-- runs already waiting for the key (throttle_waiting, taken whatever their wake_at, so the turn order
-- holds). The ones left over wait (throttle_waiting, wake_at the time the window should have room for
-- them: the matching start in the window plus the period, one period later per `limit` runs ahead), as
-- does the rest of the key's due backlog (up to 10000 a claim), so no claim reads them again before
-- their turn and they never hide the due runs of other keys. A claim that parked runs answers
-- next_wake_ms 0 (claim again now). A run that began is never throttled again (a resume is not a begin).
--
-- Since 018_claim_by_priority.sql, both paths read due runs one priority level at a time in wake order,
-- from due indexes led by priority (the first path's hold only its own candidates): the lowest priority
-- present is one probe, a level's due runs one range scan that stops at the first run not due. A claim
-- reads what it takes (and the due runs of other queues and workflows at the same level, which its
-- filters pass over), never the whole due backlog to sort it: 100,000 due runs cost a claim what 10 do.
--
-- The keyed path's candidates are read first, and the first path (durable_flow_claim_unkeyed,
-- claim_unkeyed.sql) takes only the runs before the first of them in (priority, wake_at, id), the keyed
-- path the slots left, then the first path the slots still left: a due keyed or throttled run no longer
-- waits behind the whole unkeyed backlog. Levels without a due run cost a probe each only four in a
-- row; then the probe asks for a due run (runs sleeping at many distinct priorities: one scan).
DROP FUNCTION IF EXISTS {{schema}}.durable_flow_claim(text[], text[], integer, text, float8, float8);
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_claim(
  p_queues text[], p_workflows text[], p_limit integer, p_owner text, p_lease_ms float8, p_offset_ms float8,
  p_version text
) RETURNS TABLE (runs json, steps json, next_wake_ms float8, db_now_ms float8, snapshot text)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
  v_now timestamptz := statement_timestamp() + p_offset_ms * interval '1 millisecond';
  v_lease timestamptz := v_now + p_lease_ms * interval '1 millisecond';
  v_mark text := pg_current_snapshot()::text;
  v_runs jsonb := '[]';
  v_more jsonb;
  v_replay bigint[] := '{}';
  v_more_replay bigint[];
  v_count integer := 0;
  v_due bigint[];
  v_candidates bigint[];
  v_keys text[];
  v_admit bigint[];
  v_block bigint[];
  v_paused text[];
  v_expired bigint[] := '{}';
  v_expired_keyed bigint[] := '{}';
  v_expired_keys text[] := '{}';
  v_tkeys text[];
  v_tspec jsonb;
  v_tblock bigint[] := '{}';
  v_ready bigint[];
  v_parked integer := 0;
  v_pinned boolean;
  v_level integer;
  v_cand bigint[];
  v_more_cand bigint[];
  v_empty integer := 0;
  v_first_level integer;
  v_first_wake timestamptz;
  v_first_id bigint;
  -- Below every priority a run can have (-(2^31) + 1 .. 2^31 - 1).
  v_floor integer := -2147483648;
BEGIN
  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r WHERE r.wake_at IS NOT NULL AND r.deadline_at <= v_now)
     OR EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r
                WHERE r.wake_at IS NOT NULL AND r.start_by <= v_now AND r.started_at IS NULL) THEN
    SELECT coalesce(array_agg(e.id) FILTER (WHERE e.concurrency_key IS NULL), '{}'),
           coalesce(array_agg(e.id) FILTER (WHERE e.concurrency_key IS NOT NULL), '{}'),
           coalesce(array_agg(DISTINCT e.concurrency_key) FILTER (WHERE e.concurrency_key IS NOT NULL), '{}')
      INTO v_expired, v_expired_keyed, v_expired_keys
    FROM (
      SELECT r.id, r.concurrency_key FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at IS NOT NULL AND (r.deadline_at <= v_now OR (r.start_by <= v_now AND r.started_at IS NULL))
      ORDER BY r.id DESC LIMIT 1000
      FOR UPDATE SKIP LOCKED
    ) e;
    PERFORM {{schema}}.durable_flow_expire(v_expired, v_now);
  END IF;

  IF EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_pauses) THEN
    SELECT coalesce(array_agg(p.workflow_name), '{}') INTO v_paused
    FROM {{schema}}.durable_flow_workflow_pauses p WHERE p.workflow_name = ANY(p_workflows);
    IF cardinality(v_paused) > 0 THEN
      UPDATE {{schema}}.durable_flow_workflow_runs r SET held_wake_at = r.wake_at, wake_at = NULL, updated_at = clock_timestamp()
      WHERE r.id IN (
        SELECT h.id FROM {{schema}}.durable_flow_workflow_runs h
        WHERE h.wake_at <= v_now AND (h.workflow_name || '') = ANY(v_paused) AND h.queue_name = ANY(p_queues)
        ORDER BY h.wake_at LIMIT 1000
        FOR UPDATE SKIP LOCKED
      );
      p_workflows := ARRAY(SELECT unnest(p_workflows) EXCEPT SELECT unnest(v_paused));
    END IF;
  END IF;
  IF EXISTS (
    SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r WHERE r.held_wake_at IS NOT NULL AND r.workflow_name = ANY(p_workflows)
  ) THEN
    UPDATE {{schema}}.durable_flow_workflow_runs r SET wake_at = r.held_wake_at, held_wake_at = NULL, updated_at = clock_timestamp()
    WHERE r.id IN (
      SELECT h.id FROM {{schema}}.durable_flow_workflow_runs h
      WHERE h.held_wake_at IS NOT NULL AND h.workflow_name = ANY(p_workflows)
      LIMIT 1000
      FOR UPDATE SKIP LOCKED
    );
  END IF;

  -- The keyed path's candidates first (runs with a concurrency limit, throttled runs that have not
  -- begun; read, not locked): in (priority, wake_at, id) order one level at a time from the two indexes
  -- led by priority (018), never the whole due backlog sorted; a level without due runs costs a probe
  -- and an empty range, and after a few such levels in a row the probe asks for a due run instead
  -- (claim_unkeyed.sql says why). Read before the first path so that it stops at the first of them.
  v_cand := '{}';
  v_floor := -2147483648;
  LOOP
    EXIT WHEN cardinality(v_cand) >= p_limit * 4;
    v_level := least(
      (SELECT min(r.priority) FROM {{schema}}.durable_flow_workflow_runs r
       WHERE r.concurrency_key IS NOT NULL AND r.wake_at IS NOT NULL AND r.priority > v_floor
         AND (v_empty < 4 OR r.wake_at <= v_now)),
      (SELECT min(r.priority) FROM {{schema}}.durable_flow_workflow_runs r
       WHERE r.throttle_key IS NOT NULL AND r.started_at IS NULL AND r.wake_at IS NOT NULL AND r.priority > v_floor
         AND (v_empty < 4 OR r.wake_at <= v_now)));
    EXIT WHEN v_level IS NULL;
    v_floor := v_level;
    v_more_cand := ARRAY(
      SELECT u.id FROM (
        (SELECT r.id, r.wake_at FROM {{schema}}.durable_flow_workflow_runs r
         WHERE r.priority = v_level AND r.wake_at <= v_now AND r.concurrency_key IS NOT NULL
           AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
           AND (r.pinned_version IS NULL OR r.pinned_version = p_version)
           AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
         ORDER BY r.wake_at, r.id
         LIMIT p_limit * 4 - cardinality(v_cand))
        UNION
        (SELECT r.id, r.wake_at FROM {{schema}}.durable_flow_workflow_runs r
         WHERE r.priority = v_level AND r.wake_at <= v_now AND r.throttle_key IS NOT NULL AND r.started_at IS NULL
           AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
           AND (r.pinned_version IS NULL OR r.pinned_version = p_version)
           AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.start_by > v_now)
         ORDER BY r.wake_at, r.id
         LIMIT p_limit * 4 - cardinality(v_cand))
      ) u
      ORDER BY u.wake_at, u.id
      LIMIT p_limit * 4 - cardinality(v_cand));
    v_empty := CASE WHEN cardinality(v_more_cand) = 0 THEN v_empty + 1 ELSE 0 END;
    IF v_first_level IS NULL AND cardinality(v_more_cand) > 0 THEN
      v_first_level := v_level;
      SELECT r.wake_at, r.id INTO v_first_wake, v_first_id FROM {{schema}}.durable_flow_workflow_runs r WHERE r.id = v_more_cand[1];
    END IF;
    v_cand := v_cand || v_more_cand;
  END LOOP;

  -- Runs without a concurrency limit: lock the due ones, lease them (claim_unkeyed.sql), in (priority,
  -- wake_at, id) order, those before the keyed path's first candidate; the keyed path's runs next,
  -- in the slots left; then, in the slots still left (its candidates were fewer, parked, or locked by
  -- another claim), the first path's runs after that candidate. So a due keyed or throttled run never
  -- waits behind unkeyed runs of a worse priority (it waited behind the whole unkeyed backlog).
  v_pinned := EXISTS (SELECT 1 FROM {{schema}}.durable_flow_workflow_runs r
                      WHERE r.pinned_version = p_version AND r.wake_at <= v_now
                        AND r.concurrency_key IS NULL AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL));
  v_due := {{schema}}.durable_flow_claim_unkeyed(p_queues, p_workflows, p_limit, p_version, v_pinned, v_now,
                                                 v_first_level, v_first_wake, v_first_id);
  v_count := cardinality(v_due);
  IF v_count > 0 THEN
    SELECT l.runs, l.replay INTO v_runs, v_replay FROM {{schema}}.durable_flow_lease(v_due, p_owner, v_now, v_lease, v_mark) l;
  END IF;
  IF v_count >= p_limit THEN
    v_cand := '{}';
  END IF;

  IF cardinality(v_expired_keyed) > 0 OR cardinality(v_cand) > 0 THEN
    SELECT array_agg(c.id), array_agg(DISTINCT c.concurrency_key) FILTER (WHERE c.concurrency_key IS NOT NULL),
           array_agg(DISTINCT c.throttle_key) FILTER (WHERE c.throttle_key IS NOT NULL AND c.started_at IS NULL),
           jsonb_agg(jsonb_build_object('key', c.throttle_key, 'lim', c.throttle_limit, 'period_ms', c.throttle_period_ms))
             FILTER (WHERE c.throttle_key IS NOT NULL AND c.started_at IS NULL)
      INTO v_candidates, v_keys, v_tkeys, v_tspec
    FROM {{schema}}.durable_flow_workflow_runs c WHERE c.id = ANY(v_cand);
    v_keys := coalesce(v_keys, '{}');
    v_tkeys := coalesce(v_tkeys, '{}');
    -- One sorted pass: the concurrency keys' locks, then the throttle keys' (a greater namespace).
    PERFORM pg_advisory_xact_lock(k.ns, k.h)
    FROM (
      SELECT DISTINCT {{concurrency_lock_namespace}} AS ns, hashtext(key) AS h FROM unnest(v_keys || v_expired_keys) AS key
      UNION
      SELECT {{throttle_lock_namespace}}, hashtext(key) FROM unnest(v_tkeys) AS key
      ORDER BY 1, 2
    ) AS k;
    PERFORM {{schema}}.durable_flow_expire(v_expired_keyed, v_now);
    WITH win AS (
      -- Each throttle key: its limit and period as the candidates carry them (a deploy may have changed
      -- them: the strictest), and the room left in the window (runs of the key that began in the last
      -- period, counted after the lock).
      SELECT t.key, t.lim, t.period_ms, greatest(t.lim - (
               SELECT count(*) FROM {{schema}}.durable_flow_workflow_runs s
               WHERE s.throttle_key = t.key AND s.started_at IS NOT NULL
                 AND s.started_at > v_now - t.period_ms * interval '1 millisecond'), 0) AS room
      FROM (
        SELECT x.key, min(x.lim) AS lim, max(x.period_ms) AS period_ms
        FROM jsonb_to_recordset(v_tspec) AS x(key text, lim integer, period_ms bigint) GROUP BY 1
      ) t
    ), pulled AS (
      -- The runs already waiting for the key, first in turn: as many as there is room for.
      SELECT p.id FROM win CROSS JOIN LATERAL (
        SELECT w.id FROM {{schema}}.durable_flow_workflow_runs w
        WHERE w.throttle_key = win.key AND w.started_at IS NULL AND w.throttle_waiting AND w.status = 'enqueued'
          AND w.queue_name = ANY(p_queues) AND (w.workflow_name || '') = ANY(p_workflows)
          AND (w.pinned_version IS NULL OR w.pinned_version = p_version)
          -- Not one a paused workflow's claim set aside and no claim has put back yet (more than a batch
          -- of them): putting it back later would make it due while it runs.
          AND w.held_wake_at IS NULL
        ORDER BY w.priority, w.id LIMIT win.room
      ) p
    ), locked AS (
      SELECT r.id, r.concurrency_key, r.concurrency_limit, r.priority, r.wake_at, r.throttle_waiting,
             CASE WHEN r.started_at IS NULL THEN r.throttle_key END AS throttle_key
      FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.id = ANY(v_candidates || ARRAY(SELECT id FROM pulled))
      AND ((r.id = ANY(v_candidates) AND r.wake_at <= v_now)
           OR (r.throttle_waiting AND r.started_at IS NULL AND r.status = 'enqueued' AND r.held_wake_at IS NULL))
      AND (r.deadline_at IS NULL OR r.deadline_at > v_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > v_now)
      FOR UPDATE SKIP LOCKED
    ), throttled AS (
      -- Within a throttle key, turn order is (priority, id): a waiting run's wake_at is only a hint.
      SELECT l.*, l.throttle_key IS NULL
               OR row_number() OVER (PARTITION BY l.throttle_key ORDER BY l.priority, l.id) <= coalesce(w.room, 0) AS t_fits
      FROM locked l LEFT JOIN win w ON w.key = l.throttle_key
    ), busy AS (
      SELECT r.concurrency_key, count(*) AS n FROM {{schema}}.durable_flow_workflow_runs r
      -- Every run of the key holding a live lease, candidates included: one may have been claimed by
      -- another worker between choosing the candidates and taking the key lock.
      WHERE r.concurrency_key = ANY(v_keys) AND r.status = 'running' AND r.lease_expires_at > v_now
      GROUP BY r.concurrency_key
    ), ranked AS (
      -- Only the runs the throttle lets begin take concurrency slots. A run waiting for its throttle key
      -- that was pulled in (not a candidate) may have a concurrency key whose lock this claim does not
      -- hold and whose busy slots it did not count (unlocked): it is not leased here, but made due now
      -- (v_ready), so the next claim takes it as a candidate, under its key's lock.
      SELECT l.id, l.priority, l.wake_at, l.t_fits, l.throttle_waiting,
             l.concurrency_key IS NOT NULL AND l.concurrency_key <> ALL(v_keys) AS unlocked,
             l.t_fits AND (l.concurrency_key IS NULL OR l.concurrency_key = ANY(v_keys)) AND (l.concurrency_key IS NULL OR
               row_number() OVER (PARTITION BY l.concurrency_key, l.t_fits
                                  ORDER BY l.priority, CASE WHEN l.throttle_key IS NULL THEN l.wake_at END, l.id)
                 <= greatest(coalesce(l.concurrency_limit, 1) - coalesce(b.n, 0), 0)) AS fits
      FROM throttled l LEFT JOIN busy b ON b.concurrency_key = l.concurrency_key
    ), numbered AS (
      SELECT id, t_fits, fits, unlocked, throttle_waiting, row_number() OVER (PARTITION BY fits ORDER BY priority, wake_at, id) AS n FROM ranked
    )
    SELECT coalesce(array_agg(id) FILTER (WHERE fits AND n <= p_limit - v_count), '{}'),
           coalesce(array_agg(id) FILTER (WHERE t_fits AND NOT fits AND NOT unlocked), '{}'),
           coalesce(array_agg(id) FILTER (WHERE NOT t_fits), '{}'),
           coalesce(array_agg(id) FILTER (WHERE throttle_waiting AND (fits OR (t_fits AND unlocked))), '{}')
      INTO v_admit, v_block, v_tblock, v_ready
    FROM numbered;

    -- No free slot: park them until a run of their key leaves 'running' (durable_flow_wake_next).
    UPDATE {{schema}}.durable_flow_workflow_runs SET wake_at = NULL, concurrency_waiting = true,
           throttle_waiting = false, updated_at = clock_timestamp()
    WHERE id = ANY(v_block);
    -- Waiting runs whose turn came: admitted now, or (beyond this claim's slots) due now.
    UPDATE {{schema}}.durable_flow_workflow_runs SET throttle_waiting = false,
           wake_at = CASE WHEN id = ANY(v_admit) THEN wake_at ELSE v_now END, updated_at = clock_timestamp()
    WHERE id = ANY(v_ready);

    -- Made due now without a lease (beyond this claim's slots, or their concurrency key unlocked): claim again now.
    v_parked := (SELECT count(*) FROM unnest(v_ready) AS x WHERE x <> ALL(v_admit));

    SELECT l.runs, l.replay INTO v_more, v_more_replay
    FROM {{schema}}.durable_flow_lease(v_admit, p_owner, v_now, v_lease, v_mark) l;
    v_runs := v_runs || v_more;
    v_replay := v_replay || v_more_replay;

    IF cardinality(v_tkeys) > 0 THEN
      -- Wake-up times. Each run waiting for a key has as wake_at the time the window should have room
      -- for it: the run at position J of the key's queue ((priority, id) order, 0 first) follows the
      -- (J mod limit)-th of the key's last `limit` starts (these admitted included: they began at
      -- v_now), one period later per `limit` runs ahead of it; equally, `period` after the run `limit`
      -- places ahead of it. A wake_at earlier than needed costs a claim one more look at the run; a
      -- later one would waste the window. So:
      -- * the runs just held back (fresh: the blocked ones, with the rest of their keys' due backlog, up
      --   to 10000) get theirs: exact within the head of the queue (its first `limit` waiting runs);
      --   behind the head, as the last in the queue (a new start): `period` after the run `limit` places
      --   ahead of it (among the queue's last `limit` or the fresh ones);
      -- * the head of each key's queue moves earlier when its turn moved earlier (a run ahead of it
      --   ended: cancelled, expired, paused), at every visit of the key.
      -- Reads O(limit) rows of the queue per key, plus the fresh ones.
      WITH fresh AS (
        SELECT b.id, b.throttle_key AS key, b.priority FROM {{schema}}.durable_flow_workflow_runs b WHERE b.id = ANY(v_tblock)
        UNION ALL
        SELECT x.id, x.throttle_key, x.priority FROM (
          SELECT d.id, d.throttle_key, d.priority FROM {{schema}}.durable_flow_workflow_runs d
          WHERE d.throttle_key IN (SELECT DISTINCT throttle_key FROM {{schema}}.durable_flow_workflow_runs WHERE id = ANY(v_tblock))
            AND d.started_at IS NULL AND d.wake_at <= v_now
            AND NOT d.throttle_waiting AND d.status = 'enqueued' AND d.id <> ALL(v_tblock)
          ORDER BY d.throttle_key, d.priority, d.id LIMIT 10000
          FOR UPDATE SKIP LOCKED
        ) x
      ), keys AS MATERIALIZED (
        SELECT k.key, k.lim, k.period_ms,
               ARRAY(SELECT s.started_at FROM {{schema}}.durable_flow_workflow_runs s
                     WHERE s.throttle_key = k.key AND s.started_at IS NOT NULL
                       AND s.started_at > v_now - k.period_ms * interval '1 millisecond'
                     ORDER BY s.started_at DESC LIMIT k.lim) AS recent,
               ARRAY(SELECT coalesce(w.wake_at, v_now) FROM {{schema}}.durable_flow_workflow_runs w
                     WHERE w.throttle_key = k.key AND w.started_at IS NULL AND w.throttle_waiting AND w.status = 'enqueued'
                       AND w.id NOT IN (SELECT id FROM fresh)
                     ORDER BY w.priority DESC, w.id DESC LIMIT k.lim) AS last
        FROM (SELECT x.key, min(x.lim) AS lim, max(x.period_ms) AS period_ms
              FROM jsonb_to_recordset(v_tspec) AS x(key text, lim integer, period_ms bigint) GROUP BY 1) k
      ), head AS MATERIALIZED (
        SELECT h.id, k.key, h.priority, h.wake_at FROM keys k CROSS JOIN LATERAL (
          SELECT w.id, w.priority, w.wake_at FROM {{schema}}.durable_flow_workflow_runs w
          WHERE w.throttle_key = k.key AND w.started_at IS NULL AND w.throttle_waiting AND w.status = 'enqueued'
            AND w.id NOT IN (SELECT id FROM fresh)
          ORDER BY w.priority, w.id LIMIT k.lim
        ) h
      ), placed AS MATERIALIZED (
        -- pos: the place in the queue, exact unless the run is behind a full head (tail).
        SELECT u.*, NOT u.fresh OR u.head_n < k.lim OR u.heads_ahead < u.head_n AS exact
        FROM (
          SELECT v.id, v.key, v.priority, v.fresh, v.wake_at,
                 row_number() OVER (PARTITION BY v.key ORDER BY v.priority, v.id) - 1 AS pos,
                 count(*) FILTER (WHERE NOT v.fresh) OVER (PARTITION BY v.key ORDER BY v.priority, v.id) AS heads_ahead,
                 count(*) FILTER (WHERE NOT v.fresh) OVER (PARTITION BY v.key) AS head_n
          FROM (SELECT id, key, priority, wake_at, false AS fresh FROM head
                UNION ALL SELECT id, key, priority, NULL, true FROM fresh) v
        ) u JOIN keys k ON k.key = u.key
      ), timed AS (
        -- recent and last are newest (last) first: position i of the last `lim` (1 = oldest) is
        -- recent[lim - i + 1]; a missing one (fewer than lim starts in the window) stands for room now.
        SELECT t.id, t.fresh, t.wake_at,
               CASE WHEN t.exact THEN
                 coalesce(k.recent[k.lim - (t.pos % k.lim)::int], v_now - k.period_ms * interval '1 millisecond')
                   + k.period_ms * (1 + t.pos / k.lim) * interval '1 millisecond'
               ELSE k.last[k.lim - (t.r % k.lim)::int] + k.period_ms * (1 + t.r / k.lim) * interval '1 millisecond'
               END AS slot
        FROM (SELECT p.*, row_number() OVER (PARTITION BY p.key, p.exact ORDER BY p.priority, p.id) - 1 AS r FROM placed p) t
        JOIN keys k ON k.key = t.key
      ), moved AS (
        SELECT t.id, t.slot FROM timed t WHERE t.fresh
        UNION ALL
        SELECT t.id, t.slot FROM timed t
        WHERE NOT t.fresh AND (t.wake_at IS NULL OR t.wake_at <= v_now OR t.slot < t.wake_at)
          AND t.id IN (SELECT m.id FROM {{schema}}.durable_flow_workflow_runs m WHERE m.id = t.id FOR UPDATE SKIP LOCKED)
      )
      UPDATE {{schema}}.durable_flow_workflow_runs r SET throttle_waiting = true, wake_at = m.slot, updated_at = clock_timestamp()
      FROM moved m WHERE r.id = m.id;
      v_parked := v_parked + cardinality(v_tblock);
    END IF;
  END IF;

  -- The slots still left: the first path's runs after the keyed path's first candidate.
  IF v_first_level IS NOT NULL AND v_count + cardinality(coalesce(v_admit, '{}')) < p_limit THEN
    v_due := {{schema}}.durable_flow_claim_unkeyed(p_queues, p_workflows, p_limit - v_count - cardinality(coalesce(v_admit, '{}')),
                                                   p_version, v_pinned, v_now, NULL, NULL, NULL);
    IF cardinality(v_due) > 0 THEN
      SELECT l.runs, l.replay INTO v_more, v_more_replay FROM {{schema}}.durable_flow_lease(v_due, p_owner, v_now, v_lease, v_mark) l;
      v_runs := v_runs || v_more;
      v_replay := v_replay || v_more_replay;
      v_count := v_count + cardinality(v_due);
    END IF;
  END IF;

  RETURN QUERY SELECT
    v_runs::json,
    {{schema}}.durable_flow_history(v_replay),
    -- Runs just parked for their throttle key may have hidden due runs of other keys: claim again now.
    CASE WHEN v_parked > 0 AND v_count + cardinality(coalesce(v_admit, '{}')) < p_limit THEN 0::float8 ELSE
    (SELECT extract(epoch FROM n.wake_at - v_now)::float8 * 1000
       FROM (SELECT r.wake_at FROM {{schema}}.durable_flow_workflow_runs r
             WHERE r.wake_at > v_now AND r.queue_name = ANY(p_queues)
               AND (r.workflow_name || '') = ANY(p_workflows)
             ORDER BY r.wake_at LIMIT 1) n) END,
    extract(epoch FROM v_now)::float8 * 1000,
    v_mark;
END
$$;
