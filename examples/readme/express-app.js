// The README's "Install into an Express app": plain JavaScript, as a newcomer saves it (server.js).
// test/docs/readme.test.ts runs it here; test/install/fresh-folder.test.ts runs the README's copy of it
// in a fresh `npm init` project with the packed package installed.
// #region readme
import http from 'node:http';
import express from 'express';
import { DurableFlow } from 'durable-flow';

const payments = { refund: async (orderId) => ({ id: `pay_${orderId}` }) }; // your payment provider

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL }); // or { sequelize }
await flow.migrate(); // idempotent; safe from several processes at once

export const refund = flow.workflow('refund', async ({ input, step }) => {
  await step.waitForEvent('refund_approved', { match: { orderId: input.orderId }, timeout: '7 days' });
  return step.run('refund_payment', () => payments.refund(input.orderId));
});

const worker = flow.worker({ concurrency: 10 });
await worker.start(); // in the web process, or in separate worker processes

const app = express();
// The router before express.json(): its event ingest checks the signature over the raw body.
app.use(
  '/durable_flow',
  flow.router({
    basicAuth: { username: 'ops', password: process.env.VIEWER_PASSWORD }, // the viewer
    eventSecret: process.env.DURABLE_FLOW_EVENT_SECRET, // POST /durable_flow/events, signed
  }),
);
app.use(express.json());
app.post('/refunds', async (req, res) => {
  const run = await refund.start(req.body, { idempotencyKey: req.get('Idempotency-Key') });
  res.status(202).json({ runId: run.runId });
});

const server = http.createServer(app);
flow.attachLive(server); // the viewer's pages update live
server.listen(process.env.PORT ?? 3000, () => console.log(`listening on http://127.0.0.1:${server.address().port}`));

process.on('SIGTERM', () => {
  server.close();
  void flow.close(); // lets running steps finish, hands their runs back
});
// #endregion readme

export { flow, server };
