/**
 * Clock faults (reliability.md D1, D4): app servers whose clocks are five minutes off the database's,
 * and durations far beyond what a JavaScript timer can hold.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { DurableFlow as Flow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory } from './history.js';
import type { registerChaosWorkflows } from './workflows.js';
import { chaosSetup } from './setup.js';

let ctx: TestContext;
let flow: DurableFlow;
let workflows: ReturnType<typeof registerChaosWorkflows>;

beforeAll(async () => ({ ctx, flow, workflows } = await chaosSetup('clock')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const seconds = async (sql: string, params: unknown[]): Promise<number> => Number((await flow.pool.query(sql, params)).rows[0]?.s);

describe('D1: app clocks five minutes off the database clock', () => {
  it('changes no lease, sleep or wait timeout: every time is taken on the database clock', async () => {
    const fast = spawnFixture('chaos-worker.ts', { DATABASE_URL: ctx.db.url, LEASE_TTL_MS: '2000', CLOCK_OFFSET_MS: String(5 * 60_000), STEP_MS: '400' });
    const slow = spawnFixture('chaos-worker.ts', { DATABASE_URL: ctx.db.url, LEASE_TTL_MS: '2000', CLOCK_OFFSET_MS: String(-5 * 60_000), STEP_MS: '400' });
    await Promise.all([fast.waitFor(/^READY/), slow.waitFor(/^READY/)]);

    const runIds = await Promise.all(Array.from({ length: 20 }, (_, n) => workflows.pipeline.start({ n, napMs: 1500 }).then((r) => r.runId)));
    const waiterRun = await workflows.waiter.start({ k: 7 });

    // Leases: at most leaseTtl ahead of the database clock, never five minutes off.
    const leases = await eventually(async () => {
      const { rows } = await flow.pool.query<{ s: number }>(
        `SELECT extract(epoch FROM lease_expires_at - now())::float8 AS s FROM durable_flow_workflow_runs WHERE lease_owner IS NOT NULL`,
      );
      return rows.length >= 5 ? rows : null;
    });
    for (const { s } of leases) {
      expect(s).toBeGreaterThan(-1);
      expect(s).toBeLessThanOrEqual(2.5);
    }

    // The wait's timeout (10 minutes) is 10 minutes on the database clock.
    await eventually(async () => (await flow.getRun(waiterRun.runId))!.status === 'waiting');
    const timeout = await seconds(
      `SELECT extract(epoch FROM w.timeout_at - w.created_at)::float8 AS s FROM durable_flow_workflow_waits w
         JOIN durable_flow_workflow_runs r ON r.id = w.workflow_run_id WHERE r.run_id = $1`,
      [waiterRun.runId],
    );
    expect(timeout).toBeGreaterThan(595);
    expect(timeout).toBeLessThan(605);
    await flow.notify('chaos.go', { k: 7, note: 'on time' });
    expect(await waiterRun.result({ timeout: '20 seconds' })).toBe('on time');

    // Sleeps of 1.5 s last 1.5 s on the database clock: not zero (the fast clock), not five minutes.
    await eventually(async () => {
      const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1) AND status = 'completed'`, [runIds]);
      return rows[0].n === runIds.length;
    }, 40_000);
    const { rows: naps } = await flow.pool.query<{ s: number }>(
      `SELECT extract(epoch FROM c.started_at - b.completed_at)::float8 AS s
         FROM durable_flow_workflow_runs r
         JOIN durable_flow_workflow_steps b ON b.workflow_run_id = r.id AND b.name = 'b'
         JOIN durable_flow_workflow_steps c ON c.workflow_run_id = r.id AND c.name = 'c'
        WHERE r.run_id = ANY ($1)`,
      [runIds],
    );
    expect(naps).toHaveLength(runIds.length);
    for (const { s } of naps) {
      expect(s).toBeGreaterThanOrEqual(1.45);
      expect(s).toBeLessThan(10);
    }
    // Both skewed workers worked, and no lease was taken over early: nothing ran twice.
    const { rows: pids } = await flow.pool.query(`SELECT count(DISTINCT pid)::int AS n FROM test_effects`);
    expect(pids[0].n).toBe(2);
    const history = await checkHistory(flow.pool, [...runIds, waiterRun.runId]);
    assertHistory(history, { maxReexecutions: 0, maxEntriesPerStep: 1 });
  });
});

describe('D4: durations beyond a JavaScript timer (2^31 ms, about 24.8 days)', () => {
  it('stores sleeps, wait timeouts and delays of months and years in the database, and keeps workers idle meanwhile', async () => {
    const long = flow.workflow('long', async ({ step }: WorkflowContext) => {
      await step.sleep('month', '40 days');
      await step.waitForEvent('never', { timeout: '1 year' });
    });
    const worker = flow.worker({ pollInterval: 100 });
    await worker.start();
    try {
      const run = await long.start({});
      const delayed = await long.start({}, { delay: '10 years' });
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'sleeping');
      const wake = await seconds(`SELECT extract(epoch FROM wake_at - now())::float8 AS s FROM durable_flow_workflow_runs WHERE run_id = $1`, [run.runId]);
      expect(wake / 86_400).toBeGreaterThan(39.9);
      expect(wake / 86_400).toBeLessThan(40.1);
      const delay = await seconds(`SELECT extract(epoch FROM wake_at - now())::float8 AS s FROM durable_flow_workflow_runs WHERE run_id = $1`, [delayed.runId]);
      expect(delay / 86_400 / 365).toBeGreaterThan(9.9);

      // Past the sleep (its wake-up moved to now in the database), the wait's timeout is a year away.
      await flow.pool.query(
        `UPDATE durable_flow_workflow_steps s SET metadata = jsonb_build_object('wakeAt', now())
           FROM durable_flow_workflow_runs r WHERE r.id = s.workflow_run_id AND r.run_id = $1 AND s.name = 'month'`,
        [run.runId],
      );
      await flow.pool.query(`UPDATE durable_flow_workflow_runs SET wake_at = now() WHERE run_id = $1`, [run.runId]);
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'waiting');
      const timeout = await seconds(
        `SELECT extract(epoch FROM w.timeout_at - now())::float8 AS s FROM durable_flow_workflow_waits w
           JOIN durable_flow_workflow_runs r ON r.id = w.workflow_run_id WHERE r.run_id = $1`,
        [run.runId],
      );
      expect(timeout / 86_400).toBeGreaterThan(364);

      // Idle: no timer overflowed into a busy loop of claims or executions.
      const executed = worker.stats.claimed;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(worker.stats.claimed).toBe(executed);
      expect((await flow.getRun(run.runId))!.status).toBe('waiting');
    } finally {
      await worker.stop();
    }
  });

  it('honours step timeouts and result() timeouts longer than a timer can hold, instead of firing them at once', async () => {
    const patient = flow.workflow('patient', async ({ step }: WorkflowContext) => {
      return step.run('slow', { timeout: '30 days' }, () => new Promise((resolve) => setTimeout(() => resolve('done'), 300)));
    });
    const worker = flow.worker({ pollInterval: 100 });
    await worker.start();
    try {
      const run = await patient.start({});
      expect(await run.result({ timeout: '60 days' })).toBe('done');
    } finally {
      await worker.stop();
    }
  });

  it('refuses settings a timer cannot hold, naming the option and the limit', () => {
    expect(() => new Flow({ databaseUrl: ctx.db.url, leaseTtl: '30 days' })).toThrow(/leaseTtl.*at most 2147483647 ms \(about 24 days\)/);
    expect(() => flow.worker({ pollInterval: '30 days' })).toThrow(/pollInterval.*at most about 24 days/);
  });
});
