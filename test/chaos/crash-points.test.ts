/**
 * Crash everywhere (issue #10): every debug point of the engine, read from its source so that a new
 * point is covered the day it is added, becomes a SIGKILL of a real worker process — the first time
 * a run of each workflow reaches it. A fresh worker process takes over after the lease, and so on until every run
 * has finished. Then the history checker and each run's outcome: nothing lost, no completed step run
 * again, one outcome per run, and every wait got its event (a step that fired the event its next wait
 * needs and died before its result was stored is the lost wake-up this once had).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { CP_PERIOD_MS, CRASH_POINT_GROUPS, CRASH_POINT_INPUTS, createProviderTable, registerCrashPointWorkflows } from '../fixtures/crash-points-workflows.js';
import { build } from 'esbuild';
import { killAllChildren, spawnNode } from '../helpers/child.js';
import { debugPoints } from '../helpers/debug-points.js';
import type { ChildWorker } from '../helpers/child.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory, installHistory, reportFigures } from './history.js';

let ctx: TestContext;
let flow: DurableFlow;
/** The worker fixture bundled once (esbuild, which tsx runs on): a process a crash, so start-up time counts. */
const bundle = path.resolve(import.meta.dirname, '../../test-results/crash-points-worker.mjs');

beforeAll(async () => {
  ctx = await setupDatabase('crashpoints');
  flow = ctx.flow({ leaseTtl: '1 second', maxRecoveries: 100 });
  registerCrashPointWorkflows(flow);
  await installHistory(flow.pool);
  await createProviderTable(flow);
  await build({
    entryPoints: [path.resolve(import.meta.dirname, '../fixtures/crash-points-worker.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile: bundle,
    logLevel: 'silent',
  });
  await flow.pool.query(
    'CREATE TABLE test_crashes (point text NOT NULL, workflow text NOT NULL, run_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (point, workflow))',
  );
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

/** Every run finished, and no event trigger's start left to make (a deferred start is a run to come). */
async function allFinished(): Promise<boolean> {
  const { rows } = await flow.pool.query<{ n: number }>(
    `SELECT (SELECT count(*)::int FROM ${flow.tables.runs} WHERE status NOT IN ('completed', 'failed', 'cancelled'))
          + (SELECT count(*)::int FROM durable_flow_trigger_starts) AS n`,
  );
  return rows[0]!.n === 0;
}

/** The runs of a workflow with their times on the database clock, in creation order. */
async function runsOf(workflow: string) {
  const { rows } = await flow.pool.query<{ run_id: string; input: { n?: number }; idempotency_key: string | null; status: string; created_at: Date; started_at: Date; finished_at: Date }>(
    `SELECT run_id, input, idempotency_key, status, created_at, started_at, coalesce(completed_at, failed_at, cancelled_at) AS finished_at
     FROM ${flow.tables.runs} WHERE workflow_name = $1 ORDER BY id`,
    [workflow],
  );
  return rows;
}

/** Begin times of a throttled workflow (limit 1) at least a period apart, whatever crashed where. */
function beginGaps(runs: { started_at: Date }[]): number[] {
  const begins = runs.map((r) => r.started_at.getTime()).sort((a, b) => a - b);
  return begins.slice(1).map((t, i) => t - begins[i]!);
}

/** The unfinished runs with their steps and waits, for the failure message. */
async function unfinished(): Promise<string> {
  const { rows } = await flow.pool.query(
    `SELECT r.run_id, r.workflow_name, r.status, r.wake_at, r.claim_count,
            (SELECT json_agg(json_build_array(s.name, s.status, w.status, w.timeout_at) ORDER BY s.id)
               FROM ${flow.tables.steps} s LEFT JOIN ${flow.tables.waits} w ON w.workflow_step_id = s.id
              WHERE s.workflow_run_id = r.id) AS steps
       FROM ${flow.tables.runs} r WHERE r.status NOT IN ('completed', 'failed', 'cancelled')`,
  );
  return JSON.stringify(rows, null, 1);
}

/** Lets a worker process run until it crashes itself, or every run is finished (then stops it). */
async function untilCrashOrDone(child: ChildWorker, deadline: number): Promise<void> {
  for (;;) {
    const exited = await Promise.race([child.exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 100))]);
    if (exited) {
      if (process.env.CRASH_POINTS_LOG) console.log(child.output.filter((l) => l.startsWith('CRASH')).join(' | '));
      return;
    }
    if ((await allFinished()) || Date.now() > deadline) {
      child.child.kill('SIGTERM');
      await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      child.child.kill('SIGKILL');
      return;
    }
  }
}

/** Debug points no run passes through: operator tools with fault tests of their own. */
const OFF_A_RUN = ['BULK_BATCH'];

describe('crash everywhere', () => {
  it('a SIGKILL at every debug point of every run loses nothing, runs no completed step again, and every wait gets its event', async () => {
    // Points on a run's life; BULK_BATCH is a bulk operation's (test/chaos/bulk.test.ts kills it there).
    const points = debugPoints().filter((point) => !OFF_A_RUN.includes(point));
    expect(points.length).toBeGreaterThanOrEqual(10);
    // One group at a time, so that each run walks through its points in order; a crash caused by
    // another run would otherwise often cut a run short between two of its own points.
    const runs: Record<string, string> = {};
    let processes = 0;
    const deadline = Date.now() + Number(process.env.CRASH_POINTS_MINUTES ?? 8) * 60_000;
    for (const group of CRASH_POINT_GROUPS) {
      // In order: cp_listen starts before cp_send, whose event it must see whenever that is sent.
      for (const workflow of group) runs[workflow] = await flow.startRun(flow.definitions.get(workflow)!, CRASH_POINT_INPUTS[workflow]);
      while (!(await allFinished())) {
        if (Date.now() > deadline) throw new Error(`Runs still unfinished after ${processes} worker processes: ${await unfinished()}`);
        processes++;
        await untilCrashOrDone(spawnNode([bundle], { DATABASE_URL: ctx.db.url, POINTS: points.join(',') }), deadline);
      }
    }

    const { rows: crashes } = await flow.pool.query<{ point: string; n: number }>('SELECT point, count(*)::int AS n FROM test_crashes GROUP BY point');
    const perPoint = Object.fromEntries(crashes.map((row) => [row.point, row.n]));
    const total = crashes.reduce((sum, row) => sum + row.n, 0);

    const { rows: all } = await flow.pool.query<{ run_id: string }>(`SELECT run_id FROM ${flow.tables.runs}`);
    const history = await checkHistory(flow.pool, all.map((r) => r.run_id));
    assertHistory(history, { maxReexecutions: total * all.length, maxEntriesPerStep: total + 1 });

    const result = async (workflow: string) => (await flow.getRun(runs[workflow]!))!;
    for (const workflow of Object.keys(CRASH_POINT_INPUTS)) expect((await result(workflow)).status, workflow).toBe('completed');
    expect((await result('cp_webhook')).output).toEqual({ k: runs.cp_webhook });
    expect((await result('cp_webhook_retry')).output).toEqual({ k: runs.cp_webhook_retry });
    expect((await result('cp_listen')).output).toEqual({ k: 'told-1' });
    expect((await result('cp_timeout')).output).toBe('timed out');
    expect((await result('cp_invoke')).output).toBe(42);
    expect((await result('cp_cursor')).output).toBe(4);
    expect((await result('cp_many')).output).toEqual([2, 4, 6]);
    expect((await result('cp_long')).output).toBe(1200);
    // The waitAny / waitAll runs: the winning branch, whatever crashed where; no loser fired.
    expect((await result('cp_any_webhook')).output).toEqual({ key: 'answer', value: { k: runs.cp_any_webhook } });
    const anyChild = (await result('cp_any_child')).output as { key: string; value: { status: string; result: number } };
    expect([anyChild.key, anyChild.value.status, anyChild.value.result]).toEqual(['child', 'completed', 10]);
    expect((await result('cp_all')).output).toEqual({ nap: null, told: { k: runs.cp_all } });
    const { rows: waitRows } = await flow.pool.query<{ workflow: string; branch: string; status: string }>(
      `SELECT r.workflow_name AS workflow, w.branch, w.status FROM ${flow.tables.waits} w JOIN ${flow.tables.runs} r ON r.id = w.workflow_run_id
       WHERE w.group_mode IS NOT NULL ORDER BY r.workflow_name, w.id`,
    );
    expect(waitRows.map((w) => `${w.workflow}.${w.branch}:${w.status}`)).toEqual([
      'cp_all.nap:matched', 'cp_all.told:matched',
      'cp_any_child.never:cancelled', 'cp_any_child.child:matched', 'cp_any_child.expired:cancelled',
      'cp_any_webhook.never:cancelled', 'cp_any_webhook.answer:matched', 'cp_any_webhook.expired:cancelled',
      'cp_flow.r0:matched', 'cp_flow.r1:matched', 'cp_flow.r2:matched', 'cp_flow.r3:matched', 'cp_flow.r4:matched',
    ]);
    // Flow control: the throttle held across crashes (limit 1 per period: begins a period apart), a
    // singleton never had two runs in progress, each event made its triggered runs exactly once.
    expect((await result('cp_flow')).output).toEqual(['completed', 'completed', 'completed', 'completed', 'completed']);
    const goEvents = (await flow.pool.query<{ id: string }>(`SELECT id::text AS id FROM ${flow.tables.events} WHERE name = 'cp_go' ORDER BY id`)).rows;
    const eventKeys = goEvents.map((e) => `event:${e.id}`);
    for (const workflow of ['cp_throttled', 'cp_on_throttled']) {
      const gaps = beginGaps(await runsOf(workflow));
      expect(gaps.length, workflow).toBe(workflow === 'cp_throttled' ? 2 : 1);
      for (const gap of gaps) expect(gap, `${workflow} begins ${JSON.stringify(gaps)} ms apart`).toBeGreaterThanOrEqual(CP_PERIOD_MS - 1);
    }
    expect((await runsOf('cp_on')).map((r) => [r.idempotency_key, r.status])).toEqual(eventKeys.map((k) => [k, 'completed']));
    expect((await runsOf('cp_on_throttled')).map((r) => [r.idempotency_key, r.status])).toEqual(eventKeys.map((k) => [k, 'completed']));
    const debounced = await runsOf('cp_on_debounced');
    // Two events a crash apart may fall in one period or two: one or two runs, the last with the last input.
    expect(debounced.length).toBeGreaterThanOrEqual(1);
    expect(debounced.length).toBeLessThanOrEqual(2);
    expect(debounced.at(-1)!.input).toEqual({ n: 2 });
    expect(debounced.every((r) => r.status === 'completed')).toBe(true);
    const singles = await runsOf('cp_single');
    for (const [i, a] of singles.entries()) {
      for (const b of singles.slice(i + 1)) {
        expect(b.created_at.getTime() >= a.finished_at.getTime(), `singleton runs ${a.run_id} and ${b.run_id} overlap`).toBe(true);
      }
    }
    // One event each: the provider answered once, sendEvent stored once.
    const { rows: events } = await flow.pool.query<{ name: string; n: number }>(
      `SELECT name, count(*)::int AS n FROM ${flow.tables.events} GROUP BY name ORDER BY name`,
    );
    expect(events).toEqual([
      { name: 'cp_all_told', n: 1 },
      { name: 'cp_answer', n: 3 },
      { name: 'cp_go', n: 2 },
      { name: 'cp_told', n: 1 },
    ]);
    const { rows: byWorkflow } = await flow.pool.query<{ workflow: string; points: string[] }>(
      'SELECT workflow, array_agg(point ORDER BY at) AS points FROM test_crashes GROUP BY workflow ORDER BY workflow',
    );
    console.log(`[crash points] ${total} crashes over ${processes} processes:\n${byWorkflow.map((r) => `${r.workflow}: ${r.points.join(' ')}`).join('\n')}`);
    // Every point was reached (and crashed at) by some run: the workflows cover the whole engine.
    expect(points.filter((point) => !perPoint[point]), `points never reached: ${JSON.stringify(perPoint)}`).toEqual([]);
    reportFigures('crash points', { points: points.length, crashes: total, processes, runs: all.length, lost: history.lost.length, reexecutions: history.reexecutions });
  }, 600_000);
});
