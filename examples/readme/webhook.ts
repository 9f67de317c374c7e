// The README's provider webhook example, run by test/docs/readme.test.ts.
import express from 'express';
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const app = express();

// #region readme
import { createHmac, timingSafeEqual } from 'node:crypto';

// Stripe-style: header "t=<unix seconds>,v1=<hex HMAC-SHA256 of `${t}.${rawBody}`>", 5 minutes of tolerance.
function verifyProviderSignature(rawBody: Buffer, header: string | undefined, secret: string): boolean {
  const parts = new Map((header ?? '').split(',').map((kv) => kv.split('=', 2) as [string, string]));
  const t = Number(parts.get('t'));
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  const given = Buffer.from(parts.get('v1') ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

app.post('/webhooks/payments', express.raw({ type: 'application/json' }), async (req, res) => {
  if (!verifyProviderSignature(req.body, req.get('Provider-Signature'), process.env.PAYMENTS_WEBHOOK_SECRET!)) {
    res.sendStatus(400);
    return;
  }
  const event = JSON.parse(req.body.toString('utf8'));
  await flow.notify(event.type, event.data, { id: event.id }); // providers redeliver: the id makes it idempotent
  res.sendStatus(200);
});
// #endregion readme

export { app, flow };
