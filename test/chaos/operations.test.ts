/**
 * Operations (reliability.md H1, H3, H4): migrations while workers run, cancelling a run mid-step from
 * another process, and a stuck run holding the only slot of a concurrency-1 workflow; with real worker
 * processes (test/fixtures/ops-worker.ts, migrate-process.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import { loadMigrations } from '../../lib/db/migrator.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { createEmptyDatabase } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory, installHistory, reportFigures } from './history.js';
import { registerOpsWorkflows } from './ops-workflows.js';
import { holdBarrier, opsSetup, opsWorker } from './setup.js';

let ctx: TestContext;
let flow: DurableFlow;
let workflows: ReturnType<typeof registerOpsWorkflows>;

beforeAll(async () => ({ ctx, flow, workflows } = await opsSetup('ops')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const worker = (env: Record<string, string> = {}) => opsWorker(ctx.db.url, { LOG: '1', ...env });
const entered = (w: ChildWorker, runId: string, step: string) => w.output.filter((line) => line.startsWith(`ENTER ${runId} ${step} `)).length;
const lineIndex = (w: ChildWorker, pattern: RegExp) => w.output.findIndex((line) => pattern.test(line));
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function runRows(runIds: string[]) {
  const { rows } = await flow.pool.query(
    `SELECT run_id, status, attempts, lease_owner, wake_at FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)`,
    [runIds],
  );
  return rows as { run_id: string; status: string; attempts: number; lease_owner: string | null; wake_at: Date | null }[];
}

/** No worker holds these runs and none has finished: they wait (a claim under way at a schema check hands its run back). */
async function notTaken(runIds: string[]): Promise<boolean> {
  return (await runRows(runIds)).every((r) => r.lease_owner === null && ['enqueued', 'ready'].includes(r.status));
}

