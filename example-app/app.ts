import express from 'express';
import type { DurableFlow } from '../lib/index.js';
import { defineDemoWorkflows } from './workflows.js';
import type { DemoOptions } from './workflows.js';

const escape = (value: unknown): string =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Builds the demo app on a flow (the caller migrates it and starts a worker). */
export function createApp(flow: DurableFlow, options: DemoOptions = {}): express.Express {
  const workflows = defineDemoWorkflows(flow, options);
  const app = express();
  app.use(express.urlencoded({ extended: false }));

  app.get('/', async (_req, res) => {
    const { rows } = await flow.pool.query(
      `SELECT run_id, workflow_name, status, created_at FROM ${flow.tables.runs} ORDER BY id DESC LIMIT 30`,
    );
    const list = rows
      .map((r) => `<tr><td><a href="/runs/${encodeURIComponent(r.run_id)}">${escape(r.run_id)}</a></td><td>${escape(r.workflow_name)}</td><td>${escape(r.status)}</td>
        <td>${r.workflow_name === 'refund_approval' && r.status === 'waiting'
          ? `<form method="post" action="/demo/refunds/${encodeURIComponent(r.run_id)}/decide"><button name="approved" value="true">Approve</button><button name="approved" value="false">Reject</button></form>`
          : ''}</td></tr>`)
      .join('');
    res.type('html').send(`<!doctype html><title>durable-flow demo</title>
      <h1>durable-flow demo</h1>
      <form method="post" action="/demo/start"><button name="demo" value="refund">Start a refund approval</button>
      <button name="demo" value="onboarding">Start a trial onboarding</button>
      <button name="demo" value="payment">Start a flaky payment</button></form>
      <table><tr><th>Run</th><th>Workflow</th><th>Status</th><th></th></tr>${list}</table>`);
  });

  app.post('/demo/start', async (req, res) => {
    const demo = String(req.body.demo);
    if (demo === 'refund') await workflows.refund.start({ orderId: `ord_${Date.now()}`, amount: 42 });
    else if (demo === 'onboarding') await workflows.onboarding.start({ email: 'ana@example.com' });
    else if (demo === 'payment') await workflows.payment.start({});
    else {
      res.status(400).send('Unknown demo');
      return;
    }
    res.redirect(303, '/');
  });

  app.post('/demo/refunds/:runId/decide', async (req, res) => {
    const run = await flow.getRun<{ orderId: string }>(req.params.runId);
    if (!run || run.workflow !== 'refund_approval') {
      res.status(404).send('No such refund');
      return;
    }
    await flow.notify('refund_approval_decided', { approvalId: `apr_${run.input.orderId}`, approved: req.body.approved === 'true', by: 'demo' });
    res.redirect(303, '/');
  });

  app.get('/runs/:runId', async (req, res) => {
    const timeline = await flow.timeline(req.params.runId);
    if (!timeline) {
      res.status(404).json({ error: 'No such run' });
      return;
    }
    res.json(timeline);
  });

  return app;
}
