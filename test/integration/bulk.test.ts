import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { setDebugPoint } from '../../lib/debug-point.js';
import { setBulkTiming } from '../../lib/operator/bulk-runner.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('bulk');
  flow = ctx.flow();
  await flow.migrate();
});
afterEach(() => {
  setDebugPoint('BULK_BATCH', undefined);
  setBulkTiming(undefined);
});
afterAll(async () => {
  await ctx.cleanup();
});

async function rows<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await flow.pool.query(sql, params)).rows as T[];
}

/** Statuses of the runs of `workflow`, by run id. */
async function statuses(workflow: string): Promise<Record<string, string>> {
  const found = await rows<{ run_id: string; status: string }>(
    `SELECT run_id, status FROM durable_flow_workflow_runs WHERE workflow_name = $1`,
    [workflow],
  );
  return Object.fromEntries(found.map((r) => [r.run_id, r.status]));
}

async function finished(f: DurableFlow, operationId: string) {
  return eventually(async () => {
    const op = await f.operation(operationId);
    return op.status === 'running' ? null : op;
  }, 30_000);
}

/** Audit entries of `operationId` that name a run, as run id → count. */
async function auditedRuns(operationId: string): Promise<Map<string, number>> {
  const found = await rows<{ run_id: string; n: number }>(
    `SELECT run_id, count(*)::int AS n FROM durable_flow_audit WHERE operation_id = $1 AND run_id IS NOT NULL GROUP BY run_id`,
    [operationId],
  );
  return new Map(found.map((r) => [r.run_id, r.n]));
}

function codeError(code: string): Error {
  return Object.assign(new Error(`failed with ${code}`), { code });
}

describe('flow.bulk cancel', () => {
  it('cancels exactly the runs the filter selects, in batches; a run created after the bulk is untouched; one audit entry per run', async () => {
    const harness = createTestHarness(flow);
    const sleeper = flow.workflow('bk-sleep', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    const other = flow.workflow('bk-other', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    const quick = flow.workflow('bk-quick', async () => 1);
    const selected: string[] = [];
    for (let i = 0; i < 1100; i++) selected.push((await sleeper.start({ i })).runId);
    const otherRun = (await other.start({})).runId;
    await harness.drain();
    // Another flavour of "not selected": finished already, so cancel does not apply.
    const done = (await sleeper.start({ done: true }, { delay: '1 year' })).runId;
    await rows(
      `UPDATE durable_flow_workflow_runs SET status = 'completed', wake_at = NULL, completed_at = now() WHERE run_id = $1`,
      [done],
    );
    // Hold the operation after its first batch until a newer run of the workflow exists.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let batches = 0;
    setDebugPoint('BULK_BATCH', async () => {
      if (++batches === 1) await held;
    });
    const { operationId, total } = await flow.bulk(
      'cancel',
      { workflow: 'bk-sleep' },
      { actor: 'ops@example.com', reason: 'bad deploy' },
    );
    expect(operationId).toMatch(/^op_[0-9a-f-]{36}$/);
    expect(total).toBe(1100);
    await eventually(() => batches === 1);
    const later = (await sleeper.start({ later: true })).runId;
    release();
    const op = await finished(flow, operationId);
    expect(op).toMatchObject({
      action: 'cancel',
      status: 'completed',
      total: 1100,
      done: 1100,
      failed: 0,
      actor: 'ops@example.com',
      reason: 'bad deploy',
      error: null,
    });
    expect(op.filter).toEqual({ workflow: 'bk-sleep' });
    expect(op.completedAt).toBeInstanceOf(Date);
    expect(batches).toBe(3);
    const after = await statuses('bk-sleep');
    for (const runId of selected) expect(after[runId]).toBe('cancelled');
    expect(after[done]).toBe('completed');
    expect(after[later]).not.toBe('cancelled');
    expect((await statuses('bk-other'))[otherRun]).toBe('sleeping');
    const cancelled = await flow.getRun(selected[0]!);
    expect(cancelled?.error?.message).toBe('bad deploy');
    // One entry for the operation, one per run it cancelled, each naming it.
    const audited = await auditedRuns(operationId);
    expect(audited.size).toBe(1100);
    expect([...audited.values()].every((n) => n === 1)).toBe(true);
    expect(selected.every((runId) => audited.has(runId))).toBe(true);
    const [bulkEntry] = await flow.audit({ operationId, action: 'bulk' });
    expect(bulkEntry).toMatchObject({
      actor: 'ops@example.com',
      reason: 'bad deploy',
      runId: null,
      details: { bulkAction: 'cancel', filter: { workflow: 'bk-sleep' }, total: 1100 },
    });
    const [runEntry] = await flow.audit({ runId: selected[5]! });
    expect(runEntry).toMatchObject({ action: 'cancel', operationId, actor: 'ops@example.com', workflow: 'bk-sleep' });
    await quick.start(1);
  });

  it('selects by status and by a created range (after inclusive, before exclusive)', async () => {
    const harness = createTestHarness(flow);
    const w = flow.workflow('bk-range', async ({ step }: WorkflowContext) => step.waitForEvent('never', { match: { k: 1 } }));
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await w.start({ i })).runId);
    await harness.drain();
    const queued = (await w.start({ queued: true }, { delay: '1 year' })).runId;
    // Creation times one day apart: day 0 … day 5; the queued run on day 2.
    for (let i = 0; i < 6; i++)
      await rows(
        `UPDATE durable_flow_workflow_runs SET created_at = '2026-01-01'::timestamptz + $2 * interval '1 day' WHERE run_id = $1`,
        [ids[i], i],
      );
    await rows(`UPDATE durable_flow_workflow_runs SET created_at = '2026-01-03' WHERE run_id = $1`, [queued]);
    const byStatus = await flow.bulk('cancel', { workflow: 'bk-range', status: 'enqueued' });
    expect(byStatus.total).toBe(1);
    await finished(flow, byStatus.operationId);
    expect((await statuses('bk-range'))[queued]).toBe('cancelled');
    const { operationId, total } = await flow.bulk('cancel', {
      workflow: 'bk-range',
      createdAfter: '2026-01-02T00:00:00Z',
      createdBefore: new Date('2026-01-05T00:00:00Z'),
    });
    expect(total).toBe(3);
    expect(await finished(flow, operationId)).toMatchObject({
      done: 3,
      total: 3,
      filter: { createdAfter: '2026-01-02T00:00:00.000Z', createdBefore: '2026-01-05T00:00:00.000Z' },
    });
    const after = await statuses('bk-range');
    expect(ids.map((id) => after[id])).toEqual(['waiting', 'cancelled', 'cancelled', 'cancelled', 'waiting', 'waiting']);
    expect((await auditedRuns(operationId)).size).toBe(3);
  });
});

