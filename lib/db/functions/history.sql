-- The step history of the given runs (with each wait step's wait), as the executor replays it.
-- PL/pgSQL, not SQL: its query is planned once per session, where a SQL function that the planner
-- cannot inline (this one has a FROM) is parsed and planned again at every call. No run, no query.
CREATE OR REPLACE FUNCTION {{schema}}.durable_flow_history(p_run_ids bigint[]) RETURNS json
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF cardinality(p_run_ids) = 0 THEN
    RETURN '[]'::json;
  END IF;
  RETURN (
    SELECT coalesce(json_agg(json_build_object(
        'run', s.workflow_run_id, 'id', s.id, 'name', s.name, 'kind', s.kind, 'status', s.status,
        'attempts', s.attempts, 'position', s.position, 'result', s.result::text, 'error', s.error,
        'cursor', s.cursor, 'metadata', s.metadata, 'snapshot', s.exec_snapshot,
        'waitId', w.id, 'waitStatus', w.status
      ) ORDER BY s.id), '[]')
    FROM {{schema}}.durable_flow_workflow_steps s
    -- One wait per step (a waitAny / waitAll step has one per branch: its first stands for them).
    LEFT JOIN (SELECT DISTINCT ON (w.workflow_step_id) w.workflow_step_id, w.id, w.status
               FROM {{schema}}.durable_flow_workflow_waits w WHERE w.workflow_run_id = ANY(p_run_ids)
               ORDER BY w.workflow_step_id, w.id) w ON w.workflow_step_id = s.id
    WHERE s.workflow_run_id = ANY(p_run_ids));
END
$$;
