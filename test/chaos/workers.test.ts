/**
 * Worker processes killed, frozen and stopped mid-run (reliability.md A1, A2, A6, A7, A9, A11), with
 * real child processes (test/fixtures/worker-process.ts) that record every step entry.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren } from '../helpers/child.js';
import { crashSetup, crashWorker } from '../helpers/crash.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;

beforeAll(async () => ({ ctx, flow } = await crashSetup('worker')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

const child = (env: Record<string, string> = {}) => crashWorker(ctx.db.url, env);

async function effects(runId: string): Promise<{ step: string; pid: number }[]> {
  const { rows } = await flow.pool.query('SELECT step, pid FROM test_effects WHERE run_id = $1 ORDER BY id', [runId]);
  return rows;
}

const crashy = () => flow.definitions.get('crashy')!;

async function startCrashy(slowMs = 0): Promise<string> {
  return flow.startRun(crashy(), { slowMs });
}

describe('crashes (real child processes)', () => {
  it('A1: resumes a SIGKILLed worker’s run elsewhere: the completed step is not run again, the interrupted one is', async () => {
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

  it('A2: runs a step again when its worker died between the side effect and the commit', async () => {
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

  it('A1: resumes a cursor step from its last advanced cursor after a SIGKILL', async () => {
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

  it('A7: fails a run whose step kills its process every time, instead of crash-looping', async () => {
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

  it('A9: fences a frozen worker that lost its lease: it can write nothing when it wakes', async () => {
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

  it('A6: hands a run back at once on SIGTERM, after the running step finishes', async () => {
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
  it('A11: lets exactly one of 50 concurrent claimers take a run', async () => {
    const runId = await flow.startRun(flow.definitions.get('chain')!, { steps: 1 }, { delay: '1 hour' });
    await flow.pool.query('UPDATE durable_flow_workflow_runs SET wake_at = now() WHERE run_id = $1', [runId]);
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 50 });
    try {
      const clients = await Promise.all(Array.from({ length: 50 }, () => pool.connect()));
      const answers = await Promise.all(
        clients.map((client, i) => client.query({ ...flow.sql.claimRuns, values: [['default'], ['chain'], 1, `claimer-${i}`, 60_000, 0, flow.version] })),
      );
      clients.forEach((client) => client.release());
      const winners = answers.filter((answer) => answer.rows[0].runs.length === 1);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.rows[0].runs[0].run_id).toBe(runId);
    } finally {
      await pool.end();
    }
  });
});
