// The README's "Tracing with OpenTelemetry", run by test/docs/readme.test.ts.
// #region readme
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { DurableFlow } from 'durable-flow';

// Once per process (web and worker processes alike), before the first start(). In production
// NodeSDK from @opentelemetry/sdk-node with an OTLP exporter does this; any provider works.
const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL }); // tracing: true is the default
await flow.migrate();
const checkout = flow.workflow('checkout', async ({ step }) => {
  const charge = await step.run('charge', () => ({ id: 'ch_42' })); // span "durable_flow.step charge"
  return step.run('receipt', () => `receipt for ${charge.id}`);
});
await flow.worker().start();

// The run's spans join the trace of the span active at start(), whichever process executes it.
const tracer = trace.getTracer('shop');
const run = await tracer.startActiveSpan('POST /checkout', async (span) => {
  try {
    return await checkout.start({ cart: 42 });
  } finally {
    span.end();
  }
});
await run.result();
// POST /checkout
// └─ durable_flow.run checkout
//    ├─ durable_flow.step charge
//    └─ durable_flow.step receipt
// #endregion readme

await flow.close(); // its worker stops: the execution's span has ended
/** Each finished span as `name <- parent name`. */
const spans = exporter.getFinishedSpans();
const nameOf = new Map(spans.map((span) => [span.spanContext().spanId, span.name]));
export const tree = spans.map((span) => `${span.name} <- ${nameOf.get(span.parentSpanContext?.spanId ?? '') ?? 'none'}`).sort();
export const traces = new Set(spans.map((span) => span.spanContext().traceId)).size;
