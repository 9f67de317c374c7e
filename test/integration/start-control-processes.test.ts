import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('startctlp');
  flow = ctx.flow();
  await flow.migrate();
  await flow.pool.query('CREATE TABLE test_singleton (run_id text PRIMARY KEY, pid int, started_at timestamptz, ended_at timestamptz)');
  await flow.pool.query('CREATE TABLE test_go (mode text PRIMARY KEY, at bigint)');
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

async function run(mode: string, env: Record<string, string>, whileRunning?: () => Promise<void>): Promise<{ children: ChildWorker[]; starts: number }> {
  // Every process waits for the same instant, written once they are all up: they really start together.
  const children = Array.from({ length: 3 }, () => spawnFixture('start-control-process.ts', { DATABASE_URL: ctx.db.url, MODE: mode, ...env }));
  await Promise.all(children.map((c) => c.waitFor(/^READY/, 30_000)));
  await flow.pool.query('INSERT INTO test_go (mode, at) VALUES ($1, $2)', [mode, Date.now() + 300]);
  const done = Promise.all(children.map((c) => c.waitFor(/^DONE/, 60_000)));
  let sampling = true;
  const sampler = (async () => {
    while (sampling && whileRunning) await whileRunning();
  })();
  const lines = await done;
  sampling = false;
  await sampler;
  return { children, starts: lines.reduce((sum, line) => sum + Number(line.split(' ')[1]), 0) };
}

describe('start control across three processes starting at once', () => {
  it('rateLimit: in no window of the period more than `limit` accepted starts of a key, over many periods; every other start is RATE_LIMITED', async () => {
    const { starts } = await run('rate', { DURATION_MS: '3000', IN_FLIGHT: '4' });
    const { rows } = await flow.pool.query(
      `SELECT run_id, rate_limit_key AS key, admitted_at, status, error->>'code' AS code, input->>'pid' AS pid
       FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-rate' ORDER BY admitted_at`,
    );
    expect(rows).toHaveLength(starts);
    const refused = rows.filter((r) => r.admitted_at === null);
    expect(refused.every((r) => r.status === 'cancelled' && r.code === 'RATE_LIMITED')).toBe(true);
    for (const key of ['a', 'b']) {
      const accepted = rows.filter((r) => r.admitted_at !== null && r.key === key);
      expect(accepted.every((r) => r.code === null)).toBe(true);
      // The sliding window: for each accepted start, the accepted starts of its key in the period ending at it.
      const times = accepted.map((r) => (r.admitted_at as Date).getTime());
      let worst = 0;
      for (let i = 0; i < times.length; i++) {
        let inWindow = 0;
        for (let j = i; j >= 0 && times[j]! > times[i]! - 500; j--) inWindow++;
        worst = Math.max(worst, inWindow);
      }
      // (Times in ms from microseconds: a start exactly 500 ms after another is outside the window, as in SQL.)
      expect(worst, `key ${key}`).toBe(3);
      // Many periods, and the limit reached in most of them: 3 s is 6 periods of 3 per key.
      expect(accepted.length).toBeGreaterThanOrEqual(12);
      expect(accepted.length).toBeLessThanOrEqual(3 * 7);
      expect(new Set(accepted.map((r) => r.pid)).size).toBeGreaterThan(1);
    }
    expect(refused.length).toBeGreaterThan(rows.length / 2);
  }, 90_000);

  it("singleton 'skip': never two runs of the key not finished, never two executing; each new run only after the last finished", async () => {
    let samples = 0;
    let peak = 0;
    const { starts } = await run('skip', { DURATION_MS: '3000', IN_FLIGHT: '3' }, async () => {
      const { rows } = await flow.pool.query(
        `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-skip' AND status NOT IN ('completed', 'failed', 'cancelled')`,
      );
      peak = Math.max(peak, rows[0].n);
      samples++;
    });
    expect(samples).toBeGreaterThan(20);
    expect(peak).toBe(1);
    const { rows: runs } = await flow.pool.query(`SELECT status FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-skip'`);
    // Many runs over the 3 s (each takes ~30 ms), many more starts than runs, at most one unfinished.
    expect(runs.length).toBeGreaterThan(5);
    expect(starts).toBeGreaterThan(runs.length);
    expect(runs.filter((r) => r.status !== 'completed').length).toBeLessThanOrEqual(1);
    const { rows: overlaps } = await flow.pool.query(
      `SELECT count(*)::int AS n FROM test_singleton a JOIN test_singleton b ON a.run_id < b.run_id
       AND a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')`,
    );
    expect(overlaps[0].n).toBe(0);
    const { rows: pids } = await flow.pool.query('SELECT count(DISTINCT pid)::int AS n FROM test_singleton');
    expect(pids[0].n).toBeGreaterThan(1);
  }, 90_000);

  it("singleton 'cancel': every start cancels the run before it; exactly one run is left", async () => {
    let peak = 0;
    const { starts } = await run('cancel', { DURATION_MS: '2000', IN_FLIGHT: '3' }, async () => {
      const { rows } = await flow.pool.query(
        `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-cancel' AND status NOT IN ('completed', 'failed', 'cancelled')`,
      );
      peak = Math.max(peak, rows[0].n);
    });
    expect(peak).toBe(1);
    const { rows } = await flow.pool.query(`SELECT status, count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-cancel' GROUP BY status`);
    const by = Object.fromEntries(rows.map((r) => [r.status, r.n]));
    expect(by).toEqual({ enqueued: 1, cancelled: starts - 1 });
    expect(starts).toBeGreaterThan(20);
  }, 90_000);

  it('debounce: one run per burst, the same id answered to every start of the burst in every process', async () => {
    const bursts = 5;
    const { children } = await run('debounce', { BURSTS: String(bursts), BURST_MS: '300', EVERY_MS: '1600' });
    const byBurst = new Map<number, Set<string>>();
    let starts = 0;
    const perProcess = children.map(() => new Set<number>());
    children.forEach((child, p) => {
      for (const line of child.output.filter((l) => l.startsWith('BURST '))) {
        const [, i, runId] = line.split(' ');
        if (!byBurst.has(Number(i))) byBurst.set(Number(i), new Set());
        byBurst.get(Number(i))!.add(runId!);
        perProcess[p]!.add(Number(i));
        starts++;
      }
    });
    expect(byBurst.size).toBe(bursts);
    for (const ids of byBurst.values()) expect(ids.size).toBe(1);
    const ids = [...byBurst.values()].map((set) => [...set][0]);
    expect(new Set(ids).size).toBe(bursts);
    // Every process took part in every burst.
    expect(perProcess.every((set) => set.size === bursts)).toBe(true);
    const { rows } = await flow.pool.query(`SELECT run_id FROM durable_flow_workflow_runs WHERE workflow_name = 'sc-debounce'`);
    expect(rows.map((r) => r.run_id).sort()).toEqual([...ids].sort());
    // At least one start of every process in every burst (checked above): how many more depends on the
    // machine's load, so it is not asserted (a CI run under load once made 43 starts, not the 45 hoped for).
    expect(starts).toBeGreaterThanOrEqual(bursts * children.length);
  }, 90_000);
});
