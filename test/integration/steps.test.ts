import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError, NonRetriableError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
const fast = { initial: 10, factor: 2, jitter: 0 };

beforeAll(async () => {
  ctx = await setupDatabase('steps');
  flow = ctx.flow({ backoff: fast });
});
afterAll(async () => {
  await ctx.cleanup();
});

async function withWorker<T>(fn: () => Promise<T>): Promise<T> {
  const worker = flow.worker({ concurrency: 4, pollInterval: 50 });
  await worker.start();
  try {
    return await fn();
  } finally {
    await worker.stop();
  }
}

async function steps(runId: string) {
  const timeline = await flow.timeline(runId);
  return Object.fromEntries(timeline!.steps.map(({ step }) => [step.name, step]));
}

describe('step.run', () => {
  it('never runs a completed step again when the run replays after a retry', async () => {
    const calls = { a: 0, b: 0, c: 0 };
    const wf = flow.workflow('memo', async ({ step }: WorkflowContext) => {
      const a = await step.run('a', () => ++calls.a);
      const b = await step.run('b', () => {
        calls.b++;
        if (calls.b < 3) throw new Error(`flaky ${calls.b}`);
        return a + 10;
      });
      const c = await step.run('c', () => ++calls.c);
      return { a, b, c };
    });
    await withWorker(async () => {
      const run = await wf.start({});
      expect(await run.result()).toEqual({ a: 1, b: 11, c: 1 });
      expect(calls).toEqual({ a: 1, b: 3, c: 1 });
      const byName = await steps(run.runId);
      expect(byName.b!.attempts).toBe(3);
      expect(byName.a!.attempts).toBe(1);
      expect((await flow.getRun(run.runId))!.attempts).toBe(3);
    });
  });

  it('accepts dynamic step names and returns stored JSON values (Dates become ISO strings)', async () => {
    const when = new Date('2026-01-02T03:04:05.000Z');
    const wf = flow.workflow('dynamic', async ({ step }: WorkflowContext<{ ids: number[] }>) => {
      const out: unknown[] = [];
      for (const id of [1, 2, 3]) out.push(await step.run(`notify-${id}`, () => ({ id, when })));
      const nothing = await step.run('nothing', () => undefined);
      const nul = await step.run('null', () => null);
      return { out, nothing: nothing === undefined, nul };
    });
    await withWorker(async () => {
      const run = await wf.start({ ids: [1, 2, 3] });
      const result = await run.result();
      expect(result).toEqual({
        out: [1, 2, 3].map((id) => ({ id, when: '2026-01-02T03:04:05.000Z' })),
        nothing: true,
        nul: null,
      });
      const byName = await steps(run.runId);
      expect(Object.keys(byName)).toEqual(['notify-1', 'notify-2', 'notify-3', 'nothing', 'null']);
      expect(byName.nothing!.result).toBeUndefined();
      expect(byName.null!.result).toBeNull();
    });
  });

  it('runs steps in parallel with Promise.all', async () => {
    const order: string[] = [];
    const wf = flow.workflow('parallel', async ({ step }: WorkflowContext) => {
      const [x, y] = await Promise.all([
        step.run('x', async () => {
          order.push('x-start');
          await new Promise((r) => setTimeout(r, 50));
          order.push('x-end');
          return 'x';
        }),
        step.run('y', async () => {
          order.push('y-start');
          await new Promise((r) => setTimeout(r, 10));
          order.push('y-end');
          return 'y';
        }),
      ]);
      return x + y;
    });
    await withWorker(async () => {
      expect(await (await wf.start(null)).result()).toBe('xy');
      expect(order.slice(0, 2).sort()).toEqual(['x-start', 'y-start']);
    });
  });

  it('fails the run with a clear error when a step name is used twice', async () => {
    const wf = flow.workflow('dupe', async ({ step }: WorkflowContext) => {
      await step.run('same', () => 1);
      await step.run('same', () => 2);
    });
    await withWorker(async () => {
      const run = await wf.start({});
      await expect(run.result()).rejects.toThrow(/failed: DurableFlowError: Step name "same" was used twice/);
      const info = await flow.getRun(run.runId);
      expect(info!.status).toBe('failed');
      expect(info!.error!.code).toBe('DUPLICATE_STEP_NAME');
      expect((await steps(run.runId)).same!.result).toBe(1);
    });
  });

  it('retries with backoff, stores class, message and stack, then fails', async () => {
    let calls = 0;
    class PaymentDeclined extends Error {
      override name = 'PaymentDeclined';
    }
    const wf = flow.workflow('always-fails', async ({ step }: WorkflowContext) => {
      await step.run('charge', { retries: 2 }, () => {
        calls++;
        throw new PaymentDeclined(`declined #${calls}`);
      });
    });
    await withWorker(async () => {
      const run = await wf.start({});
      const error = await run.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DurableFlowError);
      expect((error as DurableFlowError).code).toBe('RUN_FAILED');
      expect(((error as Error).cause as Error).name).toBe('PaymentDeclined');
      expect(calls).toBe(3);
      const info = await flow.getRun(run.runId);
      expect(info!.error).toMatchObject({ class: 'PaymentDeclined', message: 'declined #3', step: 'charge' });
      expect(info!.error!.stack).toContain('declined #3');
      const charge = (await steps(run.runId)).charge!;
      expect(charge.status).toBe('failed');
      expect(charge.attempts).toBe(3);
      expect(charge.error).toMatchObject({ class: 'PaymentDeclined', message: 'declined #3' });
    });
  });

  it('does not retry a NonRetriableError', async () => {
    let calls = 0;
    const wf = flow.workflow('non-retriable', async ({ step }: WorkflowContext) => {
      await step.run('validate', () => {
        calls++;
        throw new NonRetriableError('bad address');
      });
    });
    await withWorker(async () => {
      const run = await wf.start({});
      await expect(run.result()).rejects.toThrow(/NonRetriableError: bad address/);
      expect(calls).toBe(1);
    });
  });

  it('lets the workflow catch a failed step, and replays the same branch', async () => {
    let compensations = 0;
    let after = 0;
    const wf = flow.workflow('compensate', async ({ step }: WorkflowContext) => {
      try {
        await step.run('reserve', { retries: 0 }, () => {
          throw new Error('no stock');
        });
      } catch (error) {
        await step.run('refund', () => ++compensations);
        // A later failure makes the run replay: the caught step must fail the same way again.
        await step.run('flaky-after', () => {
          after++;
          if (after === 1) throw new Error('once');
          return (error as Error).message;
        });
        return 'compensated';
      }
      return 'reserved';
    });
    await withWorker(async () => {
      const run = await wf.start({});
      expect(await run.result()).toBe('compensated');
      expect(compensations).toBe(1);
      expect((await steps(run.runId))['flaky-after']!.result).toBe('no stock');
    });
  });

  it('refuses results that cannot be stored as JSON, without retrying', async () => {
    const cases: [string, () => unknown, RegExp][] = [
      ['bigint', () => 10n, /\$ is a BigInt/],
      ['map', () => ({ m: new Map() }), /\$\.m is a Map/],
      ['circular', () => { const o: any = {}; o.self = o; return o; }, /circular/],
      ['nul', () => ({ text: 'a\u0000b' }), /\\u0000/],
      ['surrogate', () => ['\uD800x'], /lone UTF-16 surrogate/],
      ['nan', () => NaN, /NaN/],
      ['huge', () => 'x'.repeat(5 * 1024 * 1024), /over the limit/],
    ];
    await withWorker(async () => {
      for (const [name, make, message] of cases) {
        let calls = 0;
        const wf = flow.workflow(`bad-result-${name}`, async ({ step }: WorkflowContext) => {
          await step.run('produce', () => {
            calls++;
            return make();
          });
        });
        const run = await wf.start({});
        const error = (await run.result().catch((e: unknown) => e)) as Error;
        expect(error.message, name).toMatch(message);
        expect(calls, name).toBe(1);
        const info = await flow.getRun(run.runId);
        expect(info!.error!.class, name).toBe('SerializationError');
      }
    });
  });

  it('resumes a cursor step from its last advanced cursor', async () => {
    const seen: number[] = [];
    let crashAt: number | null = 2;
    const wf = flow.workflow('cursor', async ({ step }: WorkflowContext) => {
      return step.run('process', { start: 0, retries: 1 }, async ({ cursor, advance }) => {
        const items = ['a', 'b', 'c', 'd'];
        for (let i = cursor as number; i < items.length; i++) {
          if (i === crashAt) {
            crashAt = null;
            throw new Error('crash at 2');
          }
          seen.push(i);
          await advance(i + 1);
        }
        return items.length;
      });
    });
    await withWorker(async () => {
      const run = await wf.start({});
      expect(await run.result()).toBe(4);
      expect(seen).toEqual([0, 1, 2, 3]);
      expect((await steps(run.runId)).process!.cursor).toBe(4);
    });
  });

  it('fails an attempt that exceeds the step timeout and retries it', async () => {
    let attempts = 0;
    const wf = flow.workflow('step-timeout', async ({ step }: WorkflowContext) => {
      return step.run('slow', { timeout: 100, retries: 1 }, async ({ signal }) => {
        attempts++;
        if (attempts === 1) {
          await new Promise((resolve) => signal.addEventListener('abort', resolve));
          return 'aborted';
        }
        return 'fast';
      });
    });
    await withWorker(async () => {
      const run = await wf.start({});
      expect(await run.result()).toBe('fast');
      expect(attempts).toBe(2);
    });
  });

  it('writes each log line once even when the run replays', async () => {
    let flaky = 0;
    const wf = flow.workflow('logs', async ({ step, log }: WorkflowContext) => {
      log.info('starting', { at: 'top' });
      await step.run('first', () => {
        log.debug('inside first');
        return 1;
      });
      log.warn('between');
      await step.run('second', ({ attempt }) => {
        log.info('attempt', { attempt });
        flaky++;
        if (flaky < 2) throw new Error('again');
      });
      log.error('done');
    });
    await withWorker(async () => {
      const run = await wf.start({});
      await run.result();
      const timeline = await flow.timeline(run.runId);
      expect(timeline!.runLogs.map((l) => [l.level, l.message])).toEqual([
        ['info', 'starting'],
        ['warn', 'between'],
        ['error', 'done'],
      ]);
      const byStep = Object.fromEntries(timeline!.steps.map((s) => [s.step.name, s.logs.map((l) => [l.message, l.data])]));
      expect(byStep.first).toEqual([['inside first', {}]]);
      // One line per attempt of the retried step: each attempt is a fact worth keeping.
      expect(byStep.second).toEqual([
        ['attempt', { attempt: 1 }],
        ['attempt', { attempt: 2 }],
      ]);
    });
  });

  it('rejects bad log input with a clear error', async () => {
    const wf = flow.workflow('bad-log', async ({ log }: WorkflowContext) => {
      (log.info as any)('x', 'not an object');
    });
    await withWorker(async () => {
      const run = await wf.start({});
      await expect(run.result()).rejects.toThrow(/Expected workflow log data to be a plain object, got string/);
    });
  });
});

