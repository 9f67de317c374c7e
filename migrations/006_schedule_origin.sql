-- durable-flow schema, version 6: where a schedule comes from (issue 13).
-- Released migrations are never edited; add a new numbered file instead.

-- 'workflow': made from a workflow's `schedule` option, so a process that registers the workflow
-- without the option deletes it (the option was removed from the code); 'api': made with
-- flow.schedules.create, and only ever deleted by flow.schedules.delete. Rows of version 5 start as
-- 'api'; the first sync of a process whose workflow has the option marks its schedule 'workflow'.
ALTER TABLE {{schema}}.durable_flow_schedules
  ADD COLUMN origin text NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'workflow'));
