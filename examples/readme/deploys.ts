// The README's "Deploying changed code", run by test/docs/readme.test.ts: runs started under the old
// code (one already past the changed step, one before it), then the new code checked and deployed.
import { DurableFlow } from 'durable-flow';
import { createTestHarness } from 'durable-flow/testing';

const sent: string[] = [];
const mailer = { send: (to: string, template: string) => sent.push(`${template} → ${to}`) };

// The code deployed until today: a welcome mail, a week later a reminder, then wait for activation.
const before = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await before.migrate();
const old = before.workflow('welcome_series', async ({ input, step }) => {
  await step.run('welcome', () => mailer.send(input.email, 'welcome'));
  await step.sleep('wait_a_week', '7 days');
  await step.run('reminder', () => mailer.send(input.email, 'reminder'));
  await step.waitForEvent('activated', { match: { email: input.email } });
});
const oldHarness = createTestHarness(before);
const past = await old.start({ email: 'ann@example.com' });
await oldHarness.drain();
await oldHarness.travel('7 days');
await oldHarness.drain(); // ann got the reminder and waits for activation
const early = await old.start({ email: 'bob@example.com' });
await oldHarness.drain(); // bob sleeps before the reminder
await before.close();

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
// #region readme
// The new code: a survey instead of the reminder, behind a patch gate.
flow.workflow('welcome_series', async ({ input, step }) => {
  await step.run('welcome', () => mailer.send(input.email, 'welcome'));
  await step.sleep('wait_a_week', '7 days');
  if (await step.patched('survey-instead-of-reminder')) {
    await step.run('survey', () => mailer.send(input.email, 'survey'));
  } else {
    await step.run('reminder', () => mailer.send(input.email, 'reminder')); // runs already past it
  }
  await step.waitForEvent('activated', { match: { email: input.email } });
});

// Before deploying (a CI step, or `npx durable-flow check ./dist/flow.js`): replays every run in flight
// against this code without running a step or writing anything.
const report = await flow.check();
const blocked = report.filter((run) => !run.ok); // [] here; else [{ runId, workflow, ok: false, divergence }]
// #endregion readme

const harness = createTestHarness(flow);
await harness.travelToNextWake();
await harness.drain(); // bob reaches the gate under the new code: the survey
await harness.resumeWorkflowsFor('activated', { email: 'ann@example.com' });
await harness.resumeWorkflowsFor('activated', { email: 'bob@example.com' });

export { flow, report, blocked, sent, past, early };
