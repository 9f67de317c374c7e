import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

// Versions (issue 15, point 1): every run stores the version of the flow that started it; the runs of a
// `versioning: 'pinned'` workflow are claimed only by workers of that version (claims, a notify's local
// claim), never failed for want of one, and flow.repin() moves them to another version.
let ctx: TestContext;

beforeAll(async () => {
  ctx = await setupDatabase('versions');
});
afterAll(() => ctx.cleanup());

/** Which flow executed each step body: `${runId}/${step}` → version. */
const executedBy = new Map<string, string[]>();
const record = (runId: string, step: string, version: string): string => {
  const key = `${runId}/${step}`;
  executedBy.set(key, [...(executedBy.get(key) ?? []), version]);
  return version;
};

/** A flow of version `version` registering the pinned and the any workflows (same names in every version). */
function versionedFlow(version: string) {
  const flow = ctx.flow({ version, leaseTtl: '5 seconds' });
  const body = async ({ step, runId }: WorkflowContext) => {
    const first = await step.run('first', () => record(runId, 'first', version));
    // A suspension between the steps: the second is executed after a new claim.
    await step.sleep('pause', 20);
    const second = await step.run('second', () => record(runId, 'second', version));
    return [first, second];
  };
  const pinned = flow.workflow('v-pinned', { versioning: 'pinned' }, body);
  const any = flow.workflow('v-any', body);
  const waiter = flow.workflow('v-waiter', { versioning: 'pinned' }, async ({ step, runId }: WorkflowContext) => {
    const payload = await step.waitForEvent('go', { event: 'v-go', match: { runId }, timeout: '1 hour' });
    return step.run('after', () => record(runId, 'after', version) + String((payload as { n: number }).n));
  });
  const child = flow.workflow('v-child', { versioning: 'pinned' }, async ({ step, runId }: WorkflowContext) =>
    step.run('child', () => record(runId, 'child', version)),
  );
  const parent = flow.workflow('v-parent', async ({ step }: WorkflowContext) => step.invoke('child', 'v-child', {}));
  return { flow, pinned, any, waiter, child, parent };
}

