import type { DurableFlow, WorkflowContext } from '../lib/index.js';

export interface DemoOptions {
  /** How long the onboarding demo sleeps (a trial period, shortened for the demo). Default 10 seconds. */
  trialDelay?: string;
}

/** The demo's business processes. */
export function defineDemoWorkflows(flow: DurableFlow, options: DemoOptions = {}) {
  const refund = flow.workflow('refund_approval', async ({ input, step, log }: WorkflowContext<{ orderId: string; amount: number }>) => {
    const approval = await step.run('create_approval', () => ({ approvalId: `apr_${input.orderId}`, amount: input.amount }));
    log.info('Waiting for a decision', { approvalId: approval.approvalId });
    const decision = await step.waitForEvent<{ approved: boolean; by?: string }>('decision', {
      event: 'refund_approval_decided',
      match: { approvalId: approval.approvalId },
      timeout: '1 hour',
    });
    if (!decision.approved) {
      log.warn('Refund rejected', { by: decision.by });
      return { refunded: false };
    }
    const refundId = await step.run('issue_refund', () => `re_${approval.approvalId}`);
    return { refunded: true, refundId };
  });

  const onboarding = flow.workflow('trial_onboarding', async ({ input, step, log }: WorkflowContext<{ email: string }>) => {
    await step.run('send_welcome', () => ({ sentTo: input.email }));
    await step.sleep('trial_delay', options.trialDelay ?? '10 seconds');
    log.info('Trial period over', { email: input.email });
    return step.run('send_upgrade_offer', () => ({ offered: true }));
  });

  let flakyCalls = 0;
  const payment = flow.workflow('flaky_payment', async ({ step }: WorkflowContext) => {
    return step.run('charge_card', { retries: 3, backoff: { initial: '500 ms' } }, ({ attempt }) => {
      flakyCalls++;
      if (attempt < 3) throw new Error(`Card processor timed out (attempt ${attempt})`);
      return { chargeId: `ch_${flakyCalls}` };
    });
  });

  return { refund, onboarding, payment };
}
