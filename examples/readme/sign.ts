// The README's Node example of a signed event, run by test/docs/readme.test.ts.
// #region readme
import { signatureHeader } from 'durable-flow';

const url = process.env.DURABLE_FLOW_URL ?? 'http://127.0.0.1:4568/durable_flow';
const body = JSON.stringify({ name: 'order_paid', payload: { orderId: 42 }, id: 'evt_42' });
const response = await fetch(`${url}/events`, {
  method: 'POST',
  headers: {
    'Content-Type': 'application/json',
    'DurableFlow-Signature': signatureHeader(process.env.DURABLE_FLOW_EVENT_SECRET!, body),
    // signatureHeader(secret, body) is `t=${t},v1=${hmacSha256Hex(secret, `${t}.${body}`)}` with t in unix seconds
  },
  body,
});
console.log(response.status, await response.json()); // 202 { events: [{ id, eventId: 'evt_42', name, duplicate }] }
// #endregion readme

export const status = response.status;
