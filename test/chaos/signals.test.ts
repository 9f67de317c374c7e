/**
 * Signals under crashes (issue 15, point 5): worker processes SIGKILLed inside and just after the
 * suspension transaction that consumes a signal, and stopped gracefully, while signals keep coming.
 * No signal may be lost or consumed twice, and the waits take them in the order they were stored.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { registerSignalWorkflows } from '../fixtures/signal-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('signalcrash');
  flow = ctx.flow({ leaseTtl: 2000, maxRecoveries: 20 });
  registerSignalWorkflows(flow);
  await flow.migrate();
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const child = (env: Record<string, string> = {}) => spawnFixture('signal-worker.ts', { DATABASE_URL: ctx.db.url, ...env });

async function consumed(runId: string): Promise<{ payload: { i: number }; step: string | null }[]> {
  const { rows } = await flow.pool.query(
    `SELECT g.payload, s.name AS step FROM ${flow.tables.signals} g JOIN ${flow.tables.runs} r ON r.id = g.workflow_run_id
     LEFT JOIN ${flow.tables.steps} s ON s.id = g.consumed_by_step_id WHERE r.run_id = $1 ORDER BY g.id`,
    [runId],
  );
  return rows;
}

describe('signals and crashing workers (real child processes)', () => {
  it('a worker SIGKILLed inside or right after the consuming transaction, or stopped, loses and doubles no signal', async () => {
    const N = 24;
    const runId = await flow.startRun(flow.definitions.get('signal_loop')!, { n: N });
    let sent = 0;
    const send = async (count: number) => {
      for (let k = 0; k < count; k++) expect(await flow.signal(runId, 'tick', { i: sent++ })).toBe(true);
    };
    await send(4);
    // Killed in the suspension transaction, after the run's lock, before its signal is taken: rolled back.
    const a = child({ KILL_AT: 'SUSPEND_IN_TRANSACTION', KILL_AFTER: '3' });
    await send(4);
    expect((await a.exited).signal).toBe('SIGKILL');
    // Killed right after a signal's consumption committed, before the execution went on.
    const b = child({ KILL_AT: 'SUSPEND_AFTER_COMMIT', KILL_AFTER: '4' });
    await send(4);
    expect((await b.exited).signal).toBe('SIGKILL');
    // Killed while the step after a wait runs.
    const c = child({ KILL_AT: 'STEP_AFTER_BODY', KILL_AFTER: '3' });
    await send(4);
    expect((await c.exited).signal).toBe('SIGKILL');
    // Stopped gracefully while signals come in.
    const d = child();
    await d.waitFor(/^READY/);
    await send(4);
    await d.waitFor(new RegExp(`^TOOK ${runId} \\d+`));
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    await send(N - sent);
    const local = flow.worker({ pollInterval: 50 });
    await local.start();
    try {
      const result = (await flow.handle(runId).result({ timeout: '60 seconds' })) as { i: number }[];
      expect(result).toEqual(Array.from({ length: N }, (_, i) => ({ i })));
      expect((await consumed(runId)).map((g) => [g.payload.i, g.step])).toEqual(Array.from({ length: N }, (_, i) => [i, `take-${i}`]));
    } finally {
      await local.stop();
    }
  });
});
