/**
 * OpenTelemetry (issue 17 point 2): with a real SDK provider exporting in memory, a span per run
 * execution and per step attempt, in the trace of the span that was active at start(): across
 * executions (retries, sleeps), into child runs, and into a worker in another process.
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NonRetriableError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { spawnFixture, killAllChildren } from '../helpers/child.js';
import { databasePerFile, eventually } from '../helpers/flow.js';
import { registerTracing, spanRecord } from '../helpers/tracing.js';
import type { SpanRecord } from '../helpers/tracing.js';

const exporter = registerTracing();
const tracer = trace.getTracer('tracing.test');
const file = databasePerFile('otel');

beforeEach(() => exporter.reset());
afterEach(() => killAllChildren());

const spans = (): SpanRecord[] => exporter.getFinishedSpans().map(spanRecord);
const named = (list: SpanRecord[], name: string) => list.filter((span) => span.name === name);

/** Calls `fn` inside a span named `request` (what an instrumented Express handler would be); returns its ids. */
async function inRequest<T>(fn: () => Promise<T>): Promise<{ value: T; traceId: string; spanId: string }> {
  return tracer.startActiveSpan('request', async (span) => {
    try {
      const value = await fn();
      return { value, ...span.spanContext() };
    } finally {
      span.end();
    }
  });
}

async function storedContext(flow: DurableFlow, runId: string): Promise<Record<string, string> | null> {
  const { rows } = await flow.pool.query<{ trace_context: Record<string, string> | null }>(
    `SELECT trace_context FROM ${flow.tables.runs} WHERE run_id = $1`,
    [runId],
  );
  return rows[0]!.trace_context;
}

