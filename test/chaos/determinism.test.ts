/**
 * Determinism and memoization faults (reliability.md E1, E5–E7): the code of a workflow changed
 * under an in-flight run, and step results that cannot be stored. Each ends in a clear, visible
 * state (getRun, the viewer) — never a silent wrong value, a crash loop or a dead worker.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import { checkHistory, installHistory } from './history.js';
import { registerChaosWorkflows } from './workflows.js';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await setupDatabase('determinism');
  await installHistory(ctx.flow().pool);
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

type Version = (flow: DurableFlow, effects: string[]) => void;

/** v1 of the `order` workflow: reserve → wait for `order.paid` → ship. */
const v1: Version = (flow, effects) => {
  flow.workflow('order', async ({ step, input }: WorkflowContext<{ id: number }>) => {
    await step.run('reserve', () => effects.push('reserve'));
    await step.waitForEvent('order.paid', { match: { id: input.id } });
    return step.run('ship', () => (effects.push('ship'), 'shipped'));
  });
};

/** Runs an `order` under v1 until it waits, then deploys `next` and lets it resume under the new code. */
async function changeUnderRun(next: Version, id: number) {
  const effects: string[] = [];
  const flowV1 = ctx.flow();
  v1(flowV1, effects);
  const workerV1 = flowV1.worker({ pollInterval: 100 });
  await workerV1.start();
  const run = await flowV1.handle(await flowV1.startRun(flowV1.definitions.get('order')!, { id }));
  await eventually(async () => (await flowV1.getRun(run.runId))!.status === 'waiting');
  await workerV1.stop();

  const flowV2 = ctx.flow();
  next(flowV2, effects);
  const workerV2 = flowV2.worker({ pollInterval: 100 });
  await workerV2.start();
  await flowV2.notify('order.paid', { id });
  const error = (await run.result({ timeout: '10 seconds' }).catch((e: unknown) => e)) as Error;
  const info = await flowV2.getRun(run.runId);
  // No crash loop: a failed run is never claimed again.
  const attempts = info!.attempts;
  await new Promise((resolve) => setTimeout(resolve, 400));
  expect((await flowV2.getRun(run.runId))!.attempts).toBe(attempts);
  await workerV2.stop();
  return { run, error, info: info!, effects, flowV1, flowV2 };
}

describe('E1: the code changed under an in-flight run', () => {
  it('a renamed step fails the run with NON_DETERMINISTIC naming both names; the new step never runs; restoring the code and retrying completes it', async () => {
    const renamed: Version = (flow, effects) => {
      flow.workflow('order', async ({ step, input }: WorkflowContext<{ id: number }>) => {
        await step.run('reserve-stock', () => effects.push('reserve-stock'));
        await step.waitForEvent('order.paid', { match: { id: input.id } });
        return step.run('ship', () => (effects.push('ship'), 'shipped'));
      });
    };
    const { run, error, info, effects, flowV1 } = await changeUnderRun(renamed, 1);
    expect(info.status).toBe('failed');
    expect(info.error!.code).toBe('NON_DETERMINISTIC');
    expect(error.message).toMatch(/calls new step "reserve-stock" while stored step "reserve", "order.paid" were not reached|calls new step "reserve-stock" while stored step "reserve"/);
    expect(error.message).toMatch(/flow\.retry\(/);
    expect(effects).toEqual(['reserve']);

    // The viewer shows it, with the fix.
    const viewer = await startViewer(flowV1, { allowUnauthenticated: true }, false);
    try {
      const page = await (await fetch(`${viewer.base}/runs/${run.runId}`)).text();
      expect(page).toContain('NON_DETERMINISTIC');
      expect(page).toContain('no longer matches the history');
    } finally {
      await viewer.close();
    }

    // Back to v1: a retry replays the stored steps and completes, running nothing twice.
    await flowV1.retry(run.runId);
    const worker = flowV1.worker({ pollInterval: 100 });
    await worker.start();
    try {
      expect(await run.result({ timeout: '10 seconds' })).toBe('shipped');
      expect(effects).toEqual(['reserve', 'ship']);
    } finally {
      await worker.stop();
    }
  });

  it('a removed step fails the run the same way instead of running what follows it', async () => {
    const removed: Version = (flow, effects) => {
      flow.workflow('order', async ({ step, input }: WorkflowContext<{ id: number }>) => {
        await step.waitForEvent('order.paid', { match: { id: input.id } });
        return step.run('ship', () => (effects.push('ship'), 'shipped'));
      });
    };
    const { info, effects } = await changeUnderRun(removed, 2);
    expect(info.status).toBe('failed');
    expect(info.error!.code).toBe('NON_DETERMINISTIC');
    expect(info.error!.message).toMatch(/calls new step "ship" while stored step "reserve" was not reached/);
    expect(effects).toEqual(['reserve']);
  });

  it('a step whose kind changed (a run step now a sleep) fails the run, naming the step and both kinds', async () => {
    const changedKind: Version = (flow, effects) => {
      flow.workflow('order', async ({ step, input }: WorkflowContext<{ id: number }>) => {
        await step.sleep('reserve', '1 second');
        await step.waitForEvent('order.paid', { match: { id: input.id } });
        return step.run('ship', () => (effects.push('ship'), 'shipped'));
      });
    };
    const { info, effects } = await changeUnderRun(changedKind, 3);
    expect(info.status).toBe('failed');
    expect(info.error!.code).toBe('NON_DETERMINISTIC');
    expect(info.error!.message).toMatch(/"reserve"/);
    expect(info.error!.message).toMatch(/sleep/);
    expect(effects).toEqual(['reserve']);
  });
});

describe('E5–E7: results that cannot be stored, in a worker process', () => {
  it('fail their run at once with a SerializationError naming the problem; the worker lives on and runs the next run', async () => {
    const flow = ctx.flow();
    const { badResult } = registerChaosWorkflows(flow);
    const worker = spawnFixture('chaos-worker.ts', { DATABASE_URL: ctx.db.url });
    await worker.waitFor(/^READY/);
    const cases: [string, RegExp][] = [
      ['bigint', /\$\.amount is a BigInt/],
      ['circular', /circular/],
      ['nul', /\\u0000/],
      ['surrogate', /lone UTF-16 surrogate/],
      ['huge', /over the limit/],
    ];
    const runIds: string[] = [];
    for (const [kind, message] of cases) {
      const run = await badResult.start({ kind });
      runIds.push(run.runId);
      const error = (await run.result({ timeout: '10 seconds' }).catch((e: unknown) => e)) as Error;
      expect(error.message, kind).toMatch(message);
      const info = await flow.getRun(run.runId);
      expect(info!.status, kind).toBe('failed');
      expect(info!.error!.class, kind).toBe('SerializationError');
    }
    expect(await (await badResult.start({ kind: 'ok' })).result({ timeout: '10 seconds' })).toBe('fine');
    expect(worker.child.exitCode).toBeNull();
    // Never retried: one entry per run.
    const history = await checkHistory(flow.pool, runIds);
    expect(history.entries).toBe(cases.length);
    expect(history.outcomes).toEqual({ failed: cases.length });
  });
});
