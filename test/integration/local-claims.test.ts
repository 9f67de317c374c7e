import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

// Runs leased to this process's workers by its own statements (direct dispatch of a start, a notify's
// local claim) go through one path, LocalClaims: the slots it reserves are always given back, also
// when the statement leased nothing or failed; what it leased is executed by the worker.
let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('local_claims');
  flow = ctx.flow({ leaseTtl: '5 seconds' });
});
afterAll(() => ctx.cleanup());

const leaseOwner = async (runId: string): Promise<{ owner: string | null; epoch: number; claims: number }> => {
  const { rows } = await flow.pool.query(`SELECT lease_owner, lease_epoch, claim_count FROM durable_flow_workflow_runs WHERE run_id = $1`, [runId]);
  return { owner: rows[0].lease_owner, epoch: Number(rows[0].lease_epoch), claims: rows[0].claim_count };
};

describe('local claims', () => {
  it('starts a run already leased to a local worker, and gives the slot back when a start collides', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held = flow.workflow('lc-held', async ({ step }: WorkflowContext) => step.run('gate', () => gate));
    const other = flow.workflow('lc-other', async () => 'other');
    // A long poll: only direct dispatch can start the run before the test gives up.
    const worker = flow.worker({ concurrency: 1, pollInterval: '1 minute' });
    await worker.start();
    try {
      // Colliding starts leave the only slot free: one with a run id of another workflow's run (an
      // error), one repeating an idempotency key (returns the existing run).
      const existing = await other.start({}, { runId: 'lc-taken', delay: '1 hour' });
      await expect(held.start({}, { runId: existing.runId })).rejects.toMatchObject({ code: 'RUN_ID_CONFLICT' });
      expect(worker.freeSlots).toBe(1);
      const keyed = await other.start({}, { idempotencyKey: 'k', delay: '1 hour' });
      expect((await other.start({}, { idempotencyKey: 'k' })).runId).toBe(keyed.runId);
      expect(worker.freeSlots).toBe(1);

      const run = await held.start({});
      // Leased in the insert itself: epoch 1, one claim, by this worker, running at once.
      expect(await leaseOwner(run.runId)).toEqual({ owner: worker.id, epoch: 1, claims: 1 });
      await eventually(() => worker.active === 1);
      expect(worker.freeSlots).toBe(0);
      // No slot left: the next start is enqueued for a claim, not leased.
      const queued = await held.start({});
      expect((await leaseOwner(queued.runId)).owner).toBeNull();
      release();
      await expect(run.result({ timeout: '10 seconds' })).resolves.toBeUndefined();
    } finally {
      await worker.stop();
    }
  });

  it('leases the runs a notify wakes to a local worker, and frees the unused slots when the notify fails', async () => {
    const waiter = flow.workflow('lc-waiter', async ({ step }: WorkflowContext) => step.waitForEvent('go', { event: 'lc-go', timeout: '1 hour' }));
    const runs = await Promise.all([1, 2, 3].map(() => waiter.start({})));
    const drainer = flow.worker({ concurrency: 5, pollInterval: 50 });
    await drainer.start();
    await eventually(async () => (await Promise.all(runs.map((r) => flow.getRun(r.runId)))).every((r) => r!.status === 'waiting'));
    await drainer.stop();

    const worker = flow.worker({ concurrency: 5, pollInterval: '1 minute' });
    await worker.start();
    try {
      await flow.notify('lc-other', { n: 1 }, { id: 'lc-event' });
      // The same id with another payload is refused: nothing stored, no slot kept.
      await expect(flow.notify('lc-other', { n: 2 }, { id: 'lc-event' })).rejects.toMatchObject({ code: 'EVENT_ID_CONFLICT' });
      expect(worker.freeSlots).toBe(5);
      const event = await flow.notify('lc-go', { ok: true });
      expect(event.matchedWaits).toBe(3);
      // Claimed inside the notify's transaction for this worker (no poll could have come yet).
      for (const run of runs) expect((await leaseOwner(run.runId)).owner === worker.id || (await flow.getRun(run.runId))!.status === 'completed').toBe(true);
      for (const run of runs) await expect(run.result({ timeout: '10 seconds' })).resolves.toEqual({ ok: true });
      expect(worker.stats.claimed).toBe(3);
      await eventually(() => worker.freeSlots === 5);
    } finally {
      await worker.stop();
    }
  });

  it('leases as many woken runs as the worker has free slots, the lowest ids first, and makes the others due', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const waiter = flow.workflow('lc-split', async ({ step }: WorkflowContext) => {
      const payload = await step.waitForEvent('go', { event: 'lc-split-go', timeout: '1 hour' });
      await step.run('gate', () => gate);
      return payload;
    });
    const runs: { runId: string; result: () => Promise<unknown> }[] = [];
    for (let i = 0; i < 4; i++) runs.push(await waiter.start({}));
    const drainer = flow.worker({ concurrency: 5, pollInterval: 50 });
    await drainer.start();
    await eventually(async () => (await Promise.all(runs.map((r) => flow.getRun(r.runId)))).every((r) => r!.status === 'waiting'));
    await drainer.stop();

    const worker = flow.worker({ concurrency: 2, pollInterval: '1 minute' });
    await worker.start();
    try {
      expect((await flow.notify('lc-split-go', { n: 4 })).matchedWaits).toBe(4);
      // The two oldest are leased in the notify's transaction (their gate step holds both slots); the two
      // others are due for any worker's claim, leased to none, their wait's result stored all the same.
      expect(await Promise.all(runs.slice(0, 2).map((r) => leaseOwner(r.runId)))).toEqual([
        { owner: worker.id, epoch: 2, claims: 1 },
        { owner: worker.id, epoch: 2, claims: 1 },
      ]);
      const { rows } = await flow.pool.query(
        `SELECT r.status, r.lease_owner, r.wake_at IS NOT NULL AS due, s.status AS wait FROM durable_flow_workflow_runs r
         JOIN durable_flow_workflow_steps s ON s.workflow_run_id = r.id AND s.name = 'go' WHERE r.run_id = ANY($1) ORDER BY r.id`,
        [runs.slice(2).map((r) => r.runId)],
      );
      expect(rows).toEqual([
        { status: 'ready', lease_owner: null, due: true, wait: 'succeeded' },
        { status: 'ready', lease_owner: null, due: true, wait: 'succeeded' },
      ]);
      release();
      for (const run of runs) await expect(run.result()).resolves.toEqual({ n: 4 });
    } finally {
      release();
      await worker.stop();
    }
  });
});