describe('H1: migrations while workers run', () => {
  const newer = /migrated by a newer durable-flow release \(migration 9001; this release knows up to/;
  const again = /matches this release again/;
  const newerMigration = () => flow.pool.query(`INSERT INTO durable_flow_migrations (version, name) VALUES (9001, '9001_from_a_newer_release')`);
  const undoNewerMigration = () => flow.pool.query(`DELETE FROM durable_flow_migrations WHERE version = 9001`);
  afterEach(undoNewerMigration);

  it('workers of an older release stop claiming when a newer release migrates, hand their runs back, and resume if it is undone', async () => {
    const workers = [worker(), worker()];
    await Promise.all(workers.map((w) => w.waitFor(/^READY/)));
    const before = await Promise.all(Array.from({ length: 8 }, () => workflows.long.start({ ms: 1500 }).then((r) => r.runId)));
    await eventually(() => before.every((runId) => workers.some((w) => entered(w, runId, 'long') > 0)), 30_000);

    // A newer release's migrate(): its migration recorded, and its NOTIFY.
    await newerMigration();
    await flow.pool.query(`SELECT pg_notify('durable_flow_migrations', '9001')`);
    await Promise.all(workers.map((w) => w.waitFor(newer, 10_000)));
    // The runs they held are handed back once their running steps end; none is held any more.
    await eventually(async () => (await runRows(before)).every((r) => r.lease_owner === null && r.status !== 'running'), 30_000);
    const after = await Promise.all(Array.from({ length: 4 }, () => workflows.quick.start({}).then((r) => r.runId)));
    const entriesAtStop = workers.map((w) => w.output.filter((line) => line.startsWith('ENTER')).length);
    await pause(3000); // 30 polls and 3 schema checks: time for any claim they would make
    expect(workers.map((w) => w.output.filter((line) => line.startsWith('ENTER')).length)).toEqual(entriesAtStop);
    expect(await notTaken(after)).toBe(true);
    expect(await notTaken(before)).toBe(true);

    // Rolled back (the newer release's migration gone): they claim again and every run completes once.
    await undoNewerMigration();
    await flow.pool.query(`SELECT pg_notify('durable_flow_migrations', '1')`);
    await Promise.all(workers.map((w) => w.waitFor(again, 10_000)));
    await Promise.all([...before, ...after].map((runId) => flow.handle(runId).result({ timeout: '60 seconds' })));
    const history = await checkHistory(flow.pool, [...before, ...after]);
    assertHistory(history, { maxReexecutions: 0, maxEntriesPerStep: 1 });
    reportFigures('H1 migration under running workers', {
      runs: before.length + after.length, workers: 2, faults: `a newer release's migration with ${before.length} runs in flight, then undone`,
      lost: history.lost.length, duplicateOutcomes: history.duplicateOutcomes, duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions, interruptedStepReexecutions: history.reexecutions,
    });
  });

  it('notices a migration it was not told about at its low-rate check, within ten polls', async () => {
    const w = worker();
    await w.waitFor(/^READY/);
    await newerMigration();
    try {
      await w.waitFor(newer, 10_000);
      const run = await workflows.quick.start({});
      await pause(1500);
      expect(entered(w, run.runId, 'only')).toBe(0);
      expect(await notTaken([run.runId])).toBe(true);
    } finally {
      await undoNewerMigration();
    }
    await w.waitFor(again, 10_000);
  });

  it('a worker started before migrate() waits for it; ten processes migrating at once apply each migration once', async () => {
    const db = await createEmptyDatabase('opsmig');
    const early = opsWorker(db.url, { LOG: '1' });
    const gate = await holdBarrier(db.url, 4242);
    try {
      await early.waitFor(/lacks durable-flow migrations? 001_initial(, [\w, ]+)?, which this release needs.*call await flow\.migrate\(\)/);
      await early.waitFor(/^READY/);
      const migrators = Array.from({ length: 10 }, () => spawnFixture('migrate-process.ts', { DATABASE_URL: db.url, BARRIER: '4242' }));
      await gate.waiting(10, 120_000);
      await gate.release();
      const results = await Promise.all(
        migrators.map(async (m) => {
          const line = await m.waitFor(/^(MIGRATED|FAILED) /, 120_000);
          expect((await m.exited).code).toBe(0);
          return JSON.parse(line.slice('MIGRATED '.length)) as { applied: string[]; unknown: number[] };
        }),
      );
      const names = loadMigrations().map((m) => m.name);
      expect(results.flatMap((r) => r.applied).sort()).toEqual(names);
      expect(results.every((r) => r.unknown.length === 0)).toBe(true);

      // migrate()'s NOTIFY lets the early worker start; it runs a run on the fresh schema.
      await early.waitFor(again, 10_000);
      const late = new DurableFlow({ databaseUrl: db.url, logger: false });
      try {
        const { rows } = await late.pool.query('SELECT version FROM durable_flow_migrations ORDER BY version');
        expect(rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
        await installHistory(late.pool);
        const run = await registerOpsWorkflows(late).quick.start({});
        expect(await run.result({ timeout: '30 seconds' })).toBe(early.pid);
      } finally {
        await late.close();
      }
    } finally {
      killAllChildren();
      await gate.release();
      await db.drop();
    }
  });
});

describe('H3: a run cancelled from another process while a step of it runs', () => {
  it('its worker runs no further step and stores nothing more; no claim or recovery brings it back', async () => {
    const holder = worker({ LONG_MS: '3000' });
    const other = worker();
    await Promise.all([holder.waitFor(/^READY/), other.waitFor(/^READY/)]);
    const run = await workflows.long.start({ ms: 3000 });
    const w = await Promise.race([holder, other].map((c) => c.waitFor(new RegExp(`^ENTER ${run.runId} long`)).then(() => c)));
    expect(await flow.cancel(run.runId, { reason: 'changed our mind' })).toBe(true);
    expect((await flow.getRun(run.runId))!.status).toBe('cancelled');

    // Its worker learns it at its next write or heartbeat: the step's signal aborts while the body runs.
    await w.waitFor(new RegExp(`^ABORTED ${run.runId} long`), 10_000);
    await w.waitFor(new RegExp(`^DONE ${run.runId} long`), 20_000);
    expect(lineIndex(w, new RegExp(`^ABORTED ${run.runId}`))).toBeLessThan(lineIndex(w, new RegExp(`^DONE ${run.runId}`)));
    await pause(2 * 2000 + 500); // two leases and many polls of both workers: time for any resurrection

    const info = await flow.getRun(run.runId);
    expect(info!.status).toBe('cancelled');
    expect(info!.attempts).toBe(1);
    expect(info!.error!.message).toBe('changed our mind');
    expect((await runRows([run.runId]))[0]!.wake_at).toBeNull();
    const timeline = await flow.timeline(run.runId);
    expect(timeline!.steps.filter((s) => s.step.status === 'succeeded').map((s) => [s.step.name, s.step.result])).toEqual([['first', w.pid]]);
    for (const c of [holder, other]) expect(entered(c, run.runId, 'last')).toBe(0);
    const { rows: outcomes } = await flow.pool.query('SELECT status FROM test_outcomes WHERE run_id = $1', [run.runId]);
    expect(outcomes).toEqual([{ status: 'cancelled' }]);
  });

  it('a worker frozen when its run was cancelled writes nothing when it wakes', async () => {
    const frozen = worker({ LONG_MS: '1500' });
    await frozen.waitFor(/^READY/);
    const run = await workflows.long.start({ ms: 1500 });
    await frozen.waitFor(new RegExp(`^ENTER ${run.runId} long`));
    frozen.child.kill('SIGSTOP');
    const other = worker();
    await other.waitFor(/^READY/);
    expect(await flow.cancel(run.runId)).toBe(true);
    await pause(2500); // past the frozen worker's lease
    frozen.child.kill('SIGCONT');
    await frozen.waitFor(new RegExp(`^DONE ${run.runId} long`), 20_000);
    await pause(1500); // time for the writes it would make
    expect((await flow.getRun(run.runId))!.status).toBe('cancelled');
    const timeline = await flow.timeline(run.runId);
    expect(timeline!.steps.filter((s) => s.step.status === 'succeeded').map((s) => s.step.name)).toEqual(['first']);
    for (const c of [frozen, other]) expect(entered(c, run.runId, 'last')).toBe(0);
    expect(entered(other, run.runId, 'long')).toBe(0);
  });
});

describe('H4: a stuck run holding the only slot of a concurrency-1 workflow', () => {
  it('frees the slot when its lease expires; the queue advances and nothing else waits for it', async () => {
    const leaseMs = 4000;
    const pollMs = 100;
    const [a, b] = [worker({ LEASE_TTL_MS: String(leaseMs) }), worker({ LEASE_TTL_MS: String(leaseMs) })];
    await Promise.all([a!.waitFor(/^READY/), b!.waitFor(/^READY/)]);
    const serial = await Promise.all(Array.from({ length: 6 }, () => workflows.serial.start({ ms: 500 }).then((r) => r.runId)));
    const first = await Promise.race([a!, b!].map((w) => w.waitFor(/^ENTER \S+ work /).then((line) => ({ w, runId: line.split(' ')[1]! }))));
    const stuck = first.runId;
    const holder = first.w;
    const free = holder === a ? b! : a!;
    holder.child.kill('SIGSTOP');
    await pause(300); // a heartbeat already sent lands; none comes after
    const { rows: [lease] } = await flow.pool.query(`SELECT extract(epoch FROM lease_expires_at)::float8 AS s FROM durable_flow_workflow_runs WHERE run_id = $1`, [stuck]);

    // Other workflows are not held up by the stuck run: they finish while its lease still runs.
    const quick = await Promise.all(Array.from({ length: 5 }, () => workflows.quick.start({}).then((r) => r.runId)));
    await Promise.all(quick.map((runId) => flow.handle(runId).result({ timeout: '30 seconds' })));
    const { rows: [quickDone] } = await flow.pool.query(
      `SELECT extract(epoch FROM max(completed_at))::float8 AS s FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)`,
      [quick],
    );
    expect(quickDone.s).toBeLessThan(lease.s);

    // The queue advances: the stuck run is taken over once its lease ends (not before), then the rest.
    await Promise.all(serial.map((runId) => flow.handle(runId).result({ timeout: '60 seconds' })));
    const { rows: [takeover] } = await flow.pool.query(
      `SELECT extract(epoch FROM at)::float8 AS s FROM test_effects WHERE run_id = $1 AND pid = $2 AND step = 'work'`,
      [stuck, free.pid],
    );
    const advanceMs = (takeover.s - lease.s) * 1000;
    expect(advanceMs).toBeGreaterThanOrEqual(0);
    expect(advanceMs).toBeLessThan(pollMs + 5000); // within the poll interval, with room for a busy machine

    // One at a time throughout (the frozen worker's stored nothing), and every run once but the stuck one.
    holder.child.kill('SIGCONT');
    await holder.waitFor(new RegExp(`^DONE ${stuck} work`), 20_000);
    await pause(1000);
    const { rows: steps } = await flow.pool.query(
      `SELECT r.run_id, s.result, s.started_at, s.completed_at FROM durable_flow_workflow_steps s JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id
        WHERE r.run_id = ANY ($1) ORDER BY s.started_at`,
      [serial],
    );
    expect(steps).toHaveLength(serial.length);
    for (let i = 1; i < steps.length; i++) expect(steps[i].started_at.getTime()).toBeGreaterThanOrEqual(steps[i - 1].completed_at.getTime());
    expect(steps.find((s) => s.run_id === stuck).result).toBe(free.pid);
    const history = await checkHistory(flow.pool, [...serial, ...quick]);
    assertHistory(history, { maxReexecutions: 1, maxEntriesPerStep: 2 });
    reportFigures('H4 stuck run, concurrency 1', {
      runs: serial.length + quick.length, workers: 2, faults: `1 SIGSTOP of the slot's holder (lease ${leaseMs / 1000} s)`,
      lost: history.lost.length, duplicateOutcomes: history.duplicateOutcomes, duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions, interruptedStepReexecutions: history.reexecutions, advanceAfterLeaseMs: Math.round(advanceMs),
    });
  });
});
