-- The claim's first path (durable_flow_claim, claim.sql): the due runs without a concurrency key (and
-- throttled runs that began) of these queues and workflows, not pinned or pinned to p_version (read
-- only when p_pinned: some of those are due), locked FOR UPDATE SKIP LOCKED, up to p_limit, in
-- (priority, wake_at, id) order, read one priority level at a time from the due indexes led by
-- priority (018). Only runs before (p_before_priority, p_before_wake, p_before_id) when it is given:
-- the first due candidate of the keyed path, so a claim never takes a run of a worse priority than a
-- due keyed or throttled run it leaves (those used to wait behind the whole unkeyed backlog).
--
-- The next level is one probe of the index for the lowest priority with a wake time; a level with
-- none of these queues' and workflows' due runs costs that probe and an empty range. After a few such
-- levels in a row (runs sleeping at many distinct better priorities: a claim walked every one of
-- them, 3,000 levels 3,000 probes), the probe asks for a due run instead: one scan of the index
-- that passes over the entries not due without a probe per level.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_claim_unkeyed(
  p_queues text[], p_workflows text[], p_limit integer, p_version text, p_pinned boolean, p_now timestamptz,
  p_before_priority integer, p_before_wake timestamptz, p_before_id bigint
) RETURNS bigint[]
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
  v_due bigint[] := '{}';
  v_count integer := 0;
  v_level integer;
  v_level_due bigint[];
  v_level_pinned bigint[];
  v_empty integer := 0;
  -- Below every priority a run can have (-(2^31) + 1 .. 2^31 - 1).
  v_floor integer := -2147483648;
BEGIN
  LOOP
    EXIT WHEN v_count >= p_limit;
    IF v_empty < 4 THEN
      SELECT min(r.priority) INTO v_level FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at IS NOT NULL AND r.pinned_version IS NULL
        AND r.concurrency_key IS NULL AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL) AND r.priority > v_floor;
      IF p_pinned THEN
        v_level := least(v_level, (SELECT min(r.priority) FROM {{schema}}.durable_flow_workflow_runs r
                                   WHERE r.wake_at IS NOT NULL AND r.pinned_version = p_version
                                     AND r.concurrency_key IS NULL AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL)
                                     AND r.priority > v_floor));
      END IF;
    ELSE
      SELECT min(r.priority) INTO v_level FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.wake_at IS NOT NULL AND r.wake_at <= p_now AND r.pinned_version IS NULL
        AND r.concurrency_key IS NULL AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL) AND r.priority > v_floor;
      IF p_pinned THEN
        v_level := least(v_level, (SELECT min(r.priority) FROM {{schema}}.durable_flow_workflow_runs r
                                   WHERE r.wake_at IS NOT NULL AND r.wake_at <= p_now AND r.pinned_version = p_version
                                     AND r.concurrency_key IS NULL AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL)
                                     AND r.priority > v_floor));
      END IF;
    END IF;
    EXIT WHEN v_level IS NULL OR v_level > p_before_priority;
    v_floor := v_level;
    SELECT coalesce(array_agg(d.id), '{}') INTO v_level_due
    FROM (
      SELECT r.id FROM {{schema}}.durable_flow_workflow_runs r
      WHERE r.priority = v_level AND r.wake_at <= p_now AND r.pinned_version IS NULL
        AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
        AND r.concurrency_key IS NULL
        AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL)
        AND (r.deadline_at IS NULL OR r.deadline_at > p_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > p_now)
        AND (p_before_priority IS NULL OR v_level < p_before_priority OR (r.wake_at, r.id) < (p_before_wake, p_before_id))
      ORDER BY r.wake_at, r.id
      LIMIT p_limit - v_count
      FOR UPDATE OF r SKIP LOCKED
    ) d;
    IF p_pinned THEN
      SELECT coalesce(array_agg(d.id), '{}') INTO v_level_pinned
      FROM (
        SELECT r.id FROM {{schema}}.durable_flow_workflow_runs r
        WHERE r.priority = v_level AND r.wake_at <= p_now AND r.pinned_version = p_version
          AND r.queue_name = ANY(p_queues) AND (r.workflow_name || '') = ANY(p_workflows)
          AND r.concurrency_key IS NULL
          AND (r.throttle_key IS NULL OR r.started_at IS NOT NULL)
          AND (r.deadline_at IS NULL OR r.deadline_at > p_now) AND (r.start_by IS NULL OR r.started_at IS NOT NULL OR r.start_by > p_now)
          AND (p_before_priority IS NULL OR v_level < p_before_priority OR (r.wake_at, r.id) < (p_before_wake, p_before_id))
        ORDER BY r.wake_at, r.id
        LIMIT p_limit - v_count
        FOR UPDATE OF r SKIP LOCKED
      ) d;
      IF cardinality(v_level_pinned) > 0 THEN
        SELECT array_agg(r.id ORDER BY r.wake_at, r.id) INTO v_level_due
        FROM {{schema}}.durable_flow_workflow_runs r WHERE r.id = ANY(v_level_due || v_level_pinned);
      END IF;
    END IF;
    v_level_due := v_level_due[1:p_limit - v_count];
    v_empty := CASE WHEN cardinality(v_level_due) = 0 THEN v_empty + 1 ELSE 0 END;
    v_due := v_due || v_level_due;
    v_count := v_count + cardinality(v_level_due);
  END LOOP;
  RETURN v_due;
END
$$;