describe('step.sendEvent', () => {
  it('emits an event exactly once, even when the run replays, and wakes its waiters', async () => {
    let flaky = 0;
    const sender = flow.workflow('sender', async ({ step }: WorkflowContext) => {
      const sent = await step.sendEvent('announce', 'order_packed', { orderId: 9 });
      await step.run('flaky', () => {
        if (++flaky === 1) throw new Error('replay');
      });
      return sent;
    });
    const receiver = flow.workflow('receiver', async ({ step }: WorkflowContext) => step.waitForEvent('order_packed', { match: { orderId: 9 } }));
    await withWorker(async () => {
      const waiting = await receiver.start({});
      await eventually(async () => (await flow.getRun(waiting.runId))!.status === 'waiting');
      const run = await sender.start({});
      const sent = await run.result();
      expect(sent).toMatchObject({ eventId: `${run.runId}:announce`, name: 'order_packed' });
      expect(await waiting.result()).toEqual({ orderId: 9 });
      const { rows } = await flow.pool.query(`SELECT count(*)::int AS n, min(source) AS source FROM durable_flow_workflow_events WHERE name = 'order_packed'`);
      expect(rows[0]).toEqual({ n: 1, source: `run:${run.runId}` });
    });
  });
});

describe('bad input', () => {
  it('refuses a workflow without a handler, and a duplicate name', () => {
    expect(() => flow.workflow('no-handler', undefined as any)).toThrow(/Expected workflow "no-handler" to be given a handler function, got undefined/);
    flow.workflow('twice', async () => 1);
    expect(() => flow.workflow('twice', async () => 1)).toThrow(/already registered/);
  });

  it('refuses an input that is not JSON and stores nothing', async () => {
    const wf = flow.workflow('bad-input', async () => 1);
    await expect(wf.start({ big: 1n } as any)).rejects.toThrow(/The input of workflow "bad-input" cannot be stored as JSON: \$\.big is a BigInt/);
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'bad-input'`);
    expect(rows[0].n).toBe(0);
  });

  it('fails the run for an unparseable sleep duration or a non-object match, naming the problem', async () => {
    const sleeper = flow.workflow('bad-sleep', async ({ step }: WorkflowContext) => {
      await step.sleep('nap', 'a while' as any);
    });
    const matcher = flow.workflow('bad-match', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('evt', { match: ['x'] as any });
    });
    await withWorker(async () => {
      await expect((await sleeper.start({})).result()).rejects.toThrow(/Expected the duration of sleep step "nap" to be a positive duration/);
      await expect((await matcher.start({})).result()).rejects.toThrow(/Expected `match` of wait step "evt" to be a plain object/);
    });
  });

  it('counts a workflow without steps as completed at once', async () => {
    const wf = flow.workflow('no-steps', async ({ input }: WorkflowContext<number>) => input * 2);
    await withWorker(async () => {
      const run = await wf.start(21);
      expect(await run.result()).toBe(42);
      await eventually(async () => (await flow.getRun(run.runId))!.completedAt);
    });
  });
});
