import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/** A finished span, as the tests compare them (and as a child process prints them, one JSON line each). */
export interface SpanRecord {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  attributes: Record<string, unknown>;
  /** 0 unset, 1 ok, 2 error. */
  status: { code: number; message?: string | undefined };
  /** The names of its events ('exception' for a recorded error). */
  events: string[];
}

export function spanRecord(span: ReadableSpan): SpanRecord {
  const { traceId, spanId } = span.spanContext();
  return {
    name: span.name,
    traceId,
    spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    attributes: { ...span.attributes },
    status: { code: span.status.code, message: span.status.message },
    events: span.events.map((event) => event.name),
  };
}

/**
 * Registers, for this process, what an application using OpenTelemetry registers: a tracer provider
 * exporting to `exporter` (in memory unless given) and the AsyncLocalStorage context manager. No global
 * propagator: durable-flow must carry the trace context without one.
 */
export function registerTracing<E extends SpanExporter = InMemorySpanExporter>(exporter: E = new InMemorySpanExporter() as unknown as E): E {
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  return exporter;
}