describe('spans of runs and steps', () => {
  it('a run with steps: its execution under the start span, each step under the execution, user spans under the step', async () => {
    const { flow, harness } = await file.ctx.harnessed();
    const wf = flow.workflow('traced-steps', async ({ step }: WorkflowContext) => {
      const a = await step.run('fetch', () => tracer.startActiveSpan('user-work', (span) => (span.end(), 20)));
      return step.run('add', () => a + 1);
    });
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    expect(await storedContext(flow, run.runId)).toEqual({ traceparent: `00-${traceId}-${spanId}-01` });
    await harness.drain();
    await harness.assertCompleted(run, 21);

    const all = spans();
    const [execution] = named(all, 'durable_flow.run traced-steps');
    expect(named(all, 'durable_flow.run traced-steps')).toHaveLength(1);
    expect(execution).toMatchObject({
      traceId,
      parentSpanId: spanId,
      attributes: {
        'durable_flow.run_id': run.runId,
        'durable_flow.workflow': 'traced-steps',
        'durable_flow.queue': 'default',
        'durable_flow.execution': 1,
        'durable_flow.outcome': 'completed',
      },
      status: { code: SpanStatusCode.UNSET },
    });
    const fetch = named(all, 'durable_flow.step fetch');
    const add = named(all, 'durable_flow.step add');
    expect([fetch.length, add.length]).toEqual([1, 1]);
    for (const step of [fetch[0]!, add[0]!]) {
      expect(step).toMatchObject({ traceId, parentSpanId: execution!.spanId, attributes: { 'durable_flow.run_id': run.runId, 'durable_flow.workflow': 'traced-steps', 'durable_flow.attempt': 1, 'durable_flow.outcome': 'succeeded' } });
    }
    expect(fetch[0]!.attributes['durable_flow.step']).toBe('fetch');
    expect(named(all, 'user-work')).toMatchObject([{ traceId, parentSpanId: fetch[0]!.spanId }]);
  });

  it('a retried step: one span per attempt, the failed one with status ERROR and the exception, each under its own execution', async () => {
    const { flow, harness } = await file.ctx.harnessed({ backoff: { initial: '1 minute', jitter: 0 } });
    let calls = 0;
    const wf = flow.workflow('traced-retry', async ({ step }: WorkflowContext) =>
      step.run('flaky', { retries: 2 }, () => {
        if (++calls === 1) throw new Error('card network down');
        return 'charged';
      }),
    );
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    await harness.drain();
    await harness.travel('1 minute');
    await harness.drain();
    await harness.assertCompleted(run, 'charged');

    const all = spans();
    const executions = named(all, 'durable_flow.run traced-retry');
    expect(executions.map((span) => [span.attributes['durable_flow.execution'], span.attributes['durable_flow.outcome']])).toEqual([
      [1, 'suspended'],
      [2, 'completed'],
    ]);
    expect(executions.every((span) => span.traceId === traceId && span.parentSpanId === spanId)).toBe(true);
    const attempts = named(all, 'durable_flow.step flaky');
    expect(attempts.map((span) => [span.attributes['durable_flow.attempt'], span.attributes['durable_flow.outcome'], span.status.code])).toEqual([
      [1, 'retrying', SpanStatusCode.ERROR],
      [2, 'succeeded', SpanStatusCode.UNSET],
    ]);
    expect(attempts[0]!.status.message).toBe('Error: card network down');
    expect(attempts[0]!.events).toEqual(['exception']);
    expect(attempts[1]!.events).toEqual([]);
    expect(attempts.map((span) => span.parentSpanId)).toEqual(executions.map((span) => span.spanId));
  });

  it('a step that fails for good fails its execution span too', async () => {
    const { flow, harness } = await file.ctx.harnessed();
    const wf = flow.workflow('traced-fail', async ({ step }: WorkflowContext) =>
      step.run('declined', () => {
        throw new NonRetriableError('card declined');
      }),
    );
    const { value: run } = await inRequest(() => wf.start({}));
    await harness.drain();
    await harness.assertFailed(run, NonRetriableError);
    const all = spans();
    expect(named(all, 'durable_flow.step declined')).toMatchObject([{ status: { code: SpanStatusCode.ERROR }, attributes: { 'durable_flow.outcome': 'failed' }, events: ['exception'] }]);
    expect(named(all, 'durable_flow.run traced-fail')).toMatchObject([
      { status: { code: SpanStatusCode.ERROR, message: 'NonRetriableError: card declined' }, attributes: { 'durable_flow.outcome': 'failed' }, events: ['exception'] },
    ]);
  });

  it('a sleep: two executions, both children of the start span', async () => {
    const { flow, harness } = await file.ctx.harnessed();
    const wf = flow.workflow('traced-sleep', async ({ step }: WorkflowContext) => {
      await step.run('before', () => 1);
      await step.sleep('nap', '1 hour');
      return step.run('after', () => 2);
    });
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    await harness.drain();
    await harness.assertSleeping(run);
    await harness.travel('1 hour');
    await harness.drain();
    await harness.assertCompleted(run, 2);

    const all = spans();
    const executions = named(all, 'durable_flow.run traced-sleep');
    expect(executions.map((span) => span.attributes['durable_flow.outcome'])).toEqual(['suspended', 'completed']);
    expect(executions.every((span) => span.traceId === traceId && span.parentSpanId === spanId)).toBe(true);
    expect(named(all, 'durable_flow.step before').map((span) => span.parentSpanId)).toEqual([executions[0]!.spanId]);
    expect(named(all, 'durable_flow.step after').map((span) => span.parentSpanId)).toEqual([executions[1]!.spanId]);
    // The first step is replayed from its stored result in the second execution: no second span.
    expect(named(all, 'durable_flow.step before')).toHaveLength(1);
  });

  it('an event wait woken by notify() on a running worker: the resumed execution is in the start trace too', async () => {
    const flow = file.ctx.flow();
    await flow.migrate();
    const wf = flow.workflow('traced-wait', async ({ step }: WorkflowContext) => {
      await step.run('ask', () => 'asked');
      const answer = await step.waitForEvent<{ ok: boolean }>('answer', { event: 'traced_answer' });
      return step.run('use', () => answer.ok);
    });
    await flow.worker({ pollInterval: '1 minute' }).start();
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    await eventually(async () => (await flow.getRun(run.runId))?.status === 'waiting');
    await flow.notify('traced_answer', { ok: true }); // outside any span
    await expect(run.result()).resolves.toBe(true);
    const executions = await eventually(() => {
      const found = named(spans(), 'durable_flow.run traced-wait');
      return found.length === 2 ? found : undefined;
    });
    expect(executions.map((span) => [span.traceId, span.parentSpanId, span.attributes['durable_flow.outcome']])).toEqual([
      [traceId, spanId, 'suspended'],
      [traceId, spanId, 'completed'],
    ]);
    expect(named(spans(), 'durable_flow.step use').map((span) => span.parentSpanId)).toEqual([executions[1]!.spanId]);
  });

  it('a child run (step.invoke) runs in the trace of the step that started it', async () => {
    const { flow, harness } = await file.ctx.harnessed();
    const child = flow.workflow('traced-child', async ({ step, input }: WorkflowContext<number>) => step.run('double', () => input * 2));
    const parent = flow.workflow('traced-parent', async ({ step }: WorkflowContext) => (await step.invoke<number>('charge', child, 21)).result);
    const { value: run, traceId } = await inRequest(() => parent.start({}));
    await harness.drain();
    await harness.assertCompleted(run, 42);

    const all = spans();
    const [starter] = named(all, 'durable_flow.step charge_start');
    expect(starter).toMatchObject({ traceId });
    const childExecutions = named(all, 'durable_flow.run traced-child');
    expect(childExecutions).toHaveLength(1);
    expect(childExecutions[0]).toMatchObject({ traceId, parentSpanId: starter!.spanId, attributes: { 'durable_flow.outcome': 'completed' } });
    expect(named(all, 'durable_flow.step double')).toMatchObject([{ traceId, parentSpanId: childExecutions[0]!.spanId }]);
  });

  it('a start without an active span stores no context, and its execution is a root span', async () => {
    const { flow, harness } = await file.ctx.harnessed();
    const wf = flow.workflow('traced-root', async ({ step }: WorkflowContext) => step.run('only', () => 'ok'));
    const run = await wf.start({});
    expect(await storedContext(flow, run.runId)).toBeNull();
    await harness.drain();
    const [execution] = named(spans(), 'durable_flow.run traced-root');
    expect(execution).toMatchObject({ parentSpanId: undefined, attributes: { 'durable_flow.outcome': 'completed' } });
    expect(named(spans(), 'durable_flow.step only')).toMatchObject([{ traceId: execution!.traceId, parentSpanId: execution!.spanId }]);
  });

  it('with `tracing: false` no span is made and no context is stored', async () => {
    const { flow, harness } = await file.ctx.harnessed({ tracing: false });
    const wf = flow.workflow('untraced', async ({ step }: WorkflowContext) => step.run('quiet', () => 'ok'));
    const { value: run } = await inRequest(() => wf.start({}));
    await harness.drain();
    await harness.assertCompleted(run, 'ok');
    expect(await storedContext(flow, run.runId)).toBeNull();
    expect(spans().map((span) => span.name)).toEqual(['request']);
  });

  it('refuses a `tracing` option that is not a boolean, naming it', () => {
    expect(() => file.ctx.flow({ tracing: 'yes' as unknown as boolean })).toThrow(/Expected `tracing` to be true .* or false .*, got `"yes"` \(string\)/);
  });
});

