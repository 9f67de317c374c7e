/**
 * flow.check() (a dry replay of every run in flight against the registered code), step.patched (a patch
 * gate memoized by a marker step) and the `durable-flow check` command line, on the three versions of
 * test/fixtures/check-workflows.ts: v1 deployed, v2 changes step "b" behind a patch gate, v3 without.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import express from 'express';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { registerOrder } from '../fixtures/check-workflows.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const root = path.resolve(import.meta.dirname, '../..');
let ctx: TestContext;
let v1: DurableFlow;
let v2: DurableFlow;
let v3: DurableFlow;
let none: DurableFlow;
/** Run ids: `past` went past the patched point under v1, `early` waits before it, `fresh` never ran. */
const runs = { past: '', early: '', fresh: '', past2: '' };

async function stepsOf(flow: DurableFlow, runId: string) {
  const timeline = await flow.timeline(runId);
  return Object.fromEntries(timeline!.steps.map(({ step }) => [step.name, step]));
}

async function waitingAt(flow: DurableFlow, runId: string, stepName: string) {
  await eventually(async () => (await stepsOf(flow, runId))[stepName]?.status === 'waiting' && (await flow.getRun(runId))?.status === 'waiting');
}

async function withWorker<T>(flow: DurableFlow, fn: () => Promise<T>): Promise<T> {
  const worker = flow.worker({ concurrency: 4, pollInterval: 50 });
  await worker.start();
  try {
    return await fn();
  } finally {
    await worker.stop();
  }
}

