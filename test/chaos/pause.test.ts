/**
 * flow.pause() against real worker processes: a pause asked of a run whose worker is then SIGKILLed is
 * taken by the execution that claims the run after the lease runs out (it starts no step and leaves the
 * run paused); a paused workflow's runs queue while two worker processes poll, and run once each on
 * resume; cancel, pause and completion racing on one run end in one consistent state.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren } from '../helpers/child.js';
import { crashSetup, crashWorker } from '../helpers/crash.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => ({ ctx, flow } = await crashSetup('pause')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function steps(runId: string): Promise<string[]> {
  const { rows } = await flow.pool.query('SELECT step FROM test_effects WHERE run_id = $1 ORDER BY id', [runId]);
  return rows.map((r: { step: string }) => r.step);
}

describe('pause with real worker processes', () => {
  it('a pause asked while the worker runs a step, then the worker SIGKILLed: the next claim leaves the run paused, running no step', async () => {
    const worker = crashWorker(ctx.db.url, { HANG_SLOW: '1' });
    await worker.waitFor(/^READY/);
    const runId = await flow.startRun(flow.definitions.get('crashy')!, { slowMs: 0 });
    await worker.waitFor(new RegExp(`^ENTER ${runId} slow`));
    expect(await flow.pause(runId, { actor: 'ops' })).toBe(true);
    expect(await flow.getRun(runId)).toMatchObject({ status: 'running', pauseRequested: true });
    worker.child.kill('SIGKILL');
    await worker.exited;

    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      // The lease (2 s) runs out; the local worker claims the run and hands it back paused.
      await eventually(async () => (await flow.getRun(runId))?.status === 'paused', 20_000);
      expect(await flow.getRun(runId)).toMatchObject({ pauseRequested: false, lease: null, wakeAt: null });
      expect(await steps(runId)).toEqual(['first', 'slow']);

      await flow.resume(runId);
      const output = await flow.handle<{ slow: number; last: number }>(runId).result({ timeout: '20 seconds' });
      expect(output).toMatchObject({ slow: process.pid, last: process.pid });
      expect(await steps(runId)).toEqual(['first', 'slow', 'slow', 'last']);
    } finally {
      await local.stop();
    }
  });

  it("a paused workflow's runs queue while two worker processes poll; resumed, each runs exactly once", async () => {
    const workers = [crashWorker(ctx.db.url, { SLOW_MS: '0' }), crashWorker(ctx.db.url, { SLOW_MS: '0' })];
    await Promise.all(workers.map((w) => w.waitFor(/^READY/)));
    expect(await flow.pauseWorkflow('crashy', { reason: 'incident' })).toBe(true);
    const runIds = await Promise.all(Array.from({ length: 30 }, () => flow.startRun(flow.definitions.get('crashy')!, { slowMs: 0 })));
    // Both processes claim meanwhile (their polls set the runs aside); none of the runs starts.
    await eventually(async () => {
      const { rows } = await flow.pool.query(
        `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY($1) AND held_wake_at IS NOT NULL`,
        [runIds],
      );
      return rows[0].n === runIds.length;
    }, 20_000);
    const { rows: entered } = await flow.pool.query('SELECT count(*)::int AS n FROM test_effects WHERE run_id = ANY($1)', [runIds]);
    expect(entered[0].n).toBe(0);

    await flow.resumeWorkflow('crashy');
    await Promise.all(runIds.map((runId) => flow.handle(runId).result({ timeout: '30 seconds' })));
    const { rows } = await flow.pool.query(
      `SELECT run_id, count(*)::int AS n FROM test_effects WHERE run_id = ANY($1) GROUP BY run_id`,
      [runIds],
    );
    expect(rows).toHaveLength(runIds.length);
    for (const row of rows) expect(row.n).toBe(3); // first, slow, last: once each
  });

  it('cancel, pause and completion racing on one run end in one consistent state, every time', async () => {
    const workers = [crashWorker(ctx.db.url, { SLOW_MS: '5' }), crashWorker(ctx.db.url, { SLOW_MS: '5' })];
    await Promise.all(workers.map((w) => w.waitFor(/^READY/)));
    const rounds = 40;
    for (let round = 0; round < rounds; round++) {
      const runId = await flow.startRun(flow.definitions.get('crashy')!, { slowMs: 5 });
      const jitter = () => new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 15)));
      const [cancelled, paused] = await Promise.all([
        jitter().then(() => flow.cancel(runId, { reason: `round ${round}` })),
        jitter().then(() => flow.pause(runId)),
      ]);
      // Settle: a paused run is resumed (it then completes, unless the cancel got it).
      await eventually(async () => {
        const run = await flow.getRun(runId);
        if (run?.status === 'paused') await flow.resume(runId);
        return ['completed', 'cancelled'].includes(run!.status);
      }, 20_000);
      const run = (await flow.getRun(runId))!;
      const entered = await steps(runId);
      const audit = await flow.audit({ runId });
      // The cancel says true exactly when the run ended cancelled; then it ran no step after it.
      expect(run.status === 'cancelled').toBe(cancelled);
      if (run.status === 'completed') expect(entered).toEqual(['first', 'slow', 'last']);
      else expect(new Set(entered).size).toBe(entered.length); // no step entered twice
      // One audit entry per action that took effect, none for one that did not.
      expect(audit.filter((e) => e.action === 'cancel')).toHaveLength(cancelled ? 1 : 0);
      expect(audit.filter((e) => e.action === 'pause')).toHaveLength(paused ? 1 : 0);
    }
  });
});
