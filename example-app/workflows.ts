import { NonRetriableError, WaitTimeoutError } from '../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../lib/index.js';

export interface DemoOptions {
  /** How long the onboarding demo's trial lasts (a durable sleep). Default `'20 seconds'`. */
  trialDelay?: string;
  /** How long onboarding waits for an upgrade after the trial. Default `'30 seconds'`. */
  upgradeWindow?: string;
  /** How long a refund waits for a decision before it is escalated. Default `'10 minutes'`. */
  decisionTimeout?: string;
  /** Backoff of the flaky payment's retries. Default `'1 second'` (then doubling). */
  paymentBackoff?: string;
  /** Backoff of the shipping label's retries (all fail while the printer is jammed). Default `'1 second'`. */
  labelBackoff?: string;
}

export interface RefundInput {
  orderId: string;
  amount: number;
  reason: string;
}

/** A stand-in for the app's own tables and services (the demo keeps them in memory). */
export class DemoServices {
  readonly approvals = new Map<string, { approvalId: string; orderId: string; amount: number; status: string }>();
  readonly emails: { to: string; template: string }[] = [];
  paymentAttempts = 0;
  /** The label printer starts jammed: every label fails until someone fixes it on the home page. */
  printerJammed = true;

  createApproval(orderId: string, amount: number) {
    const approvalId = `apr_${orderId}`;
    const approval = { approvalId, orderId, amount, status: 'pending' };
    this.approvals.set(approvalId, approval);
    return approval;
  }

  sendEmail(to: string, template: string) {
    this.emails.push({ to, template });
    return { messageId: `msg_${this.emails.length}`, template };
  }

  printLabel(orderId: string) {
    if (this.printerJammed) throw new Error('The label printer is jammed: fix it on the demo’s home page, then Retry this run');
    return { labelId: `lbl_${orderId}` };
  }

  reset() {
    this.approvals.clear();
    this.emails.length = 0;
    this.paymentAttempts = 0;
    this.printerJammed = true;
  }
}

/** The demo's business processes, one per part of the library. */
export function defineDemoWorkflows(flow: DurableFlow, services: DemoServices, options: DemoOptions = {}) {
  /** Human in the loop: someone approves or rejects the refund on the demo's home page. */
  const refund = flow.workflow('refund_approval', async ({ input, step, log }: WorkflowContext<RefundInput>) => {
    const approval = await step.run('create_approval', () => services.createApproval(input.orderId, input.amount));
    log.info('Waiting for a decision', { approvalId: approval.approvalId, amount: input.amount });
    let decision: { approved: boolean; by: string; note?: string };
    try {
      decision = await step.waitForEvent('decision', {
        event: 'refund_approval_decided',
        match: { approvalId: approval.approvalId },
        timeout: options.decisionTimeout ?? '10 minutes',
      });
    } catch (error) {
      if (!(error instanceof WaitTimeoutError)) throw error;
      log.warn('No decision in time: escalated to the finance team', { approvalId: approval.approvalId });
      await step.run('escalate', () => services.sendEmail('finance@example.com', 'refund_escalated'));
      return { refunded: false, escalated: true };
    }
    if (!decision.approved) {
      log.warn('Refund rejected', { by: decision.by });
      await step.run('notify_rejection', () => services.sendEmail('customer@example.com', 'refund_rejected'));
      return { refunded: false, by: decision.by };
    }
    const refundId = await step.run('issue_refund', ({ idempotencyKey }) => ({ refundId: `re_${approval.approvalId}`, idempotencyKey }));
    log.info('Refund issued', { refundId: refundId.refundId, by: decision.by });
    return { refunded: true, refundId: refundId.refundId, by: decision.by };
  });

  /** A trial: welcome, a durable sleep, then an upgrade or a nudge (event wait with a timeout). */
  const onboarding = flow.workflow('trial_onboarding', async ({ input, step, log }: WorkflowContext<{ email: string; accountId: string }>) => {
    await step.run('send_welcome', () => services.sendEmail(input.email, 'welcome'));
    log.info('Trial started', { accountId: input.accountId });
    await step.sleep('trial_period', options.trialDelay ?? '20 seconds');
    log.info('Trial over', { accountId: input.accountId });
    try {
      const upgrade = await step.waitForEvent<{ plan: string }>('upgrade', {
        event: 'account_upgraded',
        match: { accountId: input.accountId },
        timeout: options.upgradeWindow ?? '30 seconds',
      });
      await step.run('send_thanks', () => services.sendEmail(input.email, `thanks_${upgrade.plan}`));
      return { plan: upgrade.plan };
    } catch (error) {
      if (!(error instanceof WaitTimeoutError)) throw error;
      await step.run('send_last_chance', () => services.sendEmail(input.email, 'last_chance'));
      return { plan: 'free' };
    }
  });

  /** One child run per line item, at most two at a time. */
  const lineItem = flow.workflow('fulfil_line_item', async ({ input, step }: WorkflowContext<{ sku: string; quantity: number }>) => {
    const reserved = await step.run('reserve_stock', async () => {
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.round(Math.random() * 700)));
      return { sku: input.sku, reserved: input.quantity };
    });
    await step.run('pack', () => ({ parcel: `pcl_${input.sku}` }));
    return reserved;
  });
  const order = flow.workflow('order_fanout', async ({ input, step, log }: WorkflowContext<{ orderId: string; items: { sku: string; quantity: number }[] }>) => {
    log.info('Fulfilling order', { orderId: input.orderId, lines: input.items.length });
    const lines = await step.invokeMany('lines', input.items, { key: 'sku', concurrency: 2 }, (item) => ({ workflow: lineItem, input: item }));
    await step.run('ship', () => ({ shipped: lines.length }));
    return { orderId: input.orderId, lines: lines.map((line) => ({ sku: line.key, status: line.status })) };
  });

  /** A card processor that times out twice: the step succeeds on its third attempt. */
  const payment = flow.workflow('flaky_payment', async ({ input, step }: WorkflowContext<{ amount: number }>) => {
    if (input.amount <= 0) throw new NonRetriableError('The amount must be positive');
    const charge = await step.run('charge_card', { retries: 3, backoff: { initial: options.paymentBackoff ?? '1 second' } }, ({ attempt, idempotencyKey }) => {
      services.paymentAttempts++;
      if (attempt < 3) throw new Error(`Card processor timed out (attempt ${attempt})`);
      return { chargeId: `ch_${idempotencyKey.slice(0, 8)}`, attempt };
    });
    await step.run('send_receipt', () => services.sendEmail('customer@example.com', 'receipt'));
    return charge;
  });

  /**
   * A failure retries cannot fix: while the printer is jammed every attempt fails and the run fails.
   * Once the printer is fixed, Retry in the viewer runs the step again and the run completes.
   */
  const label = flow.workflow('shipping_label', async ({ input, step, log }: WorkflowContext<{ orderId: string }>) => {
    const printed = await step.run('print_label', { retries: 2, backoff: { initial: options.labelBackoff ?? '1 second' } }, () => services.printLabel(input.orderId));
    log.info('Label printed', { labelId: printed.labelId });
    await step.run('notify_carrier', () => ({ pickup: `pck_${input.orderId}` }));
    return printed;
  });

  return { refund, onboarding, order, lineItem, payment, label };
}

export type DemoWorkflows = ReturnType<typeof defineDemoWorkflows>;
