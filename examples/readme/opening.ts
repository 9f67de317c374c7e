// The README's opening example, run by test/docs/readme.test.ts.
// #region readme
import { DurableFlow } from 'durable-flow';
import { approvals, payments } from './services.js'; // your app's own modules

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();

const refund = flow.workflow('refund', async ({ input, step, log }) => {
  const approval = await step.run('request_approval', () => approvals.create(input.orderId));
  const decision = await step.waitForEvent('decision', {
    event: 'refund_decided',
    match: { approvalId: approval.id },
    timeout: '2 days',
  });
  if (!decision.approved) return { refunded: false };
  const payment = await step.run('refund_payment', () => payments.refund(input.orderId));
  log.info('Refunded', { paymentId: payment.id });
  return { refunded: true, paymentId: payment.id };
});

await flow.worker().start();
const run = await refund.start({ orderId: 'ord_42' });
// …later, from a webhook or an admin's click, in any process:
await flow.notify('refund_decided', { approvalId: 'apr_ord_42', approved: true });
console.log(await run.result()); // { refunded: true, paymentId: 'pay_ord_42' }
// #endregion readme

export const result = await run.result();
await flow.close();
