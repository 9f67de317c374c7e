import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { triggerWorkflows } from '../fixtures/trigger-workflows.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('trigp');
  flow = ctx.flow();
  triggerWorkflows(flow);
  await flow.migrate();
  await flow.pool.query('CREATE TABLE test_trigger_runs (run_id text PRIMARY KEY, workflow text, i int)');
  await flow.pool.query('CREATE TABLE test_go (at bigint)');
});
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

describe('event triggers across three processes storing events at once', () => {
  it('exactly one run per stored event per matching workflow (shared event ids stored once), each executed once', async () => {
    const EVENTS = 60;
    const children = Array.from({ length: 3 }, () => spawnFixture('trigger-process.ts', { DATABASE_URL: ctx.db.url, EVENTS: String(EVENTS), IN_FLIGHT: '4' }));
    await Promise.all(children.map((c) => c.waitFor(/^READY/, 30_000)));
    await flow.pool.query('INSERT INTO test_go (at) VALUES ($1)', [Date.now() + 300]);
    const lines = await Promise.all(children.map((c) => c.waitFor(/^DONE/, 90_000)));
    const stored = lines.reduce((sum, line) => sum + Number(line.split(' ')[1]), 0);

    const { rows: events } = await flow.pool.query<{ id: string; name: string; event_id: string; kind: string }>(
      `SELECT id::text, name, event_id, payload->>'kind' AS kind FROM durable_flow_workflow_events ORDER BY id`,
    );
    // Shared ids (even i) once, each process's own (odd i) three times; half of them with a trig.other event.
    const main = events.filter((e) => e.name === 'trig.event');
    expect(main).toHaveLength(EVENTS / 2 + 3 * (EVENTS / 2));
    expect(events).toHaveLength(stored);
    const { rows: runs } = await flow.pool.query<{ workflow_name: string; idempotency_key: string; status: string; run_id: string }>(
      `SELECT workflow_name, idempotency_key, status, run_id FROM durable_flow_workflow_runs WHERE workflow_name <> 'trig-keyed' ORDER BY id`,
    );
    const keysOf = (workflow: string) => runs.filter((r) => r.workflow_name === workflow).map((r) => r.idempotency_key).sort();
    const expected = (list: { id: string }[]) => list.map((e) => `event:${e.id}`).sort();
    expect(keysOf('trig-all')).toEqual(expected(main));
    expect(keysOf('trig-b')).toEqual(expected(main.filter((e) => e.kind === 'b')));
    expect(keysOf('trig-other')).toEqual(expected(events.filter((e) => e.name === 'trig.other')));
    // Every run executed, and every deferred start made (by the children's workers, or this process's,
    // started for the stragglers): exactly one trig-keyed run per event too.
    const worker = flow.worker({ concurrency: 8, pollInterval: 50 });
    await worker.start();
    try {
      await eventually(async () => {
        const { rows } = await flow.pool.query(
          `SELECT (SELECT count(*)::int FROM durable_flow_workflow_runs WHERE status <> 'completed') + (SELECT count(*)::int FROM durable_flow_trigger_starts) AS n`,
        );
        return rows[0].n === 0;
      }, 60_000);
    } finally {
      await worker.stop();
    }
    const { rows: keyed } = await flow.pool.query<{ idempotency_key: string; concurrency_key: string; kind: string }>(
      `SELECT idempotency_key, concurrency_key, input->>'kind' AS kind FROM durable_flow_workflow_runs WHERE workflow_name = 'trig-keyed'`,
    );
    expect(keyed.map((r) => r.idempotency_key).sort()).toEqual(expected(main));
    expect(keyed.every((r) => r.concurrency_key === `trig-keyed:${r.kind}`)).toBe(true);
    const { rows: executed } = await flow.pool.query<{ run_id: string }>('SELECT run_id FROM test_trigger_runs');
    const { rows: all } = await flow.pool.query<{ run_id: string }>('SELECT run_id FROM durable_flow_workflow_runs');
    expect(executed.map((r) => r.run_id).sort()).toEqual(all.map((r) => r.run_id).sort());
    expect(all.length).toBe(runs.length + keyed.length);
  }, 150_000);
});