describe('flow.bulk retry and replay', () => {
  it('retries the failed runs with an error code; they complete with a worker, steps done before are not run again', async () => {
    const harness = createTestHarness(flow);
    let broken = true;
    let before = 0;
    const w = flow.workflow('bk-retry', async ({ step, input }: WorkflowContext<{ code: string }>) => {
      await step.run('before', () => ++before);
      return step.run('charge', { retries: 0 }, () => {
        if (broken) throw codeError(input.code);
        return 'ok';
      });
    });
    const payment: string[] = [];
    const other: string[] = [];
    for (let i = 0; i < 30; i++) payment.push((await w.start({ code: 'E_PAYMENT' })).runId);
    for (let i = 0; i < 5; i++) other.push((await w.start({ code: 'E_OTHER' })).runId);
    await harness.drain();
    expect(Object.values(await statuses('bk-retry')).every((s) => s === 'failed')).toBe(true);
    expect((await flow.getRun(payment[0]!))?.error).toMatchObject({ code: 'E_PAYMENT', step: 'charge' });
    expect(before).toBe(35);
    broken = false;
    const { operationId, total } = await flow.bulk('retry', { workflow: 'bk-retry', errorCode: 'E_PAYMENT' }, { actor: 'me' });
    expect(total).toBe(30);
    expect(await finished(flow, operationId)).toMatchObject({ status: 'completed', done: 30, failed: 0 });
    await harness.drain();
    const after = await statuses('bk-retry');
    for (const runId of payment) {
      expect(after[runId]).toBe('completed');
      expect((await flow.getRun(runId))?.output).toBe('ok');
    }
    for (const runId of other) expect(after[runId]).toBe('failed');
    expect(before).toBe(35);
    const audited = await auditedRuns(operationId);
    expect(audited.size).toBe(30);
    const [entry] = await flow.audit({ runId: payment[3]!, action: 'retry' });
    expect(entry).toMatchObject({ operationId, stepName: 'charge', actor: 'me' });
  });

  it('replays every selected run once: one new run each, with its input', async () => {
    const harness = createTestHarness(flow);
    const w = flow.workflow('bk-replay', async ({ input }: WorkflowContext<{ n: number }>) => input.n * 2);
    const originals: string[] = [];
    for (let n = 0; n < 12; n++) originals.push((await w.start({ n })).runId);
    await harness.drain();
    const { operationId, total } = await flow.bulk('replay', { workflow: 'bk-replay', status: 'completed' });
    expect(total).toBe(12);
    expect(await finished(flow, operationId)).toMatchObject({ status: 'completed', done: 12, failed: 0 });
    const entries = await flow.audit({ operationId, action: 'replay' });
    expect(entries.map((e) => e.runId).sort()).toEqual([...originals].sort());
    const newIds = entries.map((e) => e.details.newRunId as string);
    expect(new Set(newIds).size).toBe(12);
    expect(newIds.some((id) => originals.includes(id))).toBe(false);
    await harness.drain();
    const outputs = await rows<{ n: number; output: number }>(
      `SELECT (input->>'n')::int AS n, output::int AS output FROM durable_flow_workflow_runs WHERE run_id = ANY($1) ORDER BY 1`,
      [newIds],
    );
    expect(outputs).toEqual(Array.from({ length: 12 }, (_, n) => ({ n, output: n * 2 })));
    expect(Object.keys(await statuses('bk-replay'))).toHaveLength(24);
  });
});

