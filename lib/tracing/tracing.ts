/**
 * OpenTelemetry spans of runs and steps, when the optional peer dependency `@opentelemetry/api` is
 * installed (imported once per process, at the first start() or execution; absent: nothing is traced and
 * nothing fails). Only the API is used: spans go to whatever tracer provider the application registered
 * (none: the API's no-op tracer).
 *
 * The trace crosses processes on the run's row: start() stores its active context as a propagation
 * carrier (trace_context, migration 017), every lease reads it back, and each execution of the run starts
 * its span as a child of it, in whatever process, after crashes and sleeps. Step attempts are children of
 * their execution's span, and a step body runs inside its attempt's context: the spans the body makes
 * nest under it, and a child run it starts (step.invoke) stores that context as its own start's.
 *
 * The carrier holds the global propagator's fields (baggage, or B3 if so configured) and always a W3C
 * `traceparent`, written here when the propagator wrote none: a provider registered without a
 * propagator (BasicTracerProvider alone) must not lose the trace between processes.
 *
 * No `@opentelemetry/api` type appears in this module's exports: the package's declarations must not
 * need it.
 */
import type * as OtelApi from '@opentelemetry/api';
import type { ClaimedRun } from '../workflow/definition.js';

type Api = typeof OtelApi;

/** A propagation carrier: what trace_context stores. */
export type TraceCarrier = Record<string, string>;

/** How an execution ended (ExecutionOutcome's kind): its span's `durable_flow.outcome`. */
export type ExecutionEnd = { kind: string; error?: unknown };

/**
 * How a step attempt ended: succeeded, retrying (it failed and runs again), failed (for good), lost (the
 * lease went to another worker) or abandoned (the execution ended meanwhile; its outcome is not stored).
 */
export type AttemptEnd = 'succeeded' | 'retrying' | 'failed' | 'lost' | 'abandoned';

/** The span of one execution of a run. */
export interface ExecutionTrace {
  /** Calls `fn` inside the execution's span context (the workflow handler). */
  within<T>(fn: () => T): T;
  /** Starts the span of attempt `attempt` of step `name`, a child of the execution's. */
  attempt(name: string, attempt: number): AttemptTrace;
  end(outcome: ExecutionEnd): void;
}

/** The span of one attempt of a step body. */
export interface AttemptTrace {
  /** Calls `fn` inside the attempt's span context (the step body). */
  within<T>(fn: () => T): T;
  /** Ends the span (at most once): `error` recorded, status ERROR when the attempt failed (retrying or failed). */
  end(outcome: AttemptEnd, error?: unknown): void;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const TRACER_NAME = 'durable-flow';

/** Span attribute names. */
const ATTRIBUTES = {
  runId: 'durable_flow.run_id',
  workflow: 'durable_flow.workflow',
  queue: 'durable_flow.queue',
  execution: 'durable_flow.execution',
  step: 'durable_flow.step',
  attempt: 'durable_flow.attempt',
  outcome: 'durable_flow.outcome',
} as const;

/** The process's tracing once `@opentelemetry/api` was imported. */
export interface Tracing {
  /** The active context as a carrier to store on a new run; null without a valid active span. */
  capture(): TraceCarrier | null;
  /** Starts the span of one execution of `run` (from its claim to its suspension or end). */
  execution(run: ClaimedRun): ExecutionTrace;
}

class OtelTracing implements Tracing {
  readonly #api: Api;
  readonly #tracer: OtelApi.Tracer;

  constructor(api: Api) {
    this.#api = api;
    this.#tracer = api.trace.getTracer(TRACER_NAME);
  }

