/**
 * Whole fleets of worker processes killed under load (reliability.md A4, A5), checked by the
 * history checker: no run lost, no completed step run again, one checkpoint per step, one outcome
 * per run, and interrupted steps run again at most once per fault that hit them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory, reportFigures } from './history.js';
import type { registerChaosWorkflows } from './workflows.js';
import { chaosSetup } from './setup.js';

let ctx: TestContext;
let flow: DurableFlow;
let workflows: ReturnType<typeof registerChaosWorkflows>;

beforeAll(async () => ({ ctx, flow, workflows } = await chaosSetup('fleet')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function spawnWorker(env: Record<string, string> = {}): Promise<ChildWorker> {
  const worker = spawnFixture('chaos-worker.ts', { DATABASE_URL: ctx.db.url, LEASE_TTL_MS: '2000', ...env });
  await worker.waitFor(/^READY/);
  return worker;
}

async function kill(worker: ChildWorker): Promise<void> {
  worker.child.kill('SIGKILL');
  expect((await worker.exited).signal).toBe('SIGKILL');
}

async function outputs(runIds: string[]): Promise<Map<string, unknown>> {
  const { rows } = await flow.pool.query<{ run_id: string; output: unknown }>(
    `SELECT run_id, output FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)`,
    [runIds],
  );
  return new Map(rows.map((r) => [r.run_id, r.output]));
}

async function terminal(runIds: string[]): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1) AND status IN ('completed', 'failed', 'cancelled')`,
    [runIds],
  );
  return rows[0]!.n;
}

describe('worker fleets under SIGKILL', () => {
  it('A4: all three workers killed with 200 runs in flight; restarted, they finish every run exactly once', async () => {
    const env = { CONCURRENCY: '70', STEP_MS: '300' };
    const fleet = await Promise.all([1, 2, 3].map(() => spawnWorker(env)));
    const runIds = await Promise.all(Array.from({ length: 200 }, (_, n) => workflows.pipeline.start({ n }).then((r) => r.runId)));
    // In flight: every worker inside some step body, most runs started.
    await eventually(async () => {
      const { rows } = await flow.pool.query<{ pids: number; runs: number }>(
        `SELECT count(DISTINCT pid)::int AS pids, count(DISTINCT run_id)::int AS runs FROM test_effects WHERE run_id = ANY ($1)`,
        [runIds],
      );
      return rows[0]!.pids === 3 && rows[0]!.runs >= 150;
    }, 30_000);
    const { rows: inFlight } = await flow.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1) AND lease_owner IS NOT NULL`,
      [runIds],
    );
    await Promise.all(fleet.map(kill));
    const doneAtKill = await terminal(runIds);

    await Promise.all([1, 2, 3].map(() => spawnWorker(env)));
    await eventually(async () => (await terminal(runIds)) === runIds.length, 60_000, 100);

    const results = await outputs(runIds);
    runIds.forEach((id, n) => expect(results.get(id)).toBe(n + 3));
    const history = await checkHistory(flow.pool, runIds);
    assertHistory(history, { maxReexecutions: inFlight[0]!.n, maxEntriesPerStep: 2 });
    expect(history.outcomes).toEqual({ completed: 200 });
    reportFigures('A4 kill all workers', {
      runs: 200,
      workers: 3,
      kills: 3,
      inFlightAtKill: inFlight[0]!.n,
      completedBeforeKill: doneAtKill,
      lost: history.lost.length,
      duplicateOutcomes: history.duplicateOutcomes,
      duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions,
      interruptedStepReexecutions: history.reexecutions,
    });
  });

  it('A5: rolling SIGKILLs of random workers for 20 s while 1,000 runs flow', async () => {
    const env = { CONCURRENCY: '10', STEP_MS: '60' };
    const fleet = await Promise.all([1, 2, 3].map(() => spawnWorker(env)));
    const runIds: string[] = [];
    let kills = 0;
    const chaosMs = 20_000;
    const startedAt = Date.now();
    // 1,000 runs started evenly over the chaos window; every third sleeps between its steps.
    const starter = (async () => {
      for (let n = 0; n < 1000; n++) {
        runIds.push((await workflows.pipeline.start({ n, ...(n % 3 === 0 ? { napMs: 200 } : {}) })).runId);
        const due = startedAt + ((n + 1) * chaosMs) / 1000;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
    })();
    while (Date.now() - startedAt < chaosMs) {
      await new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 1500));
      const victim = Math.floor(Math.random() * fleet.length);
      await kill(fleet[victim]!);
      kills++;
      fleet[victim] = await spawnWorker(env);
    }
    await starter;
    await eventually(async () => (await terminal(runIds)) === runIds.length, 90_000, 200);

    const results = await outputs(runIds);
    runIds.forEach((id, n) => expect(results.get(id)).toBe(n + 3));
    const history = await checkHistory(flow.pool, runIds);
    // Each kill interrupts at most CONCURRENCY step bodies; a step meets a kill at most once per kill.
    assertHistory(history, { maxReexecutions: kills * 10, maxEntriesPerStep: 1 + kills });
    expect(history.outcomes).toEqual({ completed: 1000 });
    const stranded = await flow.pool.query(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE lease_owner IS NOT NULL AND lease_expires_at < now() - interval '5 seconds'`,
    );
    expect(stranded.rows[0].n).toBe(0);
    reportFigures('A5 rolling kills', {
      runs: 1000,
      workers: 3,
      seconds: chaosMs / 1000,
      kills,
      lost: history.lost.length,
      duplicateOutcomes: history.duplicateOutcomes,
      duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions,
      interruptedStepReexecutions: history.reexecutions,
    });
  });
});
