import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import pg from 'pg';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createEffectsTable, registerCrashWorkflows } from '../fixtures/crash-workflows.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => {
  ctx = await setupDatabase('worker');
  flow = ctx.flow({ leaseTtl: '2 seconds', maxRecoveries: 1 });
  registerCrashWorkflows(flow);
  await createEffectsTable(flow);
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

function child(env: Record<string, string> = {}) {
  return spawnFixture('worker-process.ts', { DATABASE_URL: ctx.db.url, LEASE_TTL_MS: '2000', MAX_RECOVERIES: '1', ...env });
}

async function effects(runId: string): Promise<{ step: string; pid: number }[]> {
  const { rows } = await flow.pool.query('SELECT step, pid FROM test_effects WHERE run_id = $1 ORDER BY id', [runId]);
  return rows;
}

const crashy = () => flow.definitions.get('crashy')!;

async function startCrashy(slowMs = 0): Promise<string> {
  return flow.startRun(crashy(), { slowMs });
}

describe('crashes (real child processes)', () => {
  it('resumes a SIGKILLed worker’s run elsewhere: the completed step is not run again, the interrupted one is', async () => {
    const worker = child({ HANG_SLOW: '1' });
    await worker.waitFor(/^READY/);
    const runId = await startCrashy();
    await worker.waitFor(new RegExp(`^ENTER ${runId} slow`));
    worker.child.kill('SIGKILL');
    expect((await worker.exited).signal).toBe('SIGKILL');
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      const output = await flow.handle<{ first: number; slow: number; last: number }>(runId).result({ timeout: '20 seconds' });
      expect(output).toEqual({ first: worker.pid, slow: process.pid, last: process.pid });
      expect(await effects(runId)).toEqual([
        { step: 'first', pid: worker.pid },
        { step: 'slow', pid: worker.pid },
        { step: 'slow', pid: process.pid },
        { step: 'last', pid: process.pid },
      ]);
      expect((await flow.getRun(runId))!.attempts).toBe(2);
    } finally {
      await local.stop();
    }
  });

  it('runs a step again when its worker died between the side effect and the commit', async () => {
    const worker = child({ KILL_AFTER_BODY: 'slow' });
    await worker.waitFor(/^READY/);
    const runId = await startCrashy();
    expect((await worker.exited).signal).toBe('SIGKILL');
    expect(worker.output).toContain(`DONE ${runId} slow`);
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      const output = await flow.handle(runId).result({ timeout: '20 seconds' });
      expect(output).toEqual({ first: worker.pid, slow: process.pid, last: process.pid });
      expect((await effects(runId)).map((e) => e.step)).toEqual(['first', 'slow', 'slow', 'last']);
    } finally {
      await local.stop();
    }
  });

  it('resumes a cursor step from its last advanced cursor after a SIGKILL', async () => {
    const worker = child({ HANG_AT_ITEM: '3' });
    await worker.waitFor(/^READY/);
    const runId = await flow.startRun(flow.definitions.get('cursor')!, { items: 5 });
    await worker.waitFor(new RegExp(`^HANG ${runId} 3`));
    worker.child.kill('SIGKILL');
    await worker.exited;
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      expect(await flow.handle(runId).result({ timeout: '20 seconds' })).toBe(5);
      expect(await effects(runId)).toEqual([
        { step: 'item-0', pid: worker.pid },
        { step: 'item-1', pid: worker.pid },
        { step: 'item-2', pid: worker.pid },
        { step: 'item-3', pid: process.pid },
        { step: 'item-4', pid: process.pid },
      ]);
    } finally {
      await local.stop();
    }
  });

  it('fails a run whose step kills its process every time, instead of crash-looping', async () => {
    const runId = await flow.startRun(flow.definitions.get('poison')!, {});
    for (let i = 0; i < 2; i++) {
      const worker = child({ POISON_KILLS: '1' });
      expect((await worker.exited).signal).toBe('SIGKILL');
    }
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      const error = await flow.handle(runId).result({ timeout: '20 seconds' }).catch((e: Error) => e);
      expect((error as Error).message).toMatch(/was claimed 2 times in a row without its execution ending cleanly/);
      const info = await flow.getRun(runId);
      expect(info!.status).toBe('failed');
      expect(info!.error!.code).toBe('WORKER_CRASHED');
      expect((await effects(runId)).map((e) => e.step)).toEqual(['harmless', 'kill-process', 'kill-process']);
    } finally {
      await local.stop();
    }
  });

  it('fences a frozen worker that lost its lease: it can write nothing when it wakes', async () => {
    const worker = child({ SLOW_MS: '3000' });
    await worker.waitFor(/^READY/);
    const runId = await startCrashy();
    await worker.waitFor(new RegExp(`^ENTER ${runId} slow`));
    worker.child.kill('SIGSTOP');
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      const output = await flow.handle(runId).result({ timeout: '20 seconds' });
      expect(output).toEqual({ first: worker.pid, slow: process.pid, last: process.pid });
      worker.child.kill('SIGCONT');
      await worker.waitFor(new RegExp(`^DONE ${runId} slow`));
      await new Promise((resolve) => setTimeout(resolve, 500)); // time for any write it would try
      const timeline = await flow.timeline(runId);
      expect(timeline!.steps.map((s) => [s.step.name, s.step.result])).toEqual([
        ['first', worker.pid],
        ['slow', process.pid],
        ['last', process.pid],
      ]);
      expect((await flow.getRun(runId))!.output).toEqual(output);
      expect((await effects(runId)).filter((e) => e.step === 'last')).toEqual([{ step: 'last', pid: process.pid }]);
    } finally {
      await local.stop();
    }
  });

  it('hands a run back at once on SIGTERM, after the running step finishes', async () => {
    const worker = child({ SLOW_MS: '1000' });
    await worker.waitFor(/^READY/);
    const runId = await startCrashy();
    await worker.waitFor(new RegExp(`^ENTER ${runId} slow`));
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
    expect(worker.output).toContain('STOPPED');
    const info = await flow.getRun(runId);
    expect(info!.status).toBe('ready');
    expect(info!.lease).toBeNull();
    const local = flow.worker({ pollInterval: 100 });
    await local.start();
    try {
      expect(await flow.handle(runId).result({ timeout: '20 seconds' })).toEqual({ first: worker.pid, slow: worker.pid, last: process.pid });
      expect((await effects(runId)).map((e) => e.step)).toEqual(['first', 'slow', 'last']);
    } finally {
      await local.stop();
    }
  });
});

