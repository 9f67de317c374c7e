/**
 * Schedules fired by several worker processes at once: a cron of every second, over many slots,
 * never starts a slot twice (runs counted per scheduledFor), and misses none while some process is
 * up, even when one of them is SIGKILLed mid-firing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('schedules_fleet');
  flow = ctx.flow();
  await flow.migrate();
});
afterEach(async () => {
  killAllChildren();
  await flow.pool.query(`DELETE FROM durable_flow_workflow_runs`);
  await flow.pool.query(`DELETE FROM durable_flow_schedules`);
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function spawnWorkers(n: number): Promise<ChildWorker[]> {
  const workers = Array.from({ length: n }, () => spawnFixture('schedule-worker.ts', { DATABASE_URL: ctx.db.url }));
  await Promise.all(workers.map((worker) => worker.waitFor(/^READY/)));
  return workers;
}

/** Runs per slot, oldest slot first. */
async function slots(): Promise<{ slot: number; runs: number }[]> {
  const { rows } = await flow.pool.query<{ slot: Date; runs: number }>(
    `SELECT scheduled_for AS slot, count(*)::int AS runs
     FROM durable_flow_workflow_runs WHERE workflow_name = 'every_second' GROUP BY 1 ORDER BY 1`,
  );
  return rows.map((r) => ({ slot: r.slot.getTime(), runs: r.runs }));
}

function expectOneRunPerSecond(found: { slot: number; runs: number }[], atLeast: number): void {
  expect(found.length).toBeGreaterThanOrEqual(atLeast);
  expect(found.filter((s) => s.runs !== 1)).toEqual([]);
  // Every second from the first slot to the last has its run: none missed, none doubled.
  const first = found[0]!.slot;
  expect(found.map((s) => s.slot)).toEqual(found.map((_, i) => first + i * 1000));
}

async function stop(workers: ChildWorker[]): Promise<void> {
  for (const worker of workers) worker.child.kill('SIGTERM');
  await Promise.all(workers.map((worker) => worker.exited));
}

describe('a cron of every second fired by several worker processes', () => {
  it('two processes: every slot starts exactly one run', async () => {
    const workers = await spawnWorkers(2);
    await eventually(async () => (await slots()).length >= 12, 60_000, 200);
    await stop(workers);
    const found = await slots();
    expectOneRunPerSecond(found, 12);
    const { rows } = await flow.pool.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'every_second' GROUP BY 1`,
    );
    // 'ready': a run its worker handed back at SIGTERM, after its step and before its end (due again at once).
    expect(rows.filter((r) => !['completed', 'enqueued', 'running', 'ready'].includes(r.status))).toEqual([]);
  });

  it('three processes, one SIGKILLed while firing: still exactly one run per slot, and no slot missed', async () => {
    const workers = await spawnWorkers(3);
    await eventually(async () => (await slots()).length >= 6, 60_000, 200);
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    const before = (await slots()).length;
    await eventually(async () => (await slots()).length >= before + 8, 60_000, 200);
    await stop(workers.slice(1));
    const found = await slots();
    expectOneRunPerSecond(found, before + 8);
    // The schedule is the workflow option's, created by the processes at worker start (not by migrate() here).
    const schedule = (await flow.schedules.get('every_second'))!;
    expect(schedule).toMatchObject({ workflow: 'every_second', cron: '* * * * * *', overlap: 'allow', catchUp: 'all', skipped: [] });
  });
});
