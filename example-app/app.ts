import { createHmac, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import ejs from 'ejs';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { DurableFlow, RouterOptions } from '../lib/index.js';
import { signedCurl } from './commands.js';
import { DemoServices, defineDemoWorkflows } from './workflows.js';
import type { DemoOptions, DemoWorkflows } from './workflows.js';

export interface DemoAppOptions extends DemoOptions {
  /** Access to the viewer at /durable_flow. Default: open (the demo listens on 127.0.0.1 only). */
  viewer?: Pick<RouterOptions, 'authorize' | 'basicAuth' | 'allowUnauthenticated'>;
  /** Secret of the signed ingest endpoint POST /durable_flow/events. */
  eventSecret?: string;
  /** Secret of the provider-style webhook POST /webhooks/payments. */
  webhookSecret?: string;
}

export interface DemoApp {
  app: express.Express;
  workflows: DemoWorkflows;
  services: DemoServices;
}

export const DEMO_EVENT_SECRET = 'demo_event_secret_change_me';
export const DEMO_WEBHOOK_SECRET = 'whsec_demo_webhook_change_me';

type Demo = 'refund' | 'onboarding' | 'order' | 'payment' | 'label';

/** Where the app mounts the viewer (its live channel is at `${VIEWER_MOUNT}/socket.io`). */
const VIEWER_MOUNT = '/durable_flow';

/**
 * Verifies a Stripe-style signature: header `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
 * five minutes of tolerance, constant-time comparison.
 */
export function verifyProviderSignature(rawBody: Buffer, header: string | undefined, secret: string, nowSeconds = Date.now() / 1000): boolean {
  const parts = new Map((header ?? '').split(',').map((kv) => kv.split('=', 2) as [string, string]));
  const t = parts.get('t') ?? '';
  const v1 = parts.get('v1') ?? '';
  if (!/^\d{1,12}$/.test(t) || Math.abs(nowSeconds - Number(t)) > 300 || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}

function sameOrigin(req: Request, res: Response, next: NextFunction): void {
  const origin = req.get('origin');
  if (origin && new URL(origin).host !== req.get('host')) {
    res.status(403).type('text/plain').send('Cross-origin request refused');
    return;
  }
  next();
}

/**
 * The demo: an ordinary Express app that uses durable-flow. `server.ts` gives it a database and a
 * worker and listens; tests import it.
 */
export function createApp(flow: DurableFlow, options: DemoAppOptions = {}): DemoApp {
  const services = new DemoServices();
  const workflows = defineDemoWorkflows(flow, services, options);
  const app = express();
  const views = path.join(import.meta.dirname, 'views');

  app.use((_req, res, next) => {
    res.set({ 'Content-Security-Policy': "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'", 'X-Content-Type-Options': 'nosniff' });
    next();
  });
  app.use('/static', express.static(path.join(import.meta.dirname, 'public')));

  // The viewer and the signed event-ingest endpoint.
  app.use(
    VIEWER_MOUNT,
    flow.router({
      ...(options.viewer ?? { allowUnauthenticated: true }),
      eventSecret: options.eventSecret ?? DEMO_EVENT_SECRET,
      // Per process; a sender over it gets 429 with Retry-After.
      ingestRateLimit: { limit: 100, period: '1 second' },
      title: 'durable-flow demo',
    }),
  );

  // A provider's webhook: verify its signature on the raw body, then hand the event to durable-flow.
  app.post('/webhooks/payments', express.raw({ type: '*/*', limit: '256kb' }), async (req: Request, res: Response) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (!verifyProviderSignature(body, req.get('Provider-Signature'), options.webhookSecret ?? DEMO_WEBHOOK_SECRET)) {
      res.status(400).json({ error: 'Invalid signature' });
      return;
    }
    let event: { id?: unknown; type?: unknown; data?: unknown };
    try {
      event = JSON.parse(body.toString('utf8'));
    } catch {
      res.status(400).json({ error: 'Malformed JSON' });
      return;
    }
    if (typeof event.id !== 'string' || typeof event.type !== 'string') {
      res.status(400).json({ error: 'Expected { id, type, data }' });
      return;
    }
    const stored = await flow.notify(event.type, event.data ?? {}, { id: event.id, source: 'webhook:payments' });
    res.json({ received: true, duplicate: stored.duplicate });
  });

  const form = express.urlencoded({ extended: false, limit: '16kb' });

  // The home page; `?fragment=live` is its live part alone, which home.js refetches on every run change.
  app.get('/', async (req: Request, res: Response) => {
    const { rows } = await flow.pool.query(
      `SELECT run_id, workflow_name, status, input, created_at FROM ${flow.tables.runs}
       WHERE parent_run_id IS NULL ORDER BY created_at DESC, id DESC LIMIT 25`,
    );
    const pending = rows.filter((r) => r.workflow_name === 'refund_approval' && r.status === 'waiting');
    // The commands post to this very server, whatever PORT (or host) it was opened at.
    const origin = `${req.protocol}://${req.get('host') ?? '127.0.0.1'}`;
    const eventSecret = options.eventSecret ?? DEMO_EVENT_SECRET;
    const webhookSecret = options.webhookSecret ?? DEMO_WEBHOOK_SECRET;
    // The event command approves the newest waiting refund, or (none waiting) sends an event nobody awaits.
    const newest = pending[0] as { input: { orderId: string } } | undefined;
    const approves = newest ? `apr_${newest.input.orderId}` : null;
    const event = approves
      ? { name: 'refund_approval_decided', payload: { approvalId: approves, approved: true, by: 'curl' } }
      : { name: 'demo_ping', payload: { from: 'curl' } };
    const data = {
      runs: rows,
      pending,
      trials: rows.filter((r) => r.workflow_name === 'trial_onboarding' && ['sleeping', 'waiting', 'enqueued', 'running'].includes(r.status)),
      failed: rows.filter((r) => r.status === 'failed'),
      printerJammed: services.printerJammed,
      mount: VIEWER_MOUNT,
      eventSecret: eventSecret === DEMO_EVENT_SECRET ? eventSecret : null,
      webhookSecret: webhookSecret === DEMO_WEBHOOK_SECRET ? webhookSecret : null,
      eventCommand: signedCurl({
        url: `${origin}${VIEWER_MOUNT}/events`,
        header: 'DurableFlow-Signature',
        // A secret of the user's own is never printed: the command reads it from the environment.
        secret: eventSecret === DEMO_EVENT_SECRET ? { value: eventSecret } : { variable: 'DURABLE_FLOW_EVENT_SECRET' },
        body: JSON.stringify(event),
      }),
      approves,
      webhookCommand: signedCurl({
        url: `${origin}/webhooks/payments`,
        header: 'Provider-Signature',
        secret: webhookSecret === DEMO_WEBHOOK_SECRET ? { value: webhookSecret } : { variable: 'PAYMENTS_WEBHOOK_SECRET' },
        body: JSON.stringify({ id: 'evt_demo_1', type: 'payment_succeeded', data: { orderId: 'ord_demo_1' } }),
      }),
    };
    const html = await ejs.renderFile(path.join(views, req.query.fragment === 'live' ? 'live.ejs' : 'home.ejs'), data);
    res.type('html').send(html);
  });

  app.post('/demo/start/:demo', sameOrigin, async (req: Request, res: Response) => {
    const demo = req.params.demo as Demo;
    const n = Date.now().toString(36);
    let runId: string;
    if (demo === 'refund') runId = (await workflows.refund.start({ orderId: `ord_${n}`, amount: 42.5, reason: 'Damaged in transit' })).runId;
    else if (demo === 'onboarding') runId = (await workflows.onboarding.start({ email: `ana+${n}@example.com`, accountId: `acct_${n}` })).runId;
    else if (demo === 'order')
      runId = (
        await workflows.order.start({
          orderId: `ord_${n}`,
          items: [
            { sku: 'mug', quantity: 2 },
            { sku: 'tee', quantity: 1 },
            { sku: 'cap', quantity: 1 },
            { sku: 'bag', quantity: 3 },
          ],
        })
      ).runId;
    else if (demo === 'payment') runId = (await workflows.payment.start({ amount: 19.99 })).runId;
    else if (demo === 'label') runId = (await workflows.label.start({ orderId: `ord_${n}` })).runId;
    else {
      res.status(404).type('text/plain').send('No such demo');
      return;
    }
    res.redirect(303, `${VIEWER_MOUNT}/runs/${encodeURIComponent(runId)}`);
  });

  // The shipping label demo's printer: jammed, every label fails; fixed, a Retry of a failed run completes.
  app.post('/demo/printer', sameOrigin, form, (req: Request, res: Response) => {
    const state = (req.body as Record<string, string>).state;
    if (state !== 'fix' && state !== 'jam') {
      res.status(400).type('text/plain').send('Expected state=fix or state=jam');
      return;
    }
    services.printerJammed = state === 'jam';
    res.redirect(303, '/');
  });

  // The human in the loop: the decision is an event the waiting run matches on its approval id.
  app.post('/demo/refunds/:runId/decide', sameOrigin, form, async (req: Request, res: Response) => {
    const run = await flow.getRun<{ orderId: string }>(String(req.params.runId));
    if (!run || run.workflow !== 'refund_approval') {
      res.status(404).type('text/plain').send('No such refund');
      return;
    }
    const approved = (req.body as Record<string, string>).decision === 'approve';
    await flow.notify('refund_approval_decided', { approvalId: `apr_${run.input.orderId}`, approved, by: 'demo user' });
    res.redirect(303, (req.body as Record<string, string>).back === 'run' ? `${VIEWER_MOUNT}/runs/${encodeURIComponent(run.runId)}` : '/');
  });

  app.post('/demo/trials/:runId/upgrade', sameOrigin, async (req: Request, res: Response) => {
    const run = await flow.getRun<{ accountId: string }>(String(req.params.runId));
    if (!run || run.workflow !== 'trial_onboarding') {
      res.status(404).type('text/plain').send('No such trial');
      return;
    }
    await flow.notify('account_upgraded', { accountId: run.input.accountId, plan: 'pro' });
    res.redirect(303, '/');
  });

  app.post('/demo/reset', sameOrigin, async (_req: Request, res: Response) => {
    await flow.pool.query(`DELETE FROM ${flow.tables.runs}`);
    await flow.pool.query(`DELETE FROM ${flow.tables.events}`);
    services.reset();
    res.redirect(303, '/');
  });

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).type('text/plain').send(`Something went wrong: ${(error as Error)?.message ?? error}`);
  });

  return { app, workflows, services };
}