describe('versions', () => {
  it('stores the flow version on every run; pinned runs are executed only by workers of their version, others by any', async () => {
    const v1 = versionedFlow('v1');
    const v2 = versionedFlow('v2');
    const v3 = versionedFlow('v3'); // starts a run and has no worker
    await v1.flow.migrate();
    expect(v1.flow.version).toBe('v1');

    // Started before anything else, so it is due first: any claim that could take it would.
    const stranded = await v3.pinned.start({});
    const runs1 = await Promise.all(Array.from({ length: 8 }, () => v1.pinned.start({})));
    const runs2 = await Promise.all(Array.from({ length: 8 }, () => v2.pinned.start({})));
    const anyRuns = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? v1 : v2).any.start({})));
    const w1 = v1.flow.worker({ concurrency: 4, pollInterval: 50 });
    const w2 = v2.flow.worker({ concurrency: 4, pollInterval: 50 });
    await Promise.all([w1.start(), w2.start()]);
    try {
      for (const run of runs1) await expect(run.result({ timeout: '20 seconds' })).resolves.toEqual(['v1', 'v1']);
      for (const run of runs2) await expect(run.result({ timeout: '20 seconds' })).resolves.toEqual(['v2', 'v2']);
      const anyResults = await Promise.all(anyRuns.map((run) => run.result({ timeout: '20 seconds' }) as Promise<string[]>));
      expect(anyResults.flat().every((v) => v === 'v1' || v === 'v2')).toBe(true);
      // Each step body ran once, on a flow of the run's version.
      for (const run of runs1) expect([executedBy.get(`${run.runId}/first`), executedBy.get(`${run.runId}/second`)]).toEqual([['v1'], ['v1']]);
      for (const run of runs2) expect([executedBy.get(`${run.runId}/first`), executedBy.get(`${run.runId}/second`)]).toEqual([['v2'], ['v2']]);

      const info1 = await v1.flow.getRun(runs1[0]!.runId);
      expect({ version: info1?.version, pinned: info1?.pinnedVersion }).toEqual({ version: 'v1', pinned: 'v1' });
      const infoAny = await v1.flow.getRun(anyRuns[0]!.runId);
      expect({ version: infoAny?.version, pinned: infoAny?.pinnedVersion }).toEqual({ version: 'v2', pinned: null });

      // The v3 run, due before all of them, was never claimed: it waits, not failed.
      const waiting = await v1.flow.getRun(stranded.runId);
      expect({ status: waiting?.status, attempts: waiting?.attempts, version: waiting?.version, pinned: waiting?.pinnedVersion }).toEqual({
        status: 'enqueued',
        attempts: 0,
        version: 'v3',
        pinned: 'v3',
      });
      expect(executedBy.has(`${stranded.runId}/first`)).toBe(false);

      // Moved to v2, a v2 worker finishes it.
      await expect(v2.flow.repin('v3', { actor: 'ops', reason: 'v3 is gone' })).resolves.toBe(1);
      await expect(stranded.result({ timeout: '20 seconds' })).resolves.toEqual(['v2', 'v2']);
      const moved = await v2.flow.getRun(stranded.runId);
      expect({ version: moved?.version, pinned: moved?.pinnedVersion }).toEqual({ version: 'v3', pinned: 'v2' });
      const [entry] = await v2.flow.audit({ runId: stranded.runId });
      expect(entry).toMatchObject({ action: 'repin', actor: 'ops', reason: 'v3 is gone', workflow: 'v-pinned', details: { from: 'v3', to: 'v2' } });
      // Nothing is left pinned to v3, and finished runs are never moved.
      await expect(v2.flow.repin('v3')).resolves.toBe(0);
      await expect(v2.flow.repin('v1')).resolves.toBe(0);
    } finally {
      await Promise.all([w1.stop(), w2.stop()]);
    }
  });

  it("a notify's local claim takes a woken pinned run only for a worker of its version", async () => {
    const v1 = versionedFlow('n1');
    const v2 = versionedFlow('n2');
    const w1 = v1.flow.worker({ concurrency: 2, pollInterval: 50 });
    await w1.start();
    const run = await v1.waiter.start({});
    await eventually(async () => (await v1.flow.getRun(run.runId))?.status === 'waiting');
    await w1.stop();
    const w2 = v2.flow.worker({ concurrency: 4, pollInterval: 50 });
    await w2.start();
    try {
      expect(w2.freeSlots).toBeGreaterThan(0);
      // v2's worker has free slots: the notify would lease the woken run to it, were it not pinned to n1.
      const event = await v2.flow.notify('v-go', { runId: run.runId, n: 7 });
      expect(event.matchedWaits).toBe(1);
      const { rows } = await v2.flow.pool.query(`SELECT status, lease_owner FROM durable_flow_workflow_runs WHERE run_id = $1`, [run.runId]);
      expect(rows[0]).toEqual({ status: 'ready', lease_owner: null });
      // A worker of its version takes it.
      const again = v1.flow.worker({ concurrency: 2, pollInterval: 50 });
      await again.start();
      try {
        await expect(run.result({ timeout: '20 seconds' })).resolves.toBe('n17');
        expect(executedBy.get(`${run.runId}/after`)).toEqual(['n1']);
      } finally {
        await again.stop();
      }
    } finally {
      await w2.stop();
    }
  });

  it("child runs carry their starter's version (and its pin)", async () => {
    const c1 = versionedFlow('c1');
    const c2 = versionedFlow('c2');
    const w2 = c2.flow.worker({ concurrency: 4, pollInterval: 50 });
    const w1 = c1.flow.worker({ concurrency: 4, pollInterval: 50 });
    await Promise.all([w1.start(), w2.start()]);
    try {
      const parent = await c1.parent.start({});
      const outcome = (await parent.result({ timeout: '20 seconds' })) as { runId: string; result: unknown };
      expect(outcome.result).toBe('c1');
      const child = await c1.flow.getRun(outcome.runId);
      expect({ version: child?.version, pinned: child?.pinnedVersion, output: child?.output }).toEqual({ version: 'c1', pinned: 'c1', output: 'c1' });
    } finally {
      await Promise.all([w1.stop(), w2.stop()]);
    }
  });

  it('the default version is a hash of the workflows: the same for the same code, another when a handler changes', () => {
    const make = (handler: () => unknown, options: { retries?: number } = {}) => {
      const flow = new DurableFlow({ databaseUrl: ctx.db.url, logger: false });
      flow.workflow('b', async () => 'b');
      flow.workflow('a', options, handler);
      return flow;
    };
    const same1 = make(async () => 1);
    const same2 = make(async () => 1);
    const changed = make(async () => 2);
    const retried = make(async () => 1, { retries: 7 });
    expect(same1.version).toMatch(/^code-[0-9a-f]{12}$/);
    expect(same2.version).toBe(same1.version);
    expect(changed.version).not.toBe(same1.version);
    expect(retried.version).not.toBe(same1.version);
    // Registration order does not matter (sorted by name).
    const reordered = new DurableFlow({ databaseUrl: ctx.db.url, logger: false });
    reordered.workflow('a', async () => 1);
    reordered.workflow('b', async () => 'b');
    expect(reordered.version).toBe(same1.version);
    return Promise.all([same1, same2, changed, retried, reordered].map((f) => f.close()));
  });

  it('refuses a bad version, a bad versioning and a bad repin', async () => {
    const url = ctx.db.url;
    for (const version of ['', 'x'.repeat(201), 42]) {
      expect(() => new DurableFlow({ databaseUrl: url, version: version as string })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('`version`') }));
    }
    const longest = new DurableFlow({ databaseUrl: url, logger: false, version: 'x'.repeat(200) });
    expect(longest.version).toHaveLength(200);
    await longest.close();
    const flow = ctx.flow({ version: 'r1' });
    expect(() => flow.workflow('bad', { versioning: 'sometimes' as 'any' }, async () => 1)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringMatching(/`versioning`.*'any'.*'pinned'/) }),
    );
    await expect(flow.repin('')).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    await expect(flow.repin('r0', { workflow: 5 as unknown as string })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  });

  it('the viewer shows the runs pinned to another version, and moves them to its own', async () => {
    const old = versionedFlow('w-old');
    const viewerFlow = versionedFlow('w-new');
    const run = await old.pinned.start({});
    const app = express();
    const auth = { username: 'ops', password: 'pw' };
    app.use('/df', viewerFlow.flow.router({ basicAuth: auth }));
    const get = (path: string) => request(app).get(`/df${path}`).auth(auth.username, auth.password);

    const runPage = await get(`/runs/${encodeURIComponent(run.runId)}`);
    expect(runPage.status).toBe(200);
    expect(runPage.text).toContain('<code>w-old</code></span><span class="hint">pinned: only workers of <code>w-old</code> claim it');

    const page = await get('/workflows');
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<strong>1<\/strong> run\(s\) wait for a worker of version <code>w-old<\/code>: v-pinned \(1\)/);
    const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    const moved = await request(app).post('/df/versions/repin').auth(auth.username, auth.password).set('Cookie', cookie).set('Accept', 'application/json')
      .type('form').send({ _csrf: token, from: 'w-old', reason: 'retired' });
    expect(moved.status).toBe(200);
    expect(moved.body).toEqual({ ok: true, moved: 1 });
    expect(await viewerFlow.flow.getRun(run.runId)).toMatchObject({ version: 'w-old', pinnedVersion: 'w-new' });
    const [entry] = await viewerFlow.flow.audit({ runId: run.runId });
    expect(entry).toMatchObject({ action: 'repin', actor: 'ops', reason: 'retired' });
    expect((await get('/workflows')).text).not.toContain('wait for a worker of version');
  });
});
