/**
 * Pinned versions with real worker processes (issue 15): a worker process of version v1 and one of v2
 * claim from one database; the runs of the pinned workflow each version started are executed only by
 * the process of that version (every step of them, also after a suspension), the unpinned ones by
 * either. Runs of v3, which has no worker, wait unclaimed until flow.repin() moves them to v2.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await setupDatabase('versions_chaos');
});
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

/** A flow of `version` that only starts runs (no worker): the same workflows as the fixture. */
function starter(version: string) {
  const flow = ctx.flow({ version });
  const body = async (): Promise<unknown> => null;
  return { flow, vp: flow.workflow('vp', { versioning: 'pinned' }, body), va: flow.workflow('va', body) };
}

describe('pinned versions across worker processes', () => {
  it('runs of each version finish only on the worker process of that version; a version with no worker waits until repinned', async () => {
    const [s1, s2, s3] = [starter('v1'), starter('v2'), starter('v3')];
    await s1.flow.migrate();
    const stranded = await Promise.all([1, 2, 3].map(() => s3.vp.start({})));
    const pinned1 = await Promise.all(Array.from({ length: 12 }, () => s1.vp.start({})));
    const pinned2 = await Promise.all(Array.from({ length: 12 }, () => s2.vp.start({})));
    const loose = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? s1 : s2).va.start({})));

    const w1 = spawnFixture('version-worker.ts', { DATABASE_URL: ctx.db.url, VERSION: 'v1' });
    const w2 = spawnFixture('version-worker.ts', { DATABASE_URL: ctx.db.url, VERSION: 'v2' });
    await Promise.all([w1.waitFor(/^READY/, 30_000), w2.waitFor(/^READY/, 30_000)]);
    const expectOn = (version: string, pid: number) => [`${version}:${pid}`, `${version}:${pid}`];

    for (const run of pinned1) expect(await run.result({ timeout: '60 seconds' })).toEqual(expectOn('v1', w1.pid));
    for (const run of pinned2) expect(await run.result({ timeout: '60 seconds' })).toEqual(expectOn('v2', w2.pid));
    const looseOutputs = (await Promise.all(loose.map((run) => run.result({ timeout: '60 seconds' })))) as string[][];
    const allowed = new Set([`v1:${w1.pid}`, `v2:${w2.pid}`]);
    expect(looseOutputs.flat().every((value) => allowed.has(value))).toBe(true);

    // Started first (due first), never claimed by either process.
    for (const run of stranded) {
      expect(await s1.flow.getRun(run.runId)).toMatchObject({ status: 'enqueued', attempts: 0, version: 'v3', pinnedVersion: 'v3' });
    }
    await expect(s2.flow.repin('v3', { actor: 'chaos' })).resolves.toBe(3);
    for (const run of stranded) expect(await run.result({ timeout: '60 seconds' })).toEqual(expectOn('v2', w2.pid));

    w1.child.kill('SIGTERM');
    w2.child.kill('SIGTERM');
    await Promise.all([w1.waitFor(/^STOPPED/, 30_000), w2.waitFor(/^STOPPED/, 30_000)]);
  });
});
