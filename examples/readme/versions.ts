// The README's "Versions", run by test/docs/readme.test.ts: a run that release v1 started of a pinned
// workflow is left alone by the workers of v2, until v2 moves it to its own version and finishes it.
import { DurableFlow } from 'durable-flow';
import type { WorkflowContext } from 'durable-flow';

// Release v1 started a run and is gone (no worker of v1 is left).
const v1 = new DurableFlow({ databaseUrl: process.env.DATABASE_URL, version: 'v1' });
const quoteV1 = v1.workflow('quote', { versioning: 'pinned' }, async ({ step }: WorkflowContext) => step.run('price', () => 'v1 price'));
await v1.migrate();
const { runId } = await quoteV1.start({});
await v1.close();
process.env.GIT_SHA ??= 'v2';

// #region readme
// A stable version from the deploy; without one, a hash of the workflows' code (see below).
const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL, version: process.env.GIT_SHA });
flow.workflow('quote', { versioning: 'pinned' }, async ({ step }: WorkflowContext) => {
  return step.run('price', () => 'v2 price'); // changed code: a v1 run is not claimed by this worker
});
const worker = flow.worker();
await worker.start();

const before = await flow.getRun(runId); // { version: 'v1', pinnedVersion: 'v1', status: 'enqueued', … }
// Once no worker of v1 is left: its runs continue on this version's code (each audited, action 'repin').
const moved = await flow.repin('v1', { workflow: 'quote', actor: 'ops', reason: 'v1 retired' }); // → 1
const output = await flow.handle(runId).result({ timeout: '30 seconds' }); // 'v2 price'
// #endregion readme

export const observed = { version: flow.version, before: { version: before?.version, pinned: before?.pinnedVersion, status: before?.status }, moved, output };
await flow.close();