describe('across processes', () => {
  const spanLines = (output: string[]): SpanRecord[] =>
    output.filter((line) => line.startsWith('SPAN ')).map((line) => JSON.parse(line.slice('SPAN '.length)) as SpanRecord);

  it('a run claimed by a worker in another process is traced there, in the trace of the start here', async () => {
    const flow = file.ctx.flow();
    await flow.migrate();
    const wf = flow.workflow('traced-remote', async () => 'not run here');
    const worker = spawnFixture('tracing-worker.ts', { DATABASE_URL: file.ctx.db.url });
    await worker.waitFor(/^READY$/);
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    await expect(run.result()).resolves.toBe(2);
    await worker.waitFor(/^SPAN .*"durable_flow\.run traced-remote"/);

    const remote = spanLines(worker.output);
    const executions = named(remote, 'durable_flow.run traced-remote');
    expect(executions).toMatchObject([{ traceId, parentSpanId: spanId, attributes: { 'durable_flow.run_id': run.runId, 'durable_flow.outcome': 'completed' } }]);
    for (const step of ['remote-a', 'remote-b']) {
      expect(named(remote, `durable_flow.step ${step}`)).toMatchObject([{ traceId, parentSpanId: executions[0]!.spanId }]);
    }
    // Nothing of the run was traced in this process, which has no worker.
    expect(spans().filter((span) => span.name.startsWith('durable_flow.'))).toEqual([]);
    worker.child.kill('SIGTERM');
    await worker.waitFor(/^STOPPED$/);
  });

  it('after a worker process dies inside a step, the process that takes the run over traces it in the same trace', async () => {
    const flow = file.ctx.flow();
    await flow.migrate();
    const wf = flow.workflow('traced-remote', async () => 'not run here');
    const doomed = spawnFixture('tracing-worker.ts', { DATABASE_URL: file.ctx.db.url, KILL_IN_STEP: '1' });
    await doomed.waitFor(/^READY$/);
    const { value: run, traceId, spanId } = await inRequest(() => wf.start({}));
    expect((await doomed.exited).signal).toBe('SIGKILL');
    // The dead process exported nothing: its spans never ended.
    expect(spanLines(doomed.output)).toEqual([]);

    const heir = spawnFixture('tracing-worker.ts', { DATABASE_URL: file.ctx.db.url });
    await expect(run.result()).resolves.toBe(2);
    await heir.waitFor(/^SPAN .*"durable_flow\.run traced-remote"/);
    const remote = spanLines(heir.output);
    expect(named(remote, 'durable_flow.run traced-remote')).toMatchObject([
      { traceId, parentSpanId: spanId, attributes: { 'durable_flow.execution': 2, 'durable_flow.outcome': 'completed' } },
    ]);
    expect(named(remote, 'durable_flow.step remote-a')).toMatchObject([{ traceId, attributes: { 'durable_flow.outcome': 'succeeded' } }]);
    heir.child.kill('SIGTERM');
    await heir.waitFor(/^STOPPED$/);
  });
});

describe('without @opentelemetry/api', () => {
  it('runs workflows as usual when the package cannot be imported (nothing traced, nothing fails)', async () => {
    const child = spawnFixture('untraced-process.ts', { DATABASE_URL: file.ctx.db.url });
    await child.waitFor(/^RESULT /);
    expect(child.output).toEqual(expect.arrayContaining(['HIDDEN true', 'RESULT 42']));
    expect((await child.exited).code).toBe(0);
  });
});
