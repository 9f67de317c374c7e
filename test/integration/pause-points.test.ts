/**
 * Pause everywhere: every debug point of the engine (read from its source, so a new point is covered
 * the day it is added) becomes the moment flow.pause() is called on a run, the first time the run
 * reaches it, for each of a few workflows (steps, a sleep, a wait, a child run, a waitAny, a throttled,
 * a debounced and a singleton workflow). Then: the run ends
 * paused (or finished, when the pause came with its last write); once pause() has returned, no step
 * starts after a step that was running then, and at most one (the one past a boundary already
 * crossed) when none was; resumed, it completes with its output, every step having run exactly once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearDebugPoints, setDebugPoint } from '../../lib/debug-point.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { debugPoints } from '../helpers/debug-points.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
beforeAll(async () => {
  ctx = await setupDatabase('pausepoints');
  flow = ctx.flow();
  await flow.migrate();
});
afterEach(() => clearDebugPoints());
afterAll(async () => {
  await ctx?.cleanup();
});

/** Step bodies as they start and end, in one sequence, by run. */
let clock = 0;
const bodies = new Map<string, { step: string; start: number; end?: number }[]>();
async function body<T>(runId: string, step: string, value: T): Promise<T> {
  const entry: { step: string; start: number; end?: number } = { step, start: ++clock };
  bodies.set(runId, [...(bodies.get(runId) ?? []), entry]);
  await new Promise((resolve) => setImmediate(resolve));
  entry.end = ++clock;
  return value;
}

const WORKFLOWS: Record<string, { steps: string[]; output: unknown }> = {
  pp_steps: { steps: ['a', 'b', 'c'], output: 'abc' },
  pp_sleep: { steps: ['a', 'b'], output: 'ab' },
  pp_wait: { steps: ['a', 'b'], output: 'a7b' },
  pp_child: { steps: ['a', 'b'], output: 'axb' },
  pp_any: { steps: ['a', 'b'], output: 'a7b' },
  // Flow control: each begins through its option's path (the throttle's claim, a debounced start's delay,
  // a singleton's decision at start).
  pp_throttle: { steps: ['a', 'b'], output: 'ab' },
  pp_debounce: { steps: ['a', 'b'], output: 'ab' },
  pp_single: { steps: ['a', 'b'], output: 'ab' },
};

describe('pause at every debug point', () => {
  it('ends paused or finished, starts no step past the boundary after pause() returns, and completes once resumed', async () => {
    flow.workflow('pp_steps', async ({ step, runId }) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      const b = await step.run('b', () => body(runId, 'b', 'b'));
      return a + b + (await step.run('c', () => body(runId, 'c', 'c')));
    });
    flow.workflow('pp_sleep', async ({ step, runId }) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      await step.sleep('nap', 30);
      return a + (await step.run('b', () => body(runId, 'b', 'b')));
    });
    flow.workflow('pp_wait', async ({ step, runId }) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      const event = await step.waitForEvent<{ n: number }>('pp_go', { match: { runId }, allowPastEvents: true });
      return a + event.n + (await step.run('b', () => body(runId, 'b', 'b')));
    });
    flow.workflow('pp_any', async ({ step, runId }) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      const first = await step.waitAny('pick', { go: { event: 'pp_any_go', match: { runId }, allowPastEvents: true }, later: { sleep: '1 hour' } });
      return a + (first.value as { n: number }).n + (await step.run('b', () => body(runId, 'b', 'b')));
    });
    const twoSteps = async ({ step, runId }: WorkflowContext) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      return a + (await step.run('b', () => body(runId, 'b', 'b')));
    };
    flow.workflow('pp_throttle', { throttle: { limit: 1, period: 10 } }, twoSteps);
    flow.workflow('pp_debounce', { debounce: { period: 20 } }, twoSteps);
    flow.workflow('pp_single', { singleton: { mode: 'skip' } }, twoSteps);
    flow.workflow('pp_child_x', async ({ step, input }: WorkflowContext<{ parent: string }>) => step.run('x', () => body(`${input.parent}/child`, 'x', 'x')));
    flow.workflow('pp_child', async ({ step, runId }) => {
      const a = await step.run('a', () => body(runId, 'a', 'a'));
      const x = (await step.invoke<string>('child', 'pp_child_x', { parent: runId })).result;
      return a + x + (await step.run('b', () => body(runId, 'b', 'b')));
    });
    const worker = flow.worker({ pollInterval: 20, concurrency: 4 });
    await worker.start();
    let exercised = 0;
    const exercisedBy: Record<string, number> = {};
    const failures: string[] = [];
    try {
      for (const point of debugPoints()) {
        for (const [workflow, expected] of Object.entries(WORKFLOWS)) {
          const runId = `${point}-${workflow}`;
          if (workflow === 'pp_wait') await flow.notify('pp_go', { runId, n: 7 });
          if (workflow === 'pp_any') await flow.notify('pp_any_go', { runId, n: 7 });
          let paused: Promise<boolean> | undefined;
          let returnedAt: { clock: number; running: number } | undefined;
          setDebugPoint(point, async (data) => {
            if (data.runId !== runId || paused) return;
            paused = flow.pause(runId, { reason: point });
            const returned = paused.then(() => {
              const list = bodies.get(runId) ?? [];
              returnedAt = { clock, running: list.filter((b) => b.end === undefined).length };
            });
            // The engine waits for the pause at the point, except inside the transaction that holds the
            // run's row (the pause waits for that one).
            if (point !== 'SUSPEND_IN_TRANSACTION') await returned;
          });
          const run = await flow.definitions.get(workflow)!;
          await flow.startRun(run, {}, { runId });
          await eventually(async () => {
            const info = await flow.getRun(runId);
            return (info?.status === 'paused' || info?.status === 'completed') && (paused === undefined || returnedAt !== undefined);
          }, 10_000);
          setDebugPoint(point, undefined);
          if (!paused) continue; // the point is not on this run's path
          exercised++;
          exercisedBy[workflow] = (exercisedBy[workflow] ?? 0) + 1;
          const took = await paused;
          const status = (await flow.getRun(runId))!.status;
          const after = (bodies.get(runId) ?? []).filter((b) => b.start > returnedAt!.clock);
          const allowed = returnedAt!.running > 0 ? 0 : 1;
          // A pause that took (true) lets no step start past the next boundary, whether the run then
          // ended paused or completed (a run whose step past the boundary was its last has no boundary left).
          if (took && after.length > allowed) failures.push(`${runId}: ${after.length} steps started after pause() returned (${allowed} allowed): ${after.map((b) => b.step)}`);
          if (status === 'paused') await flow.resume(runId);
          const output = await flow.handle(runId).result({ timeout: '10 s' });
          if (output !== expected.output) failures.push(`${runId}: output ${JSON.stringify(output)}`);
          const ran = (bodies.get(runId) ?? []).map((b) => b.step);
          if (JSON.stringify(ran) !== JSON.stringify(expected.steps)) failures.push(`${runId}: steps ran ${ran.join(',')}`);
        }
      }
    } finally {
      await worker.stop();
    }
    expect(failures).toEqual([]);
    // Most points are on every run's path; those that are not (a claim, a heartbeat, a notify) are vacuous here.
    expect(exercised).toBeGreaterThan(30);
    for (const workflow of Object.keys(WORKFLOWS)) expect(exercisedBy[workflow], `${workflow}: ${JSON.stringify(exercisedBy)}`).toBeGreaterThanOrEqual(6);
    console.log(`[pause points] exercised per workflow: ${JSON.stringify(exercisedBy)}`);
  });
});