describe('claims and leases', () => {
  it('lets exactly one of 50 concurrent claimers take a run', async () => {
    const runId = await flow.startRun(flow.definitions.get('chain')!, { steps: 1 }, { delay: '1 hour' });
    await flow.pool.query('UPDATE durable_flow_workflow_runs SET wake_at = now() WHERE run_id = $1', [runId]);
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 50 });
    try {
      const clients = await Promise.all(Array.from({ length: 50 }, () => pool.connect()));
      const answers = await Promise.all(
        clients.map((client, i) => client.query({ ...flow.sql.claimRuns, values: [['default'], ['chain'], 1, `claimer-${i}`, 60_000, 0] })),
      );
      clients.forEach((client) => client.release());
      const winners = answers.filter((answer) => answer.rows[0].runs.length === 1);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.rows[0].runs[0].run_id).toBe(runId);
    } finally {
      await pool.end();
    }
  });

  it('hands running runs back when stop() is called in-process', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const wf = flow.workflow('stop-me', async ({ step }: WorkflowContext) => {
      await step.run('gate', () => gate);
      await step.run('next', () => 'never here');
    });
    const worker = flow.worker({ pollInterval: 100 });
    await worker.start();
    const run = await wf.start({});
    await eventually(async () => (await flow.getRun(run.runId))!.status === 'running');
    const stopped = worker.stop();
    release();
    await stopped;
    const info = await flow.getRun(run.runId);
    expect(info!.status).toBe('ready');
    expect(info!.lease).toBeNull();
    const timeline = await flow.timeline(run.runId);
    expect(timeline!.steps.map((s) => [s.step.name, s.step.status])).toEqual([['gate', 'succeeded']]);
  });

  it('takes every time decision with the database clock, whatever the app clock says', async () => {
    const wf = flow.workflow('clock', async ({ step }: WorkflowContext) => {
      await step.run('hold', () => new Promise((resolve) => setTimeout(resolve, 300)));
      await step.sleep('nap', '10 minutes');
    });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 5 * 60_000 });
    const worker = flow.worker({ pollInterval: 100 });
    try {
      await worker.start();
      const run = await wf.start({});
      const lease = await eventually(async () => {
        const { rows } = await flow.pool.query(
          `SELECT extract(epoch FROM lease_expires_at - now()) AS s FROM durable_flow_workflow_runs WHERE run_id = $1 AND lease_owner IS NOT NULL`,
          [run.runId],
        );
        return rows[0];
      });
      expect(Number(lease.s)).toBeGreaterThan(1);
      expect(Number(lease.s)).toBeLessThanOrEqual(2.1);
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'sleeping');
      const { rows } = await flow.pool.query(
        `SELECT extract(epoch FROM wake_at - now()) AS s FROM durable_flow_workflow_runs WHERE run_id = $1`,
        [run.runId],
      );
      expect(Number(rows[0].s)).toBeGreaterThan(590);
      expect(Number(rows[0].s)).toBeLessThan(601);
    } finally {
      vi.useRealTimers();
      await worker.stop();
    }
  });
});

