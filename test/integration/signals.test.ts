import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { DurableFlowError, WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { databasePerFile, eventually } from '../helpers/flow.js';

const files = databasePerFile('signals');
const harnessed = () => files.ctx.harnessed({ backoff: { initial: 10 } });

async function signalRows(flow: DurableFlow, runId: string) {
  const { rows } = await flow.pool.query<{ id: string; name: string; payload: unknown; signal_id: string | null; step: string | null }>(
    `SELECT g.id::text, g.name, g.payload, g.signal_id, s.name AS step
     FROM ${flow.tables.signals} g JOIN ${flow.tables.runs} r ON r.id = g.workflow_run_id
     LEFT JOIN ${flow.tables.steps} s ON s.id = g.consumed_by_step_id
     WHERE r.run_id = $1 ORDER BY g.id`,
    [runId],
  );
  return rows;
}

describe('flow.signal and step.waitForSignal', () => {
  it('takes a signal sent before the wait (buffered) and one sent after it (the run is woken)', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('approve', async ({ step }: WorkflowContext) => {
      const first = await step.waitForSignal('first', { signal: 'go' });
      const second = await step.waitForSignal('second', { signal: 'go' });
      return { first, second };
    });
    const run = await wf.start({});
    // Before the run has even started: buffered.
    expect(await flow.signal(run.runId, 'go', { n: 1 })).toBe(true);
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    expect(await flow.signal(run.runId, 'go', { n: 2 })).toBe(true);
    // flow.signal made the suspended run due at once.
    const woken = (await flow.getRun(run.runId))!;
    expect(woken.status).toBe('ready');
    expect(woken.wakeAt).not.toBeNull();
    await harness.drain();
    await harness.assertCompleted(run, { first: { n: 1 }, second: { n: 2 } });
    expect((await signalRows(flow, run.runId)).map((g) => [g.payload, g.step])).toEqual([
      [{ n: 1 }, 'first'],
      [{ n: 2 }, 'second'],
    ]);
  });

  it('gives two waits for the same signal the first and the second signal, in the order sent, sequential or parallel', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('pairs', async ({ step }: WorkflowContext) => {
      const a = await step.waitForSignal('a', { signal: 'item' });
      const b = await step.waitForSignal('b', { signal: 'item' });
      const [c, d] = await Promise.all([step.waitForSignal('c', { signal: 'item' }), step.waitForSignal('d', { signal: 'item' })]);
      return [a, b, c, d];
    });
    const run = await wf.start({});
    for (const n of [1, 2, 3]) expect(await flow.signal(run.runId, 'item', n)).toBe(true);
    await harness.drain();
    // a and b took 1 and 2; c took 3; d waits.
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    const waiting = await request(express().use('/df', flow.router({ allowUnauthenticated: true }))).get(`/df/runs/${run.runId}`);
    expect(waiting.text).toContain('Waits for signal <strong>item</strong>');
    expect(waiting.text).not.toContain('durable_flow.signal');
    expect(await flow.signal(run.runId, 'item', 4)).toBe(true);
    expect(await flow.signal(run.runId, 'item', 5)).toBe(true);
    await harness.drain();
    await harness.assertCompleted(run, [1, 2, 3, 4]);
    const rows = await signalRows(flow, run.runId);
    expect(rows.map((g) => [g.payload, g.step])).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'c'],
      [4, 'd'],
      [5, null],
    ]);
    // The timeline shows consumed and buffered signals.
    const timeline = (await flow.timeline(run.runId))!;
    expect(timeline.signals.map((g) => [g.payload, g.stepName])).toEqual(rows.map((g) => [g.payload, g.step]));
    expect(timeline.steps.find((s) => s.step.name === 'd')!.signals.map((g) => g.payload)).toEqual([4]);
    expect(timeline.steps.find((s) => s.step.name === 'd')!.waits[0]!.signal).toBe('item');
    expect(timeline.items.filter((i) => i.type === 'signal').map((i) => i.status)).toEqual(['consumed', 'consumed', 'consumed', 'consumed', 'buffered']);
    // The run page: each step's consumed signal, and the run's signals, buffered ones included.
    const app = express().use('/df', flow.router({ allowUnauthenticated: true }));
    const page = await request(app).get(`/df/runs/${run.runId}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Consumed signal item');
    expect(page.text).toMatch(/<h2>Signals <small>1 buffered<\/small><\/h2>/);
    expect(page.text.match(/class="badge succeeded">consumed<\/span>/g)?.length).toBe(4);
    expect(page.text).toContain('class="badge waiting">buffered</span>');
  });

  it('memoizes the signal a wait took: a replay returns it and consumes no other', async () => {
    const { flow, harness } = await harnessed();
    let attempts = 0;
    const wf = flow.workflow('memo', async ({ step }: WorkflowContext) => {
      const got = await step.waitForSignal('got', { signal: 'x' });
      await step.run('flaky', { retries: 1 }, () => {
        if (++attempts === 1) throw new Error('once');
      });
      return got;
    });
    const run = await wf.start({});
    await flow.signal(run.runId, 'x', 'one');
    await flow.signal(run.runId, 'x', 'two');
    await harness.drain();
    await harness.travel('1 second');
    await harness.drain();
    await harness.assertCompleted(run, 'one');
    expect(attempts).toBe(2);
    expect((await signalRows(flow, run.runId)).map((g) => g.step)).toEqual(['got', null]);
  });

  it('with an id, stores a signal once (true again); the same id with another name or payload is SIGNAL_ID_CONFLICT', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('ids', async ({ step }: WorkflowContext) => step.waitForSignal('w', { signal: 's' }));
    const run = await wf.start({});
    expect(await flow.signal(run.runId, 's', { v: 1 }, { id: 'k1' })).toBe(true);
    expect(await flow.signal(run.runId, 's', { v: 1 }, { id: 'k1' })).toBe(true);
    const conflict = (p: Promise<unknown>) =>
      p.then(
        () => expect.unreachable('expected SIGNAL_ID_CONFLICT'),
        (error: unknown) => {
          expect(error).toBeInstanceOf(DurableFlowError);
          expect((error as DurableFlowError).code).toBe('SIGNAL_ID_CONFLICT');
          return (error as Error).message;
        },
      );
    expect(await conflict(flow.signal(run.runId, 's', { v: 2 }, { id: 'k1' }))).toMatch(/another payload/);
    expect(await conflict(flow.signal(run.runId, 'other', { v: 1 }, { id: 'k1' }))).toMatch(/the name "s"/);
    expect((await signalRows(flow, run.runId)).map((g) => [g.signal_id, g.payload])).toEqual([['k1', { v: 1 }]]);
    await harness.drain();
    await harness.assertCompleted(run, { v: 1 });
    // A redelivery after the run finished is still the same signal: true, nothing stored.
    expect(await flow.signal(run.runId, 's', { v: 1 }, { id: 'k1' })).toBe(true);
    // The same id on another run is another signal.
    const other = await wf.start({});
    expect(await flow.signal(other.runId, 's', { v: 9 }, { id: 'k1' })).toBe(true);
    expect((await signalRows(flow, other.runId)).length).toBe(1);
  });

  it('returns false for a finished or unknown run and stores nothing; refuses bad arguments', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('done', async () => 'ok');
    const run = await wf.start({});
    await harness.drain();
    await harness.assertCompleted(run, 'ok');
    expect(await flow.signal(run.runId, 'late', {})).toBe(false);
    expect(await signalRows(flow, run.runId)).toEqual([]);
    expect(await flow.signal('no-such-run', 'x', {})).toBe(false);
    const code = (p: Promise<unknown>) => p.then(() => 'resolved', (error: unknown) => (error as DurableFlowError).code);
    expect(await code(flow.signal(run.runId, '', {}))).toBe('INVALID_ARGUMENT');
    expect(await code(flow.signal('', 'x', {}))).toBe('INVALID_ARGUMENT');
    expect(await code(flow.signal(run.runId, 'x', {}, { id: '' }))).toBe('INVALID_ARGUMENT');
    const bad = flow.workflow('bad_wait', async ({ step }: WorkflowContext) => step.waitForSignal('w', {} as never));
    const badRun = await bad.start({});
    await harness.drain();
    expect((await harness.assertFailed(badRun)).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/`signal` of wait step "w"/) });
    const small = files.ctx.flow({ maxPayloadSize: 1024 });
    expect(await code(small.signal(run.runId, 'x', { big: 'y'.repeat(2000) }))).toBe('NOT_SERIALIZABLE');
  });

  it('times out with WaitTimeoutError (memoized), consuming nothing; a signal stored after the deadline is left for a later wait', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('deadline', async ({ step }: WorkflowContext) => {
      let first: unknown;
      try {
        first = await step.waitForSignal('first', { signal: 'ok', timeout: '1 hour' });
      } catch (error) {
        if (!(error instanceof WaitTimeoutError)) throw error;
        first = error.message;
      }
      const second = await step.waitForSignal('second', { signal: 'ok' });
      return { first, second };
    });
    const run = await wf.start({});
    await harness.drain();
    await harness.travel('2 hours');
    // Sent after the deadline, before any worker settled the wait: too late for `first`.
    expect(await flow.signal(run.runId, 'ok', 'late')).toBe(true);
    await harness.drain();
    await harness.assertCompleted(run, { first: 'Timed out waiting for signal "ok" in step "first"', second: 'late' });
    const timeline = (await flow.timeline(run.runId))!;
    const first = timeline.steps.find((s) => s.step.name === 'first')!;
    expect(first.step.status).toBe('failed');
    expect(first.waits[0]!.status).toBe('timed_out');
    expect(first.signals).toEqual([]);
    expect((await signalRows(flow, run.runId)).map((g) => g.step)).toEqual(['second']);
  });

  it('is not an event: notify of the signal waits\' event name matches none, and a signal wakes no event wait', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('apart', async ({ step }: WorkflowContext) => {
      const [event, signal] = await Promise.all([step.waitForEvent('ev', { event: 'go' }), step.waitForSignal('sig', { signal: 'go' })]);
      return { event, signal };
    });
    const run = await wf.start({});
    await harness.drain();
    expect((await flow.notify('durable_flow.signal', { name: 'go' })).matchedWaits).toBe(0);
    expect(await flow.signal(run.runId, 'go', 'signalled')).toBe(true);
    await harness.drain();
    expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    expect((await flow.notify('go', { v: 'evented' })).matchedWaits).toBe(1);
    await harness.drain();
    await harness.assertCompleted(run, { event: { v: 'evented' }, signal: 'signalled' });
  });

  it('leaves a paused run paused (the signal is buffered until it is resumed)', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('paused', async ({ step }: WorkflowContext) => step.waitForSignal('w', { signal: 'go' }));
    const run = await wf.start({});
    await harness.drain();
    await flow.pause(run.runId);
    expect((await flow.getRun(run.runId))!.status).toBe('paused');
    expect(await flow.signal(run.runId, 'go', 1)).toBe(true);
    expect((await flow.getRun(run.runId))!.status).toBe('paused');
    await flow.resume(run.runId);
    await harness.drain();
    await harness.assertCompleted(run, 1);
  });

  it('goes with its run when retention prunes the run (consumed and buffered signals)', async () => {
    const { flow, harness } = await harnessed();
    const wf = flow.workflow('pruned', async ({ step }: WorkflowContext) => step.waitForSignal('w', { signal: 'go' }));
    const run = await wf.start({});
    await flow.signal(run.runId, 'go', 1);
    await flow.signal(run.runId, 'go', 2);
    await harness.drain();
    await harness.assertCompleted(run, 1);
    expect((await signalRows(flow, run.runId)).length).toBe(2);
    const { rows: ids } = await flow.pool.query<{ id: string }>(`SELECT id::text FROM ${flow.tables.runs} WHERE run_id = $1`, [run.runId]);
    await harness.travel('31 days');
    expect((await flow.prune()).runs).toBeGreaterThanOrEqual(1); // (this file's other finished runs too)
    expect(await flow.getRun(run.runId)).toBeNull();
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM ${flow.tables.signals} WHERE workflow_run_id = $1`, [ids[0]!.id]);
    expect(rows[0].n).toBe(0);
  });

  it('race: many concurrent signals and a wait loop on two workers: each consumed exactly once, in the order stored', async () => {
    const N = 120;
    const flowA = files.ctx.flow();
    const flowB = files.ctx.flow();
    await flowA.migrate();
    const handler = async ({ step, input }: WorkflowContext<{ n: number }>) => {
      const got: unknown[] = [];
      for (let i = 0; i < input.n; i++) {
        got.push(await step.waitForSignal(`take-${i}`, { signal: 'tick' }));
        // Something between the waits, so signals also land while the run is held by a worker.
        if (i % 10 === 0) await step.run(`work-${i}`, () => i);
      }
      return got;
    };
    const wf = flowA.workflow('loop', handler);
    flowB.workflow('loop', handler);
    const workers = [flowA.worker({ concurrency: 4, pollInterval: 20 }), flowB.worker({ concurrency: 4, pollInterval: 20 })];
    await Promise.all(workers.map((w) => w.start()));
    const run = await wf.start({ n: N });
    // Half at once (most of them buffered), half from four senders one after another, so that signals
    // keep landing while the run suspends, is woken and is held by a worker.
    const senders = [flowA, flowB];
    const burst = Promise.all(Array.from({ length: N / 2 }, (_, i) => senders[i % 2]!.signal(run.runId, 'tick', { i })));
    const lanes = Array.from({ length: 4 }, async (_, lane) => {
      const answers: boolean[] = [];
      for (let i = N / 2 + lane; i < N; i += 4) answers.push(await senders[lane % 2]!.signal(run.runId, 'tick', { i }));
      return answers;
    });
    const sent = [...(await burst), ...(await Promise.all(lanes)).flat()];
    expect(sent.length).toBe(N);
    expect(sent.every(Boolean)).toBe(true);
    const result = (await run.result({ timeout: '60 seconds' })) as { i: number }[];
    await Promise.all(workers.map((w) => w.stop()));
    const rows = await signalRows(flowA, run.runId);
    expect(rows.length).toBe(N);
    // Each taken once (N distinct steps), by the waits in loop order, in the order the signals were stored.
    expect(rows.map((g) => g.step)).toEqual(Array.from({ length: N }, (_, i) => `take-${i}`));
    expect(result).toEqual(rows.map((g) => g.payload));
    expect(new Set(result.map((g) => g.i)).size).toBe(N);
  });

  it('race: a signal sent by the step just before the wait, landing while the run suspends, is never lost', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    const wf = flow.workflow('ping', async ({ step, input, runId }: WorkflowContext<{ delayMs: number }>) => {
      await step.run('fire', () => {
        // Like a webhook answering fast: the signal comes while this step's result and the wait are stored.
        setTimeout(() => void flow.signal(runId, 'pong', { from: runId }), input.delayMs);
      });
      return step.waitForSignal('pong', { signal: 'pong' });
    });
    const worker = flow.worker({ concurrency: 20, pollInterval: 1000 });
    await worker.start();
    try {
      const runs = await Promise.all(Array.from({ length: 200 }, (_, i) => wf.start({ delayMs: i % 8 })));
      const results = await Promise.all(runs.map((run) => run.result({ timeout: '30 seconds' })));
      expect(results).toEqual(runs.map((run) => ({ from: run.runId })));
    } finally {
      await worker.stop();
    }
  });

  it('wakes a run held by a worker at its next suspension (a signal sent while a step runs)', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = false;
    const wf = flow.workflow('held', async ({ step }: WorkflowContext) => {
      await step.run('slow', async () => {
        started = true;
        await gate;
      });
      return step.waitForSignal('w', { signal: 'go' });
    });
    const worker = flow.worker({ concurrency: 1, pollInterval: 20 });
    await worker.start();
    try {
      const run = await wf.start({});
      await eventually(() => started);
      expect((await flow.getRun(run.runId))!.lease).not.toBeNull();
      expect(await flow.signal(run.runId, 'go', 'while held')).toBe(true);
      release();
      expect(await run.result({ timeout: '20 seconds' })).toBe('while held');
    } finally {
      release();
      await worker.stop();
    }
  });
});
