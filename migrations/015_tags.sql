-- durable-flow schema, version 15: run tags (issue 17): `start(input, { tags: { customer: 'c1' } })`,
-- `getRun().tags`, and the viewer's `?tag=customer:c1` filter. Released migrations are never edited; add
-- a new numbered file instead.

-- String keys to string values (checked by start(), lib/tags.ts). A constant default adds the column
-- without rewriting the existing rows (Postgres keeps it in the catalog until a row is next written).
ALTER TABLE {{schema}}.durable_flow_workflow_runs ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';

-- "The runs carrying these tags" (`tags @> '{"customer":"c1"}'`). jsonb_path_ops: one small hash entry
-- per key/value pair, and only containment is asked. Partial: a run without tags (most runs) writes
-- nothing to it, on insert or on any later update; the run list repeats the predicate so that the
-- planner may use it (lib/read/lists.ts).
CREATE INDEX durable_flow_runs_tags ON {{schema}}.durable_flow_workflow_runs USING gin (tags jsonb_path_ops)
  WHERE tags <> '{}';
