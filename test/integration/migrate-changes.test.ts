import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionsComment } from '../../lib/db/functions.js';
import { loadMigrations } from '../../lib/db/migrator.js';
import { DurableFlow } from '../../lib/index.js';
import type { Change, WorkflowContext } from '../../lib/index.js';
import { spawnFixture, killAllChildren } from '../helpers/child.js';
import { createEmptyDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

describe('migrate()', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createEmptyDatabase('mig');
  });
  afterAll(async () => {
    await db.drop();
  });

  it('is idempotent and safe when ten processes run it at once', async () => {
    const flows = Array.from({ length: 10 }, () => new DurableFlow({ databaseUrl: db.url, logger: false }));
    try {
      const results = await Promise.all(flows.map((flow) => flow.migrate()));
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      expect(results.flatMap((r) => r.applied)).toEqual(loadMigrations().map((m) => m.name));
      expect(await flows[0]!.migrate()).toEqual({ applied: [], unknown: [] });
      const { rows } = await flows[0]!.pool.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'durable_flow%' ORDER BY 1`,
      );
      expect(rows.map((r) => r.table_name)).toEqual([
        'durable_flow_audit',
        'durable_flow_cancel_triggers',
        'durable_flow_event_triggers',
        'durable_flow_live',
        'durable_flow_metric_minutes',
        'durable_flow_metric_samples',
        'durable_flow_migrations',
        'durable_flow_operations',
        'durable_flow_run_counts',
        'durable_flow_schedules',
        'durable_flow_secrets',
        'durable_flow_signals',
        'durable_flow_trigger_starts',
        'durable_flow_workflow_events',
        'durable_flow_workflow_logs',
        'durable_flow_workflow_pauses',
        'durable_flow_workflow_runs',
        'durable_flow_workflow_steps',
        'durable_flow_workflow_waits',
      ]);
    } finally {
      await Promise.all(flows.map((flow) => flow.close()));
    }
  });

  it('applies the function files after the migrations: once, and again when the files differ from what the database has', async () => {
    const other = await createEmptyDatabase('fns');
    const flow = new DurableFlow({ databaseUrl: other.url, logger: false });
    const lockKey = `SELECT durable_flow_event_lock_key('x') AS k`;
    const comment = `SELECT obj_description('durable_flow_migrations'::regclass, 'pg_class') AS c`;
    try {
      await flow.migrate();
      const expected = (await flow.pool.query(lockKey)).rows[0].k as number;
      const hash = (await flow.pool.query(comment)).rows[0].c as string;
      expect(hash).toBe(functionsComment(flow.tables));
      expect(hash).toMatch(/^durable-flow functions 0\.\d+\.\d+ sha256:[0-9a-f]{64}$/);
      // A definition changed behind migrate()'s back stays as long as the recorded hash matches the
      // files: an unchanged release applies nothing (no trigger is dropped, no table locked).
      await flow.pool.query(
        `CREATE OR REPLACE FUNCTION durable_flow_event_lock_key(p_name text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 99 $$`,
      );
      await flow.migrate();
      expect((await flow.pool.query(lockKey)).rows[0].k).toBe(99);
      // A database whose functions an earlier release wrote (another hash, or none): the files' definitions again.
      await flow.pool.query(`COMMENT ON TABLE durable_flow_migrations IS NULL`);
      expect(await flow.migrate()).toEqual({ applied: [], unknown: [] });
      expect((await flow.pool.query(lockKey)).rows[0].k).toBe(expected);
      expect((await flow.pool.query(comment)).rows[0].c).toBe(hash);
      const { rows } = await flow.pool.query(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'durable_flow_workflow_runs'::regclass AND NOT tgisinternal`,
      );
      expect(rows[0].n).toBe(13);
    } finally {
      await flow.close();
      await other.drop();
    }
  });

  it('leaves the functions alone in a database a newer release migrated, and puts an older release’s back', async () => {
    const other = await createEmptyDatabase('fnn');
    const flow = new DurableFlow({ databaseUrl: other.url, logger: false });
    try {
      await flow.migrate();
      await flow.pool.query(`INSERT INTO durable_flow_migrations (version, name) VALUES (999, '999_future')`);
      await flow.pool.query(`COMMENT ON TABLE durable_flow_migrations IS 'durable-flow functions sha256:newer'`);
      await flow.pool.query(
        `CREATE OR REPLACE FUNCTION durable_flow_event_lock_key(p_name text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$`,
      );
      expect(await flow.migrate()).toEqual({ applied: [], unknown: [999] });
      expect((await flow.pool.query(`SELECT durable_flow_event_lock_key('x') AS k`)).rows[0].k).toBe(7);
      // A newer release that changed only function files (no new migration): its functions stay too,
      // so a process of the previous release booting during a rolling deploy does not put its own back.
      await flow.pool.query(`DELETE FROM durable_flow_migrations WHERE version = 999`);
      await flow.pool.query(`COMMENT ON TABLE durable_flow_migrations IS 'durable-flow functions 99.0.0 sha256:newer'`);
      expect(await flow.migrate()).toEqual({ applied: [], unknown: [] });
      expect((await flow.pool.query(`SELECT durable_flow_event_lock_key('x') AS k`)).rows[0].k).toBe(7);
      // An older release's functions: this release's files replace them.
      await flow.pool.query(`COMMENT ON TABLE durable_flow_migrations IS 'durable-flow functions 0.0.1 sha256:older'`);
      await flow.migrate();
      expect((await flow.pool.query(`SELECT durable_flow_event_lock_key('x') AS k`)).rows[0].k).not.toBe(7);
    } finally {
      await flow.close();
      await other.drop();
    }
  });

  it('creates its tables in another schema when asked, side by side with public', async () => {
    const flow = new DurableFlow({ databaseUrl: db.url, schema: 'jobs', logger: false });
    try {
      await flow.migrate();
      const wf = flow.workflow('in-schema', async ({ step }: WorkflowContext) => step.run('x', () => 'schema ok'));
      const worker = flow.worker({ pollInterval: 50 });
      await worker.start();
      expect(await (await wf.start({})).result()).toBe('schema ok');
      await worker.stop();
      const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM jobs.durable_flow_workflow_runs`);
      expect(rows[0].n).toBe(1);
    } finally {
      await flow.close();
    }
  });
});

describe('models', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await setupDatabase('models');
  });
  afterAll(async () => {
    await ctx.cleanup();
  });

  it('reads runs with their steps and logs through Sequelize', async () => {
    const flow = ctx.flow();
    const wf = flow.workflow('modelled', async ({ step, log }: WorkflowContext) => {
      log.info('hi');
      return step.run('one', () => 1);
    });
    const worker = flow.worker({ pollInterval: 50 });
    await worker.start();
    const run = await wf.start({ a: 1 });
    await run.result();
    await worker.stop();
    const { WorkflowRun } = flow.models;
    const found = await WorkflowRun.findOne({ where: { runId: run.runId }, include: ['steps', 'logs'] });
    expect(found!.get('status')).toBe('completed');
    expect(found!.get('input')).toEqual({ a: 1 });
    expect((found!.get('steps') as { get(k: string): unknown }[]).map((s) => s.get('name'))).toEqual(['one']);
    expect((found!.get('logs') as { get(k: string): unknown }[]).map((l) => l.get('message'))).toEqual(['hi']);
  });
});

describe('onChange', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await setupDatabase('changes');
  });
  afterAll(async () => {
    killAllChildren();
    await ctx.cleanup();
  });

  it('delivers changes committed by a worker in another process, and a throwing subscriber harms nothing', async () => {
    const flow = ctx.flow();
    const changes: Change[] = [];
    const unsubscribeBad = flow.onChange(() => {
      throw new Error('subscriber bug');
    });
    const unsubscribe = flow.onChange((change) => void changes.push(change));
    await flow.changesReady();
    const child = spawnFixture('worker-process.ts', { DATABASE_URL: ctx.db.url });
    try {
      await child.waitFor(/^READY/);
      const { registerCrashWorkflows } = await import('../fixtures/crash-workflows.js');
      const { createEffectsTable } = await import('../fixtures/crash-workflows.js');
      await createEffectsTable(flow);
      registerCrashWorkflows(flow);
      const runId = await flow.startRun(flow.definitions.get('chain')!, { steps: 2 });
      expect(await flow.handle(runId).result({ timeout: '10 seconds' })).toBe(1);
      await eventually(() =>
        changes.some((c) => c.type === 'workflow_run.updated' && c.runId === runId && c.snapshot.status === 'completed'),
      );
      const types = changes.filter((c) => c.runId === runId).map((c) => c.type);
      expect(types).toContain('workflow_run.created');
      expect(types).toContain('workflow_step.created');
      const step = changes.find((c) => c.type === 'workflow_step.created' && c.runId === runId)!;
      expect(step).toMatchObject({ workflow: 'chain', snapshot: { name: expect.stringMatching(/^s\d$/) } });
      expect(step.payload).toMatchObject({ type: 'workflow_step.created', runId, workflow: 'chain', recordId: step.recordId });
      await flow.notify('anything', { x: 1 });
      await eventually(() =>
        changes.some(
          (c) => c.type === 'workflow_event.created' && c.runId === null && (c.snapshot.payload as { x?: number }).x === 1,
        ),
      );
    } finally {
      unsubscribe();
      unsubscribeBad();
      child.child.kill('SIGKILL');
    }
  });

  it('sends no change NOTIFY while nobody listens', async () => {
    const flow = ctx.flow();
    await flow.pool.query('UPDATE durable_flow_live SET live_until = NULL');
    const listener = await flow.pool.connect();
    const heard: string[] = [];
    try {
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.query('LISTEN durable_flow_changes');
      await flow.notify('quiet', {});
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(heard).toEqual([]);
      await flow.pool.query(`UPDATE durable_flow_live SET live_until = now() + interval '1 minute'`);
      await flow.notify('loud', {});
      await eventually(() => heard.length === 1);
      expect(heard[0]).toMatch(/^e:c:\d+$/);
    } finally {
      await listener.query('UNLISTEN *');
      listener.release();
    }
  });
});
