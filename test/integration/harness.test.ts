import assert from 'node:assert/strict';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NonRetriableError, WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let onboarding: ReturnType<typeof defineOnboarding>;

// The onboarding workflow of the README's "Testing your workflows" section.
const sent: string[] = [];
function defineOnboarding(flow: DurableFlow) {
  return flow.workflow('onboarding', async ({ input, step, log }: WorkflowContext<{ userId: number }>) => {
    await step.run('send_welcome', () => sent.push(`welcome ${input.userId}`));
    await step.sleep('trial', '14 days');
    try {
      const upgrade = await step.waitForEvent<{ plan: string }>('upgraded', { match: { userId: input.userId }, timeout: '3 days' });
      log.info('Upgraded', { plan: upgrade.plan });
      return { plan: upgrade.plan };
    } catch (error) {
      if (!(error instanceof WaitTimeoutError)) throw error;
      await step.run('send_reminder', () => sent.push(`reminder ${input.userId}`));
      return { plan: 'free' };
    }
  });
}

beforeAll(async () => {
  ctx = await setupDatabase('harness');
  flow = ctx.flow();
  harness = createTestHarness(flow);
  onboarding = defineOnboarding(flow);
});
beforeEach(async () => {
  await harness.reset();
  sent.length = 0;
});
afterAll(async () => {
  await ctx.cleanup();
});

describe('the test harness', () => {
  it('runs the README onboarding example: sleep, event wait, upgrade branch', async () => {
    const wf = onboarding;
    const run = await wf.start({ userId: 7 });
    expect(await harness.drain()).toBe(1);
    await harness.assertSleeping(run, { step: 'trial' });
    await harness.travel('14 days');
    await harness.drain();
    await harness.assertWaitingFor(run, 'upgraded', { match: { userId: 7 } });
    await harness.resumeWorkflowsFor('upgraded', { userId: 7, plan: 'pro' });
    await harness.assertCompleted(run, { plan: 'pro' });
    await harness.assertLog(run, { level: 'info', message: 'Upgraded', data: { plan: 'pro' } });
    await harness.assertStepResult(run, 'send_welcome', 1);
    expect(sent).toEqual(['welcome 7']);
  });

  it('takes the timeout branch when no event comes, in milliseconds', async () => {
    const wf = onboarding;
    const run = await wf.start({ userId: 8 });
    await harness.drain();
    const wakeAt = await harness.travelToNextWake();
    expect(wakeAt.getTime() - Date.now()).toBeGreaterThan(13 * 86_400_000);
    await harness.drain();
    await harness.travelToNextWake(); // the 3-day timeout
    await harness.drain();
    await harness.assertCompleted(run, { plan: 'free' });
    await harness.assertStepAttempts(run, 'send_reminder', 1);
    expect(sent).toEqual(['welcome 8', 'reminder 8']);
  });

  it('fails with node:assert errors that say what the run is doing', async () => {
    const wf = onboarding;
    const run = await wf.start({ userId: 9 });
    await harness.drain();
    const error = await harness.assertCompleted(run).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(assert.AssertionError);
    expect((error as Error).message).toMatch(/Expected run to be completed, but run [\w-]+ \(onboarding\) is sleeping\n {2}step "send_welcome" succeeded, 1 attempt\(s\)\n {2}step "trial" sleeping/);
    const logError = await harness.assertLog(run, { message: /nope/ }).catch((e: unknown) => e);
    expect((logError as Error).message).toMatch(/to have logged message \/nope\/; its log lines:\n {2}\(no log lines\)/);
    await expect(harness.assertWaitingFor(run, 'upgraded')).rejects.toThrow(/Expected run to be waiting/);
  });

  it('asserts failures by error class, counts attempts, and resolves a workflow to its latest run', async () => {
    let calls = 0;
    const wf = flow.workflow('flaky-then-fatal', async ({ step }: WorkflowContext) => {
      await step.run('flaky', { retries: 2, backoff: { initial: '1 minute' } }, () => {
        if (++calls < 3) throw new Error('try again');
        return 'ok';
      });
      await step.run('fatal', () => {
        throw new NonRetriableError('stop');
      });
    });
    await wf.start({});
    await harness.drain();
    await harness.travelToNextWake();
    await harness.drain();
    await harness.travelToNextWake();
    await harness.drain();
    await harness.assertFailed(wf, NonRetriableError);
    await harness.assertFailed(wf, /stop/);
    await harness.assertStepAttempts(wf, 'flaky', 3);
    await expect(harness.assertFailed(wf, 'TypeError')).rejects.toThrow(/to fail with TypeError, but it failed with NonRetriableError: stop/);
  });

  it('captures live changes', async () => {
    const wf = flow.workflow('captured', async ({ step }: WorkflowContext) => step.run('one', () => 1));
    const changes = await harness.captureChanges(async () => {
      await wf.start({});
      await harness.drain();
    });
    const types = changes.map((c) => c.type);
    expect(types).toContain('workflow_run.created');
    expect(types).toContain('workflow_step.created');
    expect(changes.some((c) => c.type === 'workflow_run.updated' && c.snapshot.status === 'completed')).toBe(true);
  });
});
