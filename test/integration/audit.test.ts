import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
beforeAll(async () => {
  ctx = await setupDatabase('audit');
  flow = ctx.flow();
  await flow.migrate();
});
afterAll(async () => {
  await ctx?.cleanup();
});

describe('flow.audit', () => {
  it('lists newest first across more than ten entries, pages with before, and filters by action and actor', async () => {
    const harness = createTestHarness(flow);
    const wf = flow.workflow('audited_job', async ({ step }) => step.sleep('nap', '1 day'));
    const runs = await Promise.all(Array.from({ length: 12 }, () => wf.start({})));
    await harness.drain();
    for (const [i, run] of runs.entries()) await flow.pause(run.runId, { actor: i % 2 === 0 ? 'even' : 'odd', reason: `#${i}` });
    const all = await flow.audit({ workflow: 'audited_job' });
    expect(all.map((e) => e.reason)).toEqual(runs.map((_, i) => `#${i}`).reverse());
    const ids = all.map((e) => BigInt(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? 1 : -1)));

    const first = await flow.audit({ workflow: 'audited_job', limit: 5 });
    const second = await flow.audit({ workflow: 'audited_job', limit: 5, before: first.at(-1)!.id });
    const third = await flow.audit({ workflow: 'audited_job', limit: 5, before: second.at(-1)!.id });
    expect([...first, ...second, ...third].map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(third).toHaveLength(2);

    expect((await flow.audit({ actor: 'odd' })).map((e) => e.reason)).toEqual(['#11', '#9', '#7', '#5', '#3', '#1']);
    expect(await flow.audit({ action: 'resume' })).toEqual([]);
    expect((await flow.audit({ runId: runs[3]!.runId }))[0]).toMatchObject({ action: 'pause', actor: 'odd', runId: runs[3]!.runId, workflow: 'audited_job' });
  });

  it('refuses a bad query naming what is wrong', async () => {
    await expect(flow.audit({ limit: 0 })).rejects.toThrow(/`limit`/);
    await expect(flow.audit({ limit: 5000 })).rejects.toThrow(/`limit`/);
    await expect(flow.audit({ before: 'abc' })).rejects.toThrow(/`before`/);
    await expect(flow.audit({ action: 'explode' as never })).rejects.toThrow(/`action`/);
    await expect(flow.audit({ runId: '' })).rejects.toThrow(/`runId`/);
    await expect(flow.audit('x' as never)).rejects.toThrow(/audit query/);
  });
});
