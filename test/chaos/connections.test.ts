/**
 * Connection faults (reliability.md B2, B4, B6): a worker's connection lost just after Postgres
 * committed a checkpoint (the worker sees an error, the commit stands), a worker's connections gone
 * silent (half-open, through test/chaos/proxy.ts), and the database turned read-only and back.
 * Real worker processes (test/fixtures/chaos-worker.ts), the history checker on every run.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DurableFlow } from '../../lib/index.js';
import { withTransaction } from '../../lib/db/queryable.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { ADMIN_URL, admin } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { assertHistory, checkHistory, reportFigures } from './history.js';
import { startProxy } from './proxy.js';
import type { PgProxy } from './proxy.js';
import { chaosSetup } from './setup.js';
import type { registerChaosWorkflows } from './workflows.js';

let ctx: TestContext;
let flow: DurableFlow;
let workflows: ReturnType<typeof registerChaosWorkflows>;
let proxy: PgProxy;

beforeAll(async () => {
  ({ ctx, flow, workflows } = await chaosSetup('conn'));
  const admin = new URL(ADMIN_URL);
  proxy = await startProxy({ host: admin.hostname, port: Number(admin.port || 5432) });
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await proxy?.close();
  await ctx?.cleanup();
});

async function spawnWorker(url: string, env: Record<string, string> = {}): Promise<ChildWorker> {
  const worker = spawnFixture('chaos-worker.ts', { DATABASE_URL: url, LEASE_TTL_MS: '2000', ...env });
  await worker.waitFor(/^READY/);
  return worker;
}

async function terminal(runIds: string[]): Promise<number> {
  return terminalIn(flow, runIds);
}

async function terminalIn(on: DurableFlow, runIds: string[]): Promise<number> {
  const { rows } = await on.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1) AND status IN ('completed', 'failed', 'cancelled')`,
    [runIds],
  );
  return rows[0]!.n;
}

async function attemptsIn(on: DurableFlow, runIds: string[]): Promise<Map<string, number>> {
  const { rows } = await on.pool.query<{ run_id: string; attempts: number }>('SELECT run_id, attempts FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)', [runIds]);
  return new Map(rows.map((row) => [row.run_id, row.attempts]));
}

/** Stored step results by `<runId> <step>`. */
async function storedResults(runIds: string[]): Promise<Map<string, unknown>> {
  const { rows } = await flow.pool.query<{ run_id: string; name: string; result: unknown }>(
    `SELECT r.run_id, s.name, s.result FROM durable_flow_workflow_steps s JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id
      WHERE r.run_id = ANY ($1) AND s.status = 'succeeded'`,
    [runIds],
  );
  return new Map(rows.map((row) => [`${row.run_id} ${row.name}`, row.result]));
}

async function entries(runId: string, step: string): Promise<number[]> {
  const { rows } = await flow.pool.query<{ pid: number }>('SELECT pid FROM test_effects WHERE run_id = $1 AND step = $2 ORDER BY id', [runId, step]);
  return rows.map((row) => row.pid);
}

