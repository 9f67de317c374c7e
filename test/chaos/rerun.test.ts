/**
 * flow.rerunFrom with real worker processes (test/fixtures/ops-worker.ts, the `long` workflow of
 * ops-workflows.ts: first → long → last, each body printing `ENTER <runId> <step> <attempt>` and
 * returning its process's pid): a completed step before the chosen one never runs again, in any
 * process, also when the process running the rerun is killed mid-step.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { killAllChildren } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import type { TestContext } from '../helpers/flow.js';
import type { registerOpsWorkflows } from './ops-workflows.js';
import { opsSetup, opsWorker } from './setup.js';

let ctx: TestContext;
let flow: DurableFlow;
let workflows: ReturnType<typeof registerOpsWorkflows>;

beforeAll(async () => ({ ctx, flow, workflows } = await opsSetup('rerun_chaos')));
afterEach(() => killAllChildren());
afterAll(async () => {
  killAllChildren();
  await ctx.cleanup();
});

type LongResult = { first: number; long: number; last: number };

async function startWorkers(n: number): Promise<ChildWorker[]> {
  const workers = Array.from({ length: n }, () => opsWorker(ctx.db.url));
  await Promise.all(workers.map((w) => w.waitFor(/^READY/)));
  return workers;
}

/** How many times any of `workers` entered step `step` of run `runId`. */
const entries = (workers: ChildWorker[], runId: string, step: string) =>
  workers.reduce((n, w) => n + w.output.filter((line) => line.startsWith(`ENTER ${runId} ${step} `)).length, 0);

describe('rerunFrom across worker processes', () => {
  it('a completed step before the chosen step never runs again, whichever of three processes takes the rerun', async () => {
    const workers = await startWorkers(3);
    const originals = await Promise.all(Array.from({ length: 8 }, () => workflows.long.start({ ms: 10 })));
    const outcomes = (await Promise.all(originals.map((run) => run.result()))) as LongResult[];
    const reruns = await Promise.all(originals.map((run) => flow.rerunFrom(run.runId, 'long', { input: { ms: 10 }, actor: 'chaos' })));
    const results = (await Promise.all(reruns.map((run) => run.result()))) as LongResult[];
    reruns.forEach((rerun, i) => {
      expect(entries(workers, rerun.runId, 'first')).toBe(0);
      expect(entries(workers, rerun.runId, 'long')).toBe(1);
      expect(entries(workers, rerun.runId, 'last')).toBe(1);
      // The copied step's stored result: the pid of the process that ran the original's step.
      expect(results[i]!.first).toBe(outcomes[i]!.first);
    });
  });

  it('a rerun whose process is killed mid-step is finished by another without running the copied step', async () => {
    const workers = await startWorkers(2);
    const original = await workflows.long.start({ ms: 10 });
    const outcome = (await original.result()) as LongResult;
    const rerun = await flow.rerunFrom(original.runId, 'long', { input: { ms: 1500 } });
    const holder = await Promise.race(workers.map((w) => w.waitFor(new RegExp(`^ENTER ${rerun.runId} long `), 30_000).then(() => w)));
    holder.child.kill('SIGKILL');
    await holder.exited;
    const survivor = workers.find((w) => w !== holder)!;
    const result = (await rerun.result({ timeout: '60 seconds' })) as LongResult;
    expect(result.first).toBe(outcome.first);
    expect(result.long).toBe(survivor.pid);
    expect(entries(workers, rerun.runId, 'first')).toBe(0);
    expect(entries([survivor], rerun.runId, 'long')).toBe(1);
    expect((await flow.getRun(rerun.runId))!.replayOf).toBe(original.runId);
  });
});
