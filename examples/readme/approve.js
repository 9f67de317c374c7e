// The README's signed event for the Express example (approve.js), run by test/install/fresh-folder.test.ts.
// #region readme
import { signatureHeader } from 'durable-flow';

const body = JSON.stringify({ name: 'refund_approved', payload: { orderId: process.argv[2] } });
const response = await fetch(`http://127.0.0.1:${process.env.PORT ?? 3000}/durable_flow/events`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json', 'DurableFlow-Signature': signatureHeader(process.env.DURABLE_FLOW_EVENT_SECRET, body) },
  body,
});
console.log(response.status, await response.json()); // 202 { events: [ … ] }: the run waiting for it wakes
// #endregion readme