describe('connection faults', () => {
  it('B2: the connection dies after Postgres committed a checkpoint, before the worker hears of it; one stored result, the one returned, and every run completes', async () => {
    const tag = `b2${Date.now().toString(36)}`;
    // Every commit statement (commitBatch) storing a step result of these runs, the first 8 times.
    const cuts = proxy.cutAfterAnswer(
      (type, message) => type === 'B' && message.includes('commitBatch') && message.includes('"status":"succeeded"') && message.includes(tag),
      8,
    );
    const worker = await spawnWorker(proxy.url(ctx.db.name), { STEP_MS: '60' });
    const runIds = await Promise.all(Array.from({ length: 40 }, () => workflows.nonce.start({ tag }).then((r) => r.runId)));
    await eventually(async () => (await terminal(runIds)) === runIds.length, 60_000, 100);
    expect(cuts.length).toBe(8);
    expect(worker.child.exitCode).toBeNull();

    // What every body returned, last value per step (a step run again returns a new value).
    const returned = new Map<string, string>();
    for (const line of worker.output) {
      const match = /^RETURN (\S+) (\S+) (\S+)$/.exec(line);
      if (match) returned.set(`${match[1]} ${match[2]}`, match[3]!);
    }
    const stored = await storedResults(runIds);
    const { rows } = await flow.pool.query<{ run_id: string; status: string; output: string[] }>(
      'SELECT run_id, status, output FROM durable_flow_workflow_runs WHERE run_id = ANY ($1)',
      [runIds],
    );
    for (const row of rows) {
      expect(row.status).toBe('completed');
      const expected = ['a', 'b', 'c'].map((step) => stored.get(`${row.run_id} ${step}`));
      expect(row.output).toEqual(expected);
      for (const step of ['a', 'b', 'c']) expect(stored.get(`${row.run_id} ${step}`)).toBe(returned.get(`${row.run_id} ${step}`));
    }
    // Each cut commit did commit: the results it carried are the stored ones, their steps ran once.
    const storedValues = new Map([...stored].map(([key, value]) => [value, key]));
    let cutResults = 0;
    for (const message of cuts) {
      for (const value of new Set(message.toString('latin1').match(new RegExp(`${tag}-[abc]-[0-9a-f-]{36}`, 'g')) ?? [])) {
        const key = storedValues.get(value);
        expect(key, `${value} of a cut commit is stored`).toBeDefined();
        const [runId, step] = key!.split(' ') as [string, string];
        expect(await entries(runId, step)).toHaveLength(1);
        cutResults++;
      }
    }
    const history = await checkHistory(flow.pool, runIds);
    assertHistory(history, { maxReexecutions: 8, maxEntriesPerStep: 2 });
    expect(history.outcomes).toEqual({ completed: 40 });
    reportFigures('B2 ambiguous commits', {
      runs: 40,
      workers: 1,
      faults: `${cuts.length} connections reset after the commit, before its answer (${cutResults} step results in them)`,
      lost: history.lost.length,
      duplicateOutcomes: history.duplicateOutcomes,
      duplicateCheckpoints: history.duplicateCheckpoints,
      completedStepReexecutions: history.completedReexecutions,
      interruptedStepReexecutions: history.reexecutions,
    });
  });

  it('B4: every connection of a worker goes silent mid-step (half-open, new ones hang too); it gives them up within its query timeout, another worker takes the run over after the lease, and the silent one writes nothing and hangs nowhere', async () => {
    const silent = await spawnWorker(proxy.url(ctx.db.name), { LOG: '1', QUERY_TIMEOUT_MS: '3000' });
    const run = await workflows.slow.start({ ms: 2500 });
    await silent.waitFor(new RegExp(`^ENTER ${run.runId} work`));
    // A partition: what the worker has open stops answering, and what it opens next never connects.
    proxy.partition();
    expect(proxy.blackhole()).toBeGreaterThan(0);
    const other = await spawnWorker(ctx.db.url);
    expect(await run.result({ timeout: '30 seconds' })).toEqual({ work: other.pid, after: other.pid });
    expect(await entries(run.runId, 'work')).toEqual([silent.pid, other.pid]);
    expect(await entries(run.runId, 'after')).toEqual([other.pid]);
    // The silent worker notices on its own: its commit times out and the execution ends.
    await silent.waitFor(new RegExp(`^WARN .*Execution of run ${run.runId} stopped by an error`), 30_000);
    proxy.heal();

    // Nothing of it hangs: it works again on new connections, and stops cleanly.
    other.child.kill('SIGTERM');
    await other.exited;
    const next = await workflows.slow.start({ ms: 10 });
    expect(await next.result({ timeout: '30 seconds' })).toEqual({ work: silent.pid, after: silent.pid });
    expect(silent.child.exitCode).toBeNull();
    // It began no step of the run taken from it after the one it was in, and wrote nothing for it
    // (fenced): the stored results are the other worker's.
    expect(silent.output.filter((line) => line.startsWith(`BEGIN ${run.runId}`))).toEqual([`BEGIN ${run.runId} work 1`]);
    const stored = await storedResults([run.runId]);
    expect([...stored.values()]).toEqual([other.pid, other.pid]);
    const history = await checkHistory(flow.pool, [run.runId, next.runId]);
    assertHistory(history, { maxReexecutions: 1, maxEntriesPerStep: 2 });
    silent.child.kill('SIGTERM');
    await silent.waitFor(/^STOPPED/, 30_000);
    expect((await silent.exited).code).toBe(0);
  });

  it('B4: only the pool goes silent mid-step while heartbeats still get through; the commit times out and the run is handed back, not held by heartbeats forever', async () => {
    const worker = await spawnWorker(proxy.url(ctx.db.name), { LOG: '1', QUERY_TIMEOUT_MS: '3000' });
    const run = await workflows.slow.start({ ms: 1500 });
    await worker.waitFor(new RegExp(`^ENTER ${run.runId} work`));
    expect(proxy.blackhole((c) => c.applicationName === 'durable-flow' && !c.listens)).toBeGreaterThan(0);
    expect(await run.result({ timeout: '30 seconds' })).toEqual({ work: worker.pid, after: worker.pid });
    await worker.waitFor(new RegExp(`^WARN .*Execution of run ${run.runId} stopped by an error.*Query read timeout`));
    // The interrupted step ran again once, on new connections; the rest once.
    expect(await entries(run.runId, 'work')).toEqual([worker.pid, worker.pid]);
    const history = await checkHistory(flow.pool, [run.runId]);
    assertHistory(history, { maxReexecutions: 1, maxEntriesPerStep: 2 });
    expect(worker.child.exitCode).toBeNull();
  });

  it('B4: `queryTimeout` is a positive duration or false', () => {
    expect(() => ctx.flow({ queryTimeout: 'soon' })).toThrow(/Expected `queryTimeout` to be a positive duration/);
    expect(() => ctx.flow({ queryTimeout: 0 })).toThrow(/`queryTimeout`/);
    expect(ctx.flow({ queryTimeout: false }).options.queryTimeoutMs).toBe(0);
    expect(ctx.flow().options.queryTimeoutMs).toBe(60_000);
  });

  it('B4: a heartbeat connection that fails is reported once, however many heartbeats the worker sent before', async () => {
    const warnings: string[] = [];
    const local = ctx.flow({
      leaseTtl: '1 second',
      heartbeatInterval: 100,
      logger: { warn: (message) => void warnings.push(message), error: (message) => void warnings.push(message) },
    });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const wf = local.workflow('beats', async ({ step }) => step.run('hold', () => held.then(() => 'held')));
    const worker = local.worker({ pollInterval: 100 });
    await worker.start();
    try {
      const run = await wf.start({});
      // Twenty heartbeats, seen as renewals of the lease.
      const renewals = new Set<string>();
      await eventually(async () => {
        const { rows } = await flow.pool.query<{ at: string }>('SELECT lease_expires_at::text AS at FROM durable_flow_workflow_runs WHERE run_id = $1', [run.runId]);
        if (rows[0]?.at) renewals.add(rows[0].at);
        return renewals.size >= 20;
      }, 30_000);
      // Kill idle heartbeat connections until one dies idle (its pool reports it, not a query).
      let terminated = 0;
      const reported = () => warnings.filter((w) => w.startsWith('A heartbeat Postgres connection failed')).length;
      await eventually(async () => {
        const { rows } = await flow.pool.query<{ n: number }>(
          `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND application_name = 'durable-flow-control' AND state = 'idle'`,
          [ctx.db.name],
        );
        terminated += rows[0]!.n;
        return reported() > 0;
      }, 20_000, 50);
      expect(reported()).toBeLessThanOrEqual(terminated);
      release();
      expect(await run.result({ timeout: '10 seconds' })).toBe('held');
    } finally {
      release();
      await worker.stop();
    }
  });

  it('B6: the database turns read-only while 60 runs flow: claims and writes fail with 25006, the workers live on without counting attempts, and when it is writable again everything completes', async () => {
    const ro = await chaosSetup('ro');
    const name = ro.ctx.db.name;
    const setReadOnly = (on: boolean) =>
      admin((client) => client.query(on ? `ALTER DATABASE ${name} SET default_transaction_read_only = on` : `ALTER DATABASE ${name} RESET default_transaction_read_only`));
    try {
      const workers = await Promise.all([1, 2].map(() => spawnWorker(ro.ctx.db.url, { STEP_MS: '100', LOG: '1' })));
      const runIds = await Promise.all(Array.from({ length: 60 }, (_, n) => ro.workflows.pipeline.start({ n, ...(n % 3 === 0 ? { napMs: 300 } : {}) }).then((r) => r.runId)));
      await eventually(async () => (await terminalIn(ro.flow, runIds)) >= 10, 30_000, 50);
      // Every session from now on is read-only: end the ones open now (the test's own too).
      await setReadOnly(true);
      await admin((client) => client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]));
      // The pool may hand out an idle connection whose termination it has not read yet: ask again then.
      const before = await eventually(() => attemptsIn(ro.flow, runIds), 10_000, 50);
      for (const worker of workers) await worker.waitFor(/^WARN .*read-only transaction/, 20_000);
      // Twice the lease with nothing writable.
      await new Promise((resolve) => setTimeout(resolve, 4000));
      expect(await attemptsIn(ro.flow, runIds)).toEqual(before);
      // Writable again; the sessions opened meanwhile keep their read-only default until replaced.
      await setReadOnly(false);
      await eventually(async () => (await terminalIn(ro.flow, runIds)) === runIds.length, 60_000, 100);
      for (const worker of workers) expect(worker.child.exitCode).toBeNull();
      const after = await attemptsIn(ro.flow, runIds);
      // A run is claimed once, and again after its nap; the switch costs at most one claim more.
      runIds.forEach((runId, n) => expect(after.get(runId), runId).toBeLessThanOrEqual((n % 3 === 0 ? 2 : 1) + 1));
      const history = await checkHistory(ro.flow.pool, runIds);
      assertHistory(history, { maxReexecutions: 20, maxEntriesPerStep: 2 });
      expect(history.outcomes).toEqual({ completed: 60 });
      reportFigures('B6 database read-only', {
        runs: 60,
        workers: 2,
        faults: 'read-only for 4 s after 10 runs (`default_transaction_read_only`, sessions ended)',
        lost: history.lost.length,
        duplicateOutcomes: history.duplicateOutcomes,
        duplicateCheckpoints: history.duplicateCheckpoints,
        completedStepReexecutions: history.completedReexecutions,
        interruptedStepReexecutions: history.reexecutions,
      });
    } finally {
      killAllChildren();
      await setReadOnly(false);
      await ro.ctx.cleanup();
    }
  });

  it('B6: a session that answered 25006 is not handed back to the pool: the next transaction, once the database is writable, succeeds', async () => {
    const name = ctx.db.name;
    await flow.pool.query('CREATE TABLE IF NOT EXISTS b6_writes (n int)');
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
    try {
      await admin((client) => client.query(`ALTER DATABASE ${name} SET default_transaction_read_only = on`));
      const write = () => withTransaction(pool, (client) => client.query('INSERT INTO b6_writes VALUES (1)'));
      await expect(write()).rejects.toMatchObject({ code: '25006' });
      await admin((client) => client.query(`ALTER DATABASE ${name} RESET default_transaction_read_only`));
      await write();
      expect((await flow.pool.query('SELECT count(*)::int AS n FROM b6_writes')).rows[0].n).toBe(1);
    } finally {
      await admin((client) => client.query(`ALTER DATABASE ${name} RESET default_transaction_read_only`));
      await pool.end();
    }
  });
});
