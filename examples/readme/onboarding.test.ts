// The README's "Testing your workflows" example, as the test it is (vitest).
import { afterAll } from 'vitest';
import { createDatabase } from '../../test/helpers/db.js';

const database = await createDatabase('readme');
process.env.TEST_DATABASE_URL = database.url;

// #region readme
import { test } from 'vitest';
import { DurableFlow, WaitTimeoutError } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const flow = new DurableFlow({ databaseUrl: process.env.TEST_DATABASE_URL });
await flow.migrate();
const harness = createTestHarness(flow);

const onboarding = flow.workflow('onboarding', async ({ input, step, log }) => {
  await step.run('send_welcome', () => mailer.welcome(input.userId));
  await step.sleep('trial', '14 days');
  try {
    const upgrade = await step.waitForEvent<{ plan: string }>('upgraded', { match: { userId: input.userId }, timeout: '3 days' });
    log.info('Upgraded', { plan: upgrade.plan });
    return { plan: upgrade.plan };
  } catch (error) {
    if (!(error instanceof WaitTimeoutError)) throw error;
    await step.run('send_reminder', () => mailer.remind(input.userId));
    return { plan: 'free' };
  }
});

test('upgrading during the trial', async () => {
  const run = await onboarding.start({ userId: 7 });
  await harness.drain();
  await harness.assertSleeping(run, { step: 'trial' });
  await harness.travel('14 days');
  await harness.drain();
  await harness.assertWaitingFor(run, 'upgraded', { match: { userId: 7 } });
  await harness.resumeWorkflowsFor('upgraded', { userId: 7, plan: 'pro' });
  await harness.assertCompleted(run, { plan: 'pro' });
  await harness.assertLog(run, { level: 'info', message: 'Upgraded', data: { plan: 'pro' } });
});

test('no upgrade: a reminder after the timeout', async () => {
  const run = await onboarding.start({ userId: 8 });
  await harness.drain();
  await harness.travelToNextWake(); // the end of the trial
  await harness.drain();
  await harness.travelToNextWake(); // the 3-day timeout
  await harness.drain();
  await harness.assertCompleted(run, { plan: 'free' });
  await harness.assertStepAttempts(run, 'send_reminder', 1);
});
// #endregion readme

const mailer = { welcome: (userId: number) => ({ to: userId }), remind: (userId: number) => ({ to: userId }) };
afterAll(async () => {
  await flow.close();
  await database.drop();
});