describe('flow.bulk failing', () => {
  it('a batch that keeps failing is retried a few times, then the operation is failed with its error and nothing of the batch is kept', async () => {
    const harness = createTestHarness(flow);
    const w = flow.workflow('bk-unlucky', async () => 'done');
    for (let i = 0; i < 3; i++) await w.start({ i });
    await harness.drain();
    // Every new run of the workflow is refused by the database: each replay batch rolls back.
    await rows(`CREATE FUNCTION test_refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.workflow_name = 'bk-unlucky' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER test_refuse_run BEFORE INSERT ON durable_flow_workflow_runs FOR EACH ROW EXECUTE FUNCTION test_refuse_run()`);
    try {
      const { operationId, total } = await flow.bulk('replay', { workflow: 'bk-unlucky' });
      expect(total).toBe(3);
      const op = await finished(flow, operationId);
      expect(op).toMatchObject({ status: 'failed', done: 0, total: 3 });
      expect(op.error?.message).toMatch(/refused by the test/);
      expect(op.completedAt).toBeInstanceOf(Date);
      expect(await auditedRuns(operationId)).toEqual(new Map());
      expect(Object.keys(await statuses('bk-unlucky'))).toHaveLength(3);
    } finally {
      await rows(`DROP TRIGGER test_refuse_run ON durable_flow_workflow_runs; DROP FUNCTION test_refuse_run()`);
    }
  });
});

describe('flow.bulk across processes', () => {
  it('a closed flow gives its operation back after the batch in flight; a running worker elsewhere finishes it, each run once', async () => {
    setBulkTiming({ leaseMs: 60_000, pollMs: 200, firstMs: 50 });
    const starter = ctx.flow();
    const finisher = ctx.flow();
    const w = starter.workflow('bk-handover', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    finisher.workflow('bk-handover', async ({ step }: WorkflowContext) => step.sleep('nap', '1 year'));
    for (let i = 0; i < 1200; i++) await w.start({ i }, { delay: '1 year' });
    let closing: Promise<void> | undefined;
    setDebugPoint('BULK_BATCH', () => {
      closing ??= starter.close();
    });
    const { operationId, total } = await starter.bulk('cancel', { workflow: 'bk-handover' });
    expect(total).toBe(1200);
    await eventually(() => closing !== undefined);
    await closing;
    // Stopped after its first or second batch (the stop lands while the runner goes on to the next).
    const half = await finisher.operation(operationId);
    expect(half.status).toBe('running');
    expect([500, 1000]).toContain(half.done);
    const [lease] = await rows<{ lease_owner: string | null }>(`SELECT lease_owner FROM durable_flow_operations WHERE id = $1`, [
      operationId,
    ]);
    expect(lease!.lease_owner).toBeNull();
    const worker = finisher.worker();
    await worker.start();
    try {
      expect(await finished(finisher, operationId)).toMatchObject({ status: 'completed', done: 1200, total: 1200, failed: 0 });
    } finally {
      await worker.stop();
    }
    const audited = await auditedRuns(operationId);
    expect(audited.size).toBe(1200);
    expect([...audited.values()].every((n) => n === 1)).toBe(true);
    expect(Object.values(await statuses('bk-handover')).every((s) => s === 'cancelled')).toBe(true);
  });
});

describe('flow.bulk arguments', () => {
  it('refuses a bad action or filter, naming the key, and writes nothing', async () => {
    const refused = async (action: unknown, filter: unknown, pattern: RegExp) => {
      const error = await flow.bulk(action as 'cancel', filter as object).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DurableFlowError);
      expect((error as DurableFlowError).code).toBe('INVALID_OPTION');
      expect((error as Error).message).toMatch(pattern);
    };
    const before = await rows<{ n: number }>(`SELECT count(*)::int AS n FROM durable_flow_operations`);
    await refused('delete', {}, /`action`.*"delete"/);
    await refused('cancel', { workflo: 'x' }, /`workflo`/);
    await refused('cancel', null, /`filter`/);
    await refused('cancel', { status: 'done' }, /`filter\.status`.*"done"/);
    await refused('retry', { workflow: '' }, /`filter\.workflow`/);
    await refused('retry', { errorCode: 7 }, /`filter\.errorCode`/);
    await refused('replay', { createdAfter: 'yesterday' }, /`filter\.createdAfter`/);
    await refused('replay', { createdBefore: {} }, /`filter\.createdBefore`/);
    await expect(flow.bulk('cancel', {}, { actor: '' })).rejects.toThrow(/`actor`/);
    expect(await rows(`SELECT count(*)::int AS n FROM durable_flow_operations`)).toEqual(before);
    await expect(flow.operation('op_nope')).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
  });
});
