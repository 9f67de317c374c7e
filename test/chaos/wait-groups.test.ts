/**
 * waitAny / waitAll across worker processes (issue 15, point 4): two worker processes (one SIGKILLed
 * inside a suspension transaction, one at a step after a wait, each replaced) run 60 parents that race
 * two events, a child run and a sleep, and 20 waitAll runs, while the test sends every branch's event
 * at once, in a random order, from concurrent transactions. Every run must complete long before its
 * sleep (no lost wake-up for any branch), each waitAny with exactly one matched branch that is the one
 * it returned and the others cancelled, each waitAll with both values; and no later event matches a
 * loser.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { registerGroupWorkflows } from '../fixtures/group-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('groupfleet');
  flow = ctx.flow({ leaseTtl: 2000, maxRecoveries: 50 });
  registerGroupWorkflows(flow);
  await flow.migrate();
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const worker = (env: Record<string, string> = {}) => spawnFixture('group-worker.ts', { DATABASE_URL: ctx.db.url, ...env });

function shuffle<T>(items: T[]): T[] {
  const list = [...items];
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

async function unfinished(): Promise<number> {
  const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE status NOT IN ('completed', 'failed', 'cancelled')`);
  return rows[0]!.n;
}

describe('waitAny and waitAll with worker processes crashing', () => {
  it('every run ends with one winner (or every value), losers cancelled, none lost, while events race from concurrent transactions', async () => {
    const N = 60;
    const parents: { k: number; runId: string; child: string }[] = [];
    for (let k = 0; k < N; k++) {
      const child = await flow.startRun(flow.definitions.get('wg_child')!, { k });
      parents.push({ k, child, runId: await flow.startRun(flow.definitions.get('wg_any')!, { k, child }) });
    }
    const alls: { k: number; runId: string }[] = [];
    for (let k = N; k < N + 20; k++) alls.push({ k, runId: await flow.startRun(flow.definitions.get('wg_all')!, { k }) });

    const first = worker({ KILL_AT: 'SUSPEND_IN_TRANSACTION', KILL_AFTER: '15' });
    const second = worker({ KILL_AT: 'STEP_AFTER_BODY', KILL_AFTER: '30' });
    await first.waitFor(/^READY/, 30_000);
    await second.waitFor(/^READY/, 30_000);

    // Every branch's event for every run, in a random order, eight at a time in concurrent transactions:
    // some before the run reached its wait, some while it waits, some racing each other.
    const sends = shuffle([
      ...parents.flatMap(({ k }) => [['wg_a', k], ['wg_b', k], ['wg_go', k]] as const),
      ...alls.flatMap(({ k }) => [['wg_a', k], ['wg_b', k]] as const),
    ]);
    const replacements = [];
    for (let i = 0; i < sends.length; i += 8) {
      await Promise.all(sends.slice(i, i + 8).map(([name, k]) => flow.notify(name, { k, i })));
      if (i % 40 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The killed workers are replaced (the leases of their runs expire and the others take them over).
    for (const killed of [first, second]) {
      const exit = await Promise.race([killed.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000))]);
      expect(exit?.signal).toBe('SIGKILL');
      replacements.push(worker());
    }
    await eventually(async () => (await unfinished()) === 0, 90_000, 200);

    for (const { k, runId, child } of parents) {
      const run = (await flow.getRun(runId))!;
      expect(run.status, `wg_any ${k}`).toBe('completed');
      const output = run.output as { key: string; value: { k?: number; runId?: string; result?: number } };
      // Never the sleep: every other branch ended within seconds.
      expect(['a', 'b', 'child'], `wg_any ${k}`).toContain(output.key);
      if (output.key === 'child') expect([output.value.runId, output.value.result]).toEqual([child, k * 10]);
      else expect(output.value.k).toBe(k);
      const { rows } = await flow.pool.query<{ branch: string; status: string }>(
        `SELECT w.branch, w.status FROM ${flow.tables.waits} w JOIN ${flow.tables.runs} r ON r.id = w.workflow_run_id
         WHERE r.run_id = $1 ORDER BY w.id`,
        [runId],
      );
      expect(rows.map((r) => `${r.branch}:${r.status}`), `wg_any ${k}`).toEqual(
        ['a', 'b', 'child', 'expired'].map((b) => `${b}:${b === output.key ? 'matched' : 'cancelled'}`),
      );
      // The step after the wait saw the same winner (every replay took the same branch).
      const { rows: after } = await flow.pool.query<{ result: string }>(
        `SELECT s.result FROM ${flow.tables.steps} s JOIN ${flow.tables.runs} r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.name = 'after'`,
        [runId],
      );
      expect(after.map((s) => s.result)).toEqual([output.key]);
    }
    for (const { k, runId } of alls) {
      const run = (await flow.getRun(runId))!;
      expect(run.status, `wg_all ${k}`).toBe('completed');
      const output = run.output as { a: { k: number }; b: { k: number } };
      expect([output.a.k, output.b.k]).toEqual([k, k]);
    }
    // Losers stay settled: a second round of events matches no wait at all.
    for (const { k } of parents.slice(0, 10)) {
      expect((await flow.notify('wg_a', { k })).matchedWaits).toBe(0);
      expect((await flow.notify('wg_b', { k })).matchedWaits).toBe(0);
    }
    const { rows: pending } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.waits} WHERE status = 'pending'`);
    expect(pending[0]!.n).toBe(0);
    for (const r of replacements) r.child.kill('SIGTERM');
    await Promise.all(replacements.map((r) => r.exited));
  }, 180_000);
});
