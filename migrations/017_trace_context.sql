-- durable-flow schema, version 17: OpenTelemetry (issue 17): the trace context of the start() that
-- created a run, so that every execution of it, in whatever process, after crashes and sleeps, starts
-- its spans in the start's trace (lib/tracing/). Released migrations are never edited; add a new
-- numbered file instead.

ALTER TABLE {{schema}}.durable_flow_workflow_runs
  -- The propagation carrier of start()'s active context: { traceparent, tracestate?, … } (W3C Trace
  -- Context, plus whatever the process's global propagator injects, such as baggage). NULL when the
  -- start had no active span, tracing was off, or @opentelemetry/api is not installed. Read by every
  -- lease (durable_flow_lease, insertRuns): no extra round trip per execution or step.
  ADD COLUMN trace_context jsonb;
