/**
 * Database faults (reliability.md B1, B3, B5): every backend of the app terminated again and again,
 * the server crashed and restarted while runs flow, and a pool held by long steps. Worker processes
 * must survive all of it and finish every run exactly once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { DurableFlow } from '../../lib/index.js';
import { admin } from '../helpers/db.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory, installHistory, reportFigures } from './history.js';
import { startOwnPostgres } from './own-postgres.js';
import { chaosSetup } from './setup.js';
import type { OwnPostgres } from './own-postgres.js';
import { registerChaosWorkflows } from './workflows.js';

afterEach(() => killAllChildren());

async function spawnWorker(url: string, env: Record<string, string> = {}): Promise<ChildWorker> {
  const worker = spawnFixture('chaos-worker.ts', { DATABASE_URL: url, LEASE_TTL_MS: '2000', ...env });
  await worker.waitFor(/^READY/);
  return worker;
}

async function terminal(pool: pg.Pool, runIds: string[]): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1) AND status IN ('completed', 'failed', 'cancelled')`,
    [runIds],
  );
  return rows[0]!.n;
}

async function expectOutputs(pool: pg.Pool, runIds: string[]): Promise<void> {
  const { rows } = await pool.query<{ run_id: string; output: unknown }>(`SELECT run_id, output FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)`, [runIds]);
  const outputs = new Map(rows.map((r) => [r.run_id, r.output]));
  runIds.forEach((id, n) => expect(outputs.get(id)).toBe(n + 3));
}

describe('on the shared server', () => {
  let ctx: TestContext;
  let flow: DurableFlow;
  let workflows: ReturnType<typeof registerChaosWorkflows>;

  beforeAll(async () => ({ ctx, flow, workflows } = await chaosSetup('dbfault')));
  afterAll(async () => {
    killAllChildren();
    await ctx.cleanup();
  });

  it('B1: every backend of the app terminated 10 times while 100 runs flow; the workers live on and finish each run once', async () => {
    const workers = await Promise.all([1, 2].map(() => spawnWorker(ctx.db.url, { STEP_MS: '150' })));
    const runIds = await Promise.all(Array.from({ length: 100 }, (_, n) => workflows.pipeline.start({ n, ...(n % 4 === 0 ? { napMs: 300 } : {}) }).then((r) => r.runId)));
    let terminated = 0;
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 400));
      terminated += await admin(async (client) => {
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [ctx.db.name],
        );
        return rows[0]!.n;
      });
    }
    await eventually(async () => (await terminal(flow.pool, runIds)) === runIds.length, 60_000, 100);
    for (const worker of workers) expect(worker.child.exitCode).toBeNull();
    await expectOutputs(flow.pool, runIds);
    const history = await checkHistory(flow.pool, runIds);
    // A termination can interrupt each running step once (20 run at a time).
    assertHistory(history, { maxReexecutions: 10 * 20, maxEntriesPerStep: 11 });
    expect(history.outcomes).toEqual({ completed: 100 });
    reportFigures('B1 terminate backends', {
      runs: 100,
      workers: 2,
      rounds: 10,
      backendsTerminated: terminated,
      lost: history.lost.length,
      duplicateOutcomes: history.duplicateOutcomes,
      duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions,
      interruptedStepReexecutions: history.reexecutions,
    });
  });

  it('B5: steps holding every connection of the pool for twice the lease do not starve heartbeats, claims or LISTEN', async () => {
    // One worker with a pool of 4 and 6 steps that each hold a pooled connection for 4 s (lease: 2 s);
    // a second worker stands by to take over any lease that lapses.
    const hogger = await spawnWorker(ctx.db.url, { POOL_SIZE: '4', CONCURRENCY: '10' });
    const hogs = await Promise.all(Array.from({ length: 6 }, () => workflows.hog.start({ holdMs: 4000 }).then((r) => r.runId)));
    await eventually(async () => {
      const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM test_effects WHERE run_id = ANY ($1)`, [hogs]);
      return rows[0]!.n >= 4;
    }, 20_000);
    await spawnWorker(ctx.db.url);
    const quick = await workflows.pipeline.start({ n: 0 });
    expect(await quick.result({ timeout: '20 seconds' })).toBe(3);
    await eventually(async () => (await terminal(flow.pool, hogs)) === hogs.length, 40_000, 100);
    expect(hogger.child.exitCode).toBeNull();
    const history = await checkHistory(flow.pool, hogs);
    assertHistory(history, { maxReexecutions: 0, maxEntriesPerStep: 1 });
    expect(history.outcomes).toEqual({ completed: 6 });
  });
});

describe('on a server of its own', () => {
  let server: OwnPostgres;
  let flow: DurableFlow;

  beforeAll(async () => {
    server = await startOwnPostgres();
    const client = new pg.Client({ connectionString: server.url() });
    await client.connect();
    await client.query('CREATE DATABASE chaos');
    await client.end();
    flow = new DurableFlow({ databaseUrl: server.url('chaos'), logger: false, leaseTtl: '2 seconds' });
    await flow.migrate();
    await installHistory(flow.pool);
  });
  afterAll(async () => {
    killAllChildren();
    await flow?.close({ timeout: 1000 }).catch(() => undefined);
    server?.destroy();
  });

  it('B3: Postgres crashed and restarted 3 times while 300 runs flow; every run finishes exactly once', async () => {
    const workflows = registerChaosWorkflows(flow);
    const url = server.url('chaos');
    const workers = await Promise.all([1, 2].map(() => spawnWorker(url, { STEP_MS: '200' })));
    const runIds = await Promise.all(Array.from({ length: 300 }, (_, n) => workflows.pipeline.start({ n, ...(n % 3 === 0 ? { napMs: 500 } : {}) }).then((r) => r.runId)));
    const restarts = 3;
    for (let i = 0; i < restarts; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1500 + Math.random() * 1500));
      server.crash();
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 1200));
      server.start();
    }
    await eventually(async () => (await terminal(flow.pool, runIds)) === runIds.length, 90_000, 200);
    for (const worker of workers) expect(worker.child.exitCode).toBeNull();
    await expectOutputs(flow.pool, runIds);
    const history = await checkHistory(flow.pool, runIds);
    assertHistory(history, { maxReexecutions: restarts * 20, maxEntriesPerStep: 1 + restarts });
    expect(history.outcomes).toEqual({ completed: 300 });
    const stranded = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE status NOT IN ('completed', 'failed', 'cancelled')`);
    expect(stranded.rows[0].n).toBe(0);
    reportFigures('B3 Postgres restarts', {
      runs: 300,
      workers: 2,
      restarts,
      lost: history.lost.length,
      duplicateOutcomes: history.duplicateOutcomes,
      duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions,
      interruptedStepReexecutions: history.reexecutions,
    });
  });
});
