// The README's "Waiting for several things: waitAny and waitAll", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();

// #region readme
const check = flow.workflow('background_check', async ({ input }) => ({ clear: input.name !== 'mallory' }));

export const onboarding = flow.workflow('onboarding', async ({ input, step }) => {
  const checkRun = await step.run('start_check', async ({ idempotencyKey }) =>
    (await check.start({ name: input.name }, { idempotencyKey })).runId);

  // Both documents, in any order (a branch that arrives first waits for the other; the run sleeps meanwhile).
  const docs = await step.waitAll('documents', {
    id: { event: 'id_uploaded', match: { userId: input.userId } },
    proof: { event: 'proof_uploaded', match: { userId: input.userId } },
  }, { timeout: '30 days' });

  // The first of: a reviewer's decision, the background check finishing, or two days passing.
  const first = await step.waitAny('review', {
    decided: { event: 'reviewed', match: { userId: input.userId } },
    check: { workflow: checkRun },
    expired: { sleep: '2 days' },
  });
  // first.key says which branch won; the others were settled in the same transaction and never fire.
  if (first.key === 'decided') return { approved: first.value.approved, docs };
  if (first.key === 'check') return { approved: first.value.result.clear, docs };
  return { approved: false, docs, reason: 'no decision in 2 days' };
});
// #endregion readme

export { flow };