  capture(): TraceCarrier | null {
    const { context, propagation, trace, isSpanContextValid } = this.#api;
    const active = context.active();
    const span = trace.getSpanContext(active);
    if (!span || !isSpanContextValid(span)) return null;
    const carrier: TraceCarrier = {};
    propagation.inject(active, carrier);
    if (carrier.traceparent === undefined) {
      carrier.traceparent = `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
      const state = span.traceState?.serialize();
      if (state) carrier.tracestate = state;
    }
    return carrier;
  }

  /** The context a stored carrier stands for (the root context without one). */
  #parent(carrier: TraceCarrier | null | undefined): OtelApi.Context {
    const { propagation, trace, ROOT_CONTEXT } = this.#api;
    if (!carrier) return ROOT_CONTEXT;
    const extracted = propagation.extract(ROOT_CONTEXT, carrier);
    if (trace.getSpanContext(extracted)) return extracted;
    const match = typeof carrier.traceparent === 'string' ? TRACEPARENT.exec(carrier.traceparent) : null;
    if (!match) return extracted;
    return trace.setSpanContext(extracted, { traceId: match[1]!, spanId: match[2]!, traceFlags: Number.parseInt(match[3]!, 16) & 1, isRemote: true });
  }

  execution(run: ClaimedRun): ExecutionTrace {
    const { context, trace, SpanStatusCode } = this.#api;
    const base = { [ATTRIBUTES.runId]: run.runId, [ATTRIBUTES.workflow]: run.workflow };
    const parent = this.#parent(run.traceContext);
    const span = this.#tracer.startSpan(
      `durable_flow.run ${run.workflow}`,
      { attributes: { ...base, [ATTRIBUTES.queue]: run.queue, [ATTRIBUTES.execution]: run.attempts } },
      parent,
    );
    const within = context.with.bind(context);
    const runContext = trace.setSpan(parent, span);
    return {
      within: (fn) => within(runContext, fn),
      attempt: (name, attempt) => {
        const step = this.#tracer.startSpan(`durable_flow.step ${name}`, { attributes: { ...base, [ATTRIBUTES.step]: name, [ATTRIBUTES.attempt]: attempt } }, runContext);
        const stepContext = trace.setSpan(runContext, step);
        let ended = false;
        return {
          within: (fn) => within(stepContext, fn),
          end: (outcome, error) => {
            if (ended) return;
            ended = true;
            step.setAttribute(ATTRIBUTES.outcome, outcome);
            if (error !== undefined && outcome !== 'succeeded') step.recordException(exception(error));
            // A lost or abandoned attempt is not the step's failure: its outcome says what happened.
            if (outcome === 'retrying' || outcome === 'failed') step.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error, outcome) });
            step.end();
          },
        };
      },
      end: (outcome) => {
        span.setAttribute(ATTRIBUTES.outcome, outcome.kind);
        if (outcome.kind === 'failed' || outcome.kind === 'error') {
          if (outcome.error !== undefined) span.recordException(exception(outcome.error));
          span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(outcome.error, `run ${outcome.kind}`) });
        }
        span.end();
      },
    };
  }
}

/** A run's failure comes as it is stored ({ class, message, stack }), a step's as thrown. */
function exception(error: unknown): OtelApi.Exception {
  if (error instanceof Error) return error;
  const stored = error as { class?: unknown; message?: unknown; stack?: unknown } | null;
  if (typeof stored?.class === 'string' && typeof stored.message === 'string') {
    return { name: stored.class, message: stored.message, ...(typeof stored.stack === 'string' ? { stack: stored.stack } : {}) };
  }
  return String(error);
}

function messageOf(error: unknown, fallback: string): string {
  if (error === undefined) return fallback;
  const described = exception(error);
  return typeof described === 'string' ? described : `${described.name}: ${described.message}`;
}

let loading: Promise<Tracing | undefined> | undefined;
let loaded: { tracing: Tracing | undefined } | undefined;

/** Imports `@opentelemetry/api` once per process; resolves to undefined when it is not installed. */
export function loadTracing(): Promise<Tracing | undefined> {
  loading ??= import('@opentelemetry/api').then(
    (api): Tracing => new OtelTracing(api),
    () => undefined,
  ).then((tracing) => {
    loaded = { tracing };
    return tracing;
  });
  return loading;
}

/** Set once loadTracing() settled: `{ tracing }`, undefined inside when the package is not installed. */
export function loadedTracing(): { tracing: Tracing | undefined } | undefined {
  return loaded;
}