describe('runs nobody can execute', () => {
  it('warns, naming the workflow and the fix, when due runs of an unregistered workflow pile up', async () => {
    const other = ctx.flow();
    const ghost = other.workflow('ghost', async () => 1);
    const run = await ghost.start({});
    await flow.pool.query(`UPDATE durable_flow_workflow_runs SET wake_at = now() - interval '2 minutes' WHERE run_id = $1`, [run.runId]);
    const warnings: string[] = [];
    const watcher = ctx.flow({ logger: { warn: (message) => warnings.push(message), error: () => undefined } });
    watcher.workflow('something-else', async () => 1);
    const worker = watcher.worker({ pollInterval: 100 });
    await worker.start();
    try {
      await eventually(() => warnings.length > 0);
      expect(warnings[0]).toMatch(/1 run\(s\) of workflow "ghost" have been due for over a minute and no worker claims them/);
      expect(warnings[0]).toMatch(/Register it with flow.workflow\('ghost', …\)/);
      expect((await flow.getRun(run.runId))!.status).toBe('enqueued');
    } finally {
      await worker.stop();
    }
  });
});

describe('LISTEN/NOTIFY', () => {
  it('wakes an idle worker at once, and again after its LISTEN connection is killed', async () => {
    const wf = flow.workflow('wake', async ({ input }: WorkflowContext<number>) => input);
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // let the first (empty) claim pass
      expect(await (await wf.start(1)).result({ timeout: '5 seconds' })).toBe(1);
      const pid = flow.listener.pid!;
      await flow.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(() => flow.listener.reconnects >= 1 && flow.listener.pid !== undefined && flow.listener.pid !== pid);
      expect(await (await wf.start(2)).result({ timeout: '5 seconds' })).toBe(2);
    } finally {
      await worker.stop();
    }
  });

  it('wakes a run waiting in another process when this one notifies', async () => {
    const worker = child();
    await worker.waitFor(/^READY/);
    const runId = await flow.startRun(flow.definitions.get('waiter')!, { k: 5 });
    await eventually(async () => (await flow.getRun(runId))!.status === 'waiting');
    const event = await flow.notify('go', { k: 5, note: 'from the parent' });
    expect(event.matchedWaits).toBe(1);
    expect(await flow.handle(runId).result({ timeout: '10 seconds' })).toEqual({ note: 'from the parent', pid: worker.pid });
  });

  it('still completes runs by polling when NOTIFY never arrives', async () => {
    const wf = flow.workflow('no-notify', async ({ input }: WorkflowContext<number>) => input);
    const worker = flow.worker({ pollInterval: 200 });
    await worker.start();
    try {
      // Hold the wake trigger off: runs are inserted already claimable but nothing NOTIFYs.
      await flow.pool.query('ALTER TABLE durable_flow_workflow_runs DISABLE TRIGGER durable_flow_wake_on_insert');
      const runs = await Promise.all([1, 2, 3].map((n) => wf.start(n)));
      expect(await Promise.all(runs.map((r) => r.result({ timeout: '10 seconds' })))).toEqual([1, 2, 3]);
    } finally {
      await flow.pool.query('ALTER TABLE durable_flow_workflow_runs ENABLE TRIGGER durable_flow_wake_on_insert');
      await worker.stop();
    }
  });

  it('ignores malformed notifications on its channels', async () => {
    const wf = flow.workflow('after-junk', async () => 'fine');
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    const changes: unknown[] = [];
    const unsubscribe = flow.onChange((change) => void changes.push(change));
    try {
      await flow.changesReady();
      await flow.pool.query(`SELECT pg_notify('durable_flow_changes', 'not json at all'), pg_notify('durable_flow_wake', repeat('x', 7000))`);
      expect(await (await wf.start({})).result({ timeout: '5 seconds' })).toBe('fine');
      await eventually(() => changes.length > 0);
    } finally {
      unsubscribe();
      await worker.stop();
    }
  });
});