/** Every row of every table, as text: what "check wrote nothing" is compared on. */
async function everything(flow: DurableFlow): Promise<string> {
  const client = new pg.Client({ connectionString: ctx.db.url });
  await client.connect();
  try {
    const t = flow.tables;
    const parts: string[] = [];
    for (const table of [t.runs, t.steps, t.waits, t.events, t.logs]) {
      const { rows } = await client.query(`SELECT count(*)::int AS n, coalesce(md5(string_agg(x::text, ',' ORDER BY x.id)), '') AS h FROM ${table} x`);
      parts.push(`${table}:${rows[0].n}:${rows[0].h}`);
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
}

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bin/durable-flow.js', ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const byRun = (results: Awaited<ReturnType<DurableFlow['check']>>) => Object.fromEntries(results.map((r) => [r.runId, r]));

beforeAll(async () => {
  ctx = await setupDatabase('check');
  v1 = ctx.flow();
  v2 = ctx.flow();
  v3 = ctx.flow();
  none = ctx.flow();
  const order1 = registerOrder(v1, 'v1');
  const order2 = registerOrder(v2, 'v2');
  registerOrder(v3, 'v3');
  await withWorker(v1, async () => {
    const [past, early, past2] = await Promise.all([1, 2, 4].map((id) => order1.start({ id })));
    runs.past = past!.runId;
    runs.early = early!.runId;
    runs.past2 = past2!.runId;
    await Promise.all([runs.past, runs.early, runs.past2].map((runId) => waitingAt(v1, runId, 'w1')));
    await v1.notify('w1', { id: 1 });
    await v1.notify('w1', { id: 4 });
    await Promise.all([runs.past, runs.past2].map((runId) => waitingAt(v1, runId, 'w2')));
  });
  // Started under v2 while no worker runs: in flight, with no history yet.
  runs.fresh = (await order2.start({ id: 3 })).runId;
}, 60_000);

afterAll(async () => {
  await ctx?.cleanup();
});

describe('flow.check()', () => {
  it('reports every run in flight as ok under the code it runs, and writes nothing', async () => {
    const before = await everything(v1);
    const results = byRun(await v1.check());
    expect(Object.keys(results).sort()).toEqual(Object.values(runs).sort());
    for (const result of Object.values(results)) expect(result).toEqual({ runId: result.runId, workflow: 'order', ok: true });
    expect(await everything(v1)).toBe(before);
  });

  it('finds the first divergence of a changed workflow: position, stored step, requested step', async () => {
    const before = await everything(v3);
    const results = byRun(await v3.check());
    const b = (await stepsOf(v3, runs.past))['b']!;
    for (const runId of [runs.past, runs.past2]) {
      expect(results[runId]).toMatchObject({ ok: false, divergence: { position: b.position, stored: 'b', requested: 'b2' } });
      expect(results[runId]!.divergence!.reason).toContain('"b2"');
    }
    // Waiting before the change, or not started: they will run v3's steps from there on.
    expect(results[runs.early]).toMatchObject({ ok: true });
    expect(results[runs.fresh]).toMatchObject({ ok: true });
    expect(await everything(v3)).toBe(before);
  });

  it('accepts a patch gate for old and new runs alike', async () => {
    const before = await everything(v2);
    const results = await v2.check();
    expect(results).toHaveLength(4);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(await everything(v2)).toBe(before);
  });

  it('reports the runs of a workflow the flow does not register', async () => {
    const results = await none.check();
    expect(results).toHaveLength(4);
    for (const result of results) {
      expect(result.ok).toBe(false);
      expect(result.divergence!.reason).toBe('workflow "order" is not registered on this flow');
    }
  });

  it('reads its runs in batches', async () => {
    const results = await v1.check({ batchSize: 1 });
    expect(results.map((r) => r.runId).sort()).toEqual(Object.values(runs).sort());
    await expect(v1.check({ batchSize: 0 })).rejects.toThrow(/batchSize/);
  });
});

describe('flow.check() on other shapes of history', () => {
  let other: TestContext;
  afterAll(async () => {
    await other?.cleanup();
  });

  it('parallel branches whose steps finished out of order, a step that changed kind, code that returns early', async () => {
    other = await setupDatabase('check2');
    const deployed = other.flow();
    const par = deployed.workflow('par', async ({ step }) => {
      // Branch 1's first step finishes last, so "y2" is stored before "y1": a replay asks for "y1" first.
      await Promise.all([1, 2].map(async (i) => {
        await step.run(`x${i}`, () => new Promise((resolve) => setTimeout(resolve, i === 1 ? 100 : 0)));
        await step.run(`y${i}`, () => i);
      }));
      await step.waitForEvent('go');
    });
    let runId = '';
    await withWorker(deployed, async () => {
      runId = (await par.start({})).runId;
      await waitingAt(deployed, runId, 'go');
    });
    const stored = await stepsOf(deployed, runId);
    expect(stored['y2']!.position!).toBeLessThan(stored['y1']!.position!);
    expect(await deployed.check()).toEqual([{ runId, workflow: 'par', ok: true }]);

    const kind = other.flow();
    kind.workflow('par', async ({ step }) => {
      await Promise.all([1, 2].map(async (i) => {
        await step.run(`x${i}`, () => 0);
        await step.run(`y${i}`, () => i);
      }));
      await step.sleep('go', '1 day');
    });
    expect(await kind.check()).toEqual([
      expect.objectContaining({ runId, ok: false, divergence: expect.objectContaining({ position: stored['go']!.position, stored: 'go', requested: 'go' }) }),
    ]);

    const early = other.flow();
    early.workflow('par', async ({ step }) => step.run('x1', () => 0));
    const [result] = await early.check();
    expect(result).toMatchObject({ runId, ok: false, divergence: { position: stored['x2']!.position, stored: 'x2', requested: null } });
    expect(result!.divergence!.reason).toContain('returns before reaching stored step "x2"');
  });
});

describe('durable-flow check (the command line)', () => {
  const env = (version: string, exported = 'default') => ({ DATABASE_URL: ctx.db.url, CHECK_VERSION: version, CHECK_EXPORT: exported });
  const fixture = 'test/fixtures/check-flow.ts';

  it('exits 0 when every run in flight replays, with a summary', async () => {
    const { code, stdout } = await cli(['check', fixture], env('v2'));
    expect(stdout).toContain('all 4 run(s) in flight replay');
    expect(code).toBe(0);
  });

  it('exits 1 and prints each run that would not replay (a named export `flow`)', async () => {
    const { code, stdout } = await cli(['check', fixture], env('v3', 'named'));
    const lines = stdout.trim().split('\n');
    expect(lines.filter((line) => line.includes('would not replay at position')).map((line) => line.split(' ')[0]).sort()).toEqual([runs.past, runs.past2].sort());
    expect(lines.at(-1)).toContain('2 of 4 run(s) in flight would not replay (workflows: order)');
    expect(code).toBe(1);
  });

  it('exits 2 with its usage on a usage error', async () => {
    for (const args of [[], ['verify', fixture], ['check'], ['check', fixture, 'extra'], ['check', 'test/fixtures/missing.js']]) {
      const { code, stderr } = await cli(args, env('v2'));
      expect(stderr, args.join(' ')).toContain('Usage: durable-flow check <module>');
      expect(code, args.join(' ')).toBe(2);
    }
    const { code, stderr } = await cli(['check', fixture], env('v2', 'none'));
    expect(stderr).toContain('exports no DurableFlow');
    expect(code).toBe(2);
  });
});

describe('step.patched', () => {
  it('takes the old branch in a run that went past it, the new one in runs that reach it, on every replay', async () => {
    await withWorker(v2, async () => {
      await v2.notify('w1', { id: 2 });
      await v2.notify('w1', { id: 3 });
      await Promise.all([runs.early, runs.fresh].map((runId) => waitingAt(v2, runId, 'w2')));
      // Replayed with their markers stored: the new branch again (without the marker, the stored
      // "b2" would make the gate say false).
      const again = byRun(await v2.check());
      expect(again[runs.early]!.ok && again[runs.fresh]!.ok).toBe(true);
      // With the patch removed (v3 is v2 without the gate), the runs that took the new branch replay too.
      const removed = byRun(await v3.check());
      expect(removed[runs.early]!.ok && removed[runs.fresh]!.ok).toBe(true);
      for (const id of [1, 2, 3]) await v2.notify('w2', { id });
      expect(await v2.handle(runs.past).result()).toBe('old');
      expect(await v2.handle(runs.early).result()).toBe('new');
      expect(await v2.handle(runs.fresh).result()).toBe('new');
    });
    const markers = await Promise.all([runs.past, runs.early, runs.fresh].map(async (runId) => (await stepsOf(v2, runId))['patch:new-b']));
    expect(markers.map((m) => [m?.kind, m?.status, m?.result])).toEqual([
      ['patch', 'succeeded', false],
      ['patch', 'succeeded', true],
      ['patch', 'succeeded', true],
    ]);
    expect(Object.keys(await stepsOf(v2, runs.past))).not.toContain('b2');
    expect(Object.keys(await stepsOf(v2, runs.early))).not.toContain('b');
  });

  it('shows the branch taken in the viewer', async () => {
    const app = express().use('/df', v2.router({ allowUnauthenticated: true }));
    const page = async (runId: string) => (await request(app).get(`/df/runs/${encodeURIComponent(runId)}`).expect(200)).text;
    expect(await page(runs.past)).toMatch(/<span class="kind">patch<\/span> new-b: old code/);
    expect(await page(runs.early)).toMatch(/<span class="kind">patch<\/span> new-b: new code/);
  });

  it('is what check() predicted: the run it reported fails with NON_DETERMINISTIC under v3', async () => {
    await withWorker(v3, async () => {
      await v3.notify('w2', { id: 4 });
      const run = await eventually(async () => {
        const info = await v3.getRun(runs.past2);
        return info?.status === 'failed' ? info : null;
      });
      expect(run.error?.code).toBe('NON_DETERMINISTIC');
    });
  });
});
