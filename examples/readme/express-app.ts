// The README's "Install into an Express app", run by test/docs/readme.test.ts.
// #region readme
import http from 'node:http';
import express from 'express';
import { DurableFlow } from 'durable-flow';
import { payments } from './services.js';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL }); // or { sequelize }
await flow.migrate(); // idempotent; safe from several processes at once

export const refund = flow.workflow('refund', async ({ input, step }) => {
  return step.run('refund_payment', () => payments.refund(input.orderId));
});

const worker = flow.worker({ concurrency: 10 });
await worker.start(); // in the web process, or in separate worker processes

const app = express();
app.use(express.json());
app.post('/refunds', async (req, res) => {
  const run = await refund.start(req.body, { idempotencyKey: req.get('Idempotency-Key') });
  res.status(202).json({ runId: run.runId });
});
app.use('/durable_flow', flow.router({ basicAuth: { username: 'ops', password: process.env.VIEWER_PASSWORD! } }));

const server = http.createServer(app);
flow.attachLive(server); // the viewer's pages update live
server.listen(process.env.PORT ?? 3000);

process.on('SIGTERM', () => {
  server.close();
  void flow.close(); // lets running steps finish, hands their runs back
});
// #endregion readme

export { flow, server };
