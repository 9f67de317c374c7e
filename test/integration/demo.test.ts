import { createHmac } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { signatureHeader } from '../../lib/index.js';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { DEMO_EVENT_SECRET, DEMO_WEBHOOK_SECRET, createApp, verifyProviderSignature } from '../../example-app/app.js';
import type { DemoApp } from '../../example-app/app.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let demo: DemoApp;
let harness: TestHarness;

beforeAll(async () => {
  ctx = await setupDatabase('demo');
  flow = ctx.flow();
  demo = createApp(flow, { paymentBackoff: '100 ms', labelBackoff: '100 ms' });
  harness = createTestHarness(flow);
});
beforeEach(async () => {
  await harness.reset();
  demo.services.reset();
});
afterAll(async () => {
  await ctx.cleanup();
});

const runIdFrom = (location: string) => decodeURIComponent(location.replace('/durable_flow/runs/', ''));

async function start(name: string): Promise<string> {
  const res = await request(demo.app).post(`/demo/start/${name}`);
  expect(res.status).toBe(303);
  expect(res.headers.location).toMatch(/^\/durable_flow\/runs\//);
  return runIdFrom(String(res.headers.location));
}

describe('the demo app', () => {
  it('serves a home page that starts each demo and links to the viewer', async () => {
    const home = await request(demo.app).get('/');
    expect(home.status).toBe(200);
    for (const name of ['refund', 'onboarding', 'order', 'payment', 'label']) expect(home.text).toContain(`action="/demo/start/${name}"`);
    expect(home.text).toContain('Reset demo');
    // Reset asks first (public/home.js turns data-confirm into a confirm dialog; the browser test clicks it).
    expect(home.text).toMatch(/<form method="post" action="\/demo\/reset" class="reset" data-confirm="Reset the demo\? [^"]+">/);
    // Live: the page loads the socket.io client and its script, and its live part is served alone.
    expect(home.text).toContain('<script src="/durable_flow/assets/socket.io.min.js"></script>');
    expect(home.text).toContain('data-socket-path="/durable_flow/socket.io"');
    const part = await request(demo.app).get('/?fragment=live');
    expect(part.status).toBe(200);
    expect(part.text).toContain('id="runs"');
    expect(part.text).not.toContain('<html');
    expect((await request(demo.app).get('/static/home.js')).status).toBe(200);
    expect((await request(demo.app).get('/durable_flow/')).status).toBe(200);
    expect((await request(demo.app).post('/demo/start/nope')).status).toBe(404);
    expect((await request(demo.app).post('/demo/start/refund').set('Origin', 'https://evil.example')).status).toBe(403);
  });

  it('refund approval: waits for a human, then refunds when approved', async () => {
    const runId = await start('refund');
    await harness.drain();
    await harness.assertWaitingFor(runId, 'refund_approval_decided');
    const home = await request(demo.app).get('/');
    expect(home.text).toContain(`/demo/refunds/${runId}/decide`);
    expect(home.text).toContain('Approve');
    const decided = await request(demo.app).post(`/demo/refunds/${runId}/decide`).type('form').send({ decision: 'approve' });
    expect(decided.status).toBe(303);
    await harness.drain();
    const run = await harness.assertCompleted(runId);
    expect(run.output).toMatchObject({ refunded: true, by: 'demo user' });
    await harness.assertLog(runId, { level: 'info', message: 'Refund issued' });
  });

  it('refund approval: a rejection and a timeout take their own branches', async () => {
    const rejected = await start('refund');
    await harness.drain();
    await request(demo.app).post(`/demo/refunds/${rejected}/decide`).type('form').send({ decision: 'reject' });
    await harness.drain();
    await harness.assertCompleted(rejected, { refunded: false, by: 'demo user' });
    const ignored = await start('refund');
    await harness.drain();
    await harness.travel('11 minutes');
    await harness.drain();
    await harness.assertCompleted(ignored, { refunded: false, escalated: true });
    expect(demo.services.emails.map((e) => e.template)).toEqual(['refund_rejected', 'refund_escalated']);
  });

  it('trial onboarding: sleeps through the trial, then upgrades or times out', async () => {
    const upgraded = await start('onboarding');
    const lapsed = await start('onboarding');
    await harness.drain();
    await harness.assertSleeping(upgraded, { step: 'trial_period' });
    await harness.travel('21 seconds');
    await harness.drain();
    await harness.assertWaitingFor(upgraded, 'account_upgraded');
    expect((await request(demo.app).post(`/demo/trials/${upgraded}/upgrade`)).status).toBe(303);
    await harness.drain();
    await harness.assertCompleted(upgraded, { plan: 'pro' });
    await harness.travel('31 seconds');
    await harness.drain();
    await harness.assertCompleted(lapsed, { plan: 'free' });
    await harness.assertLog(lapsed, { message: 'Trial over' });
  });

  it('order fan-out: one child per line item, all fulfilled', async () => {
    const runId = await start('order');
    await harness.drain();
    const run = await harness.assertCompleted(runId);
    expect((run.output as { lines: unknown[] }).lines).toEqual([
      { sku: 'mug', status: 'completed' },
      { sku: 'tee', status: 'completed' },
      { sku: 'cap', status: 'completed' },
      { sku: 'bag', status: 'completed' },
    ]);
    expect(run.childRunIds).toHaveLength(4);
  });

  it('flaky payment: fails twice, succeeds on the third attempt', async () => {
    const runId = await start('payment');
    for (let i = 0; i < 3; i++) {
      await harness.drain();
      await harness.travel('1 second');
    }
    await harness.drain();
    await harness.assertCompleted(runId);
    await harness.assertStepAttempts(runId, 'charge_card', 3);
    expect(demo.services.paymentAttempts).toBe(3);
  });

  it('shipping label: fails for real while the printer is jammed (every attempt), and a Retry after fixing it completes', async () => {
    const runId = await start('label');
    for (let i = 0; i < 3; i++) {
      await harness.drain();
      await harness.travel('1 second');
    }
    await harness.drain();
    const failed = await flow.getRun(runId);
    expect(failed!.status).toBe('failed');
    expect(JSON.stringify(failed!.error)).toContain('The label printer is jammed');
    await harness.assertStepAttempts(runId, 'print_label', 3);
    // A Retry while still jammed fails again: the failure is real, not a counter.
    await flow.retry(runId);
    for (let i = 0; i < 3; i++) {
      await harness.drain();
      await harness.travel('1 second');
    }
    await harness.drain();
    expect((await flow.getRun(runId))!.status).toBe('failed');

    expect((await request(demo.app).get('/')).text).toContain('data-printer="jammed"');
    expect((await request(demo.app).post('/demo/printer').type('form').send({ state: 'oil' })).status).toBe(400);
    expect((await request(demo.app).post('/demo/printer').type('form').send({ state: 'fix' })).status).toBe(303);
    expect((await request(demo.app).get('/')).text).toContain('data-printer="working"');
    await flow.retry(runId);
    await harness.drain();
    await harness.assertCompleted(runId, { labelId: `lbl_${((await flow.getRun(runId))!.input as { orderId: string }).orderId}` });
    await harness.assertLog(runId, { message: 'Label printed' });
    // Reset jams it again, so the next visitor sees the failure too.
    await request(demo.app).post('/demo/reset');
    expect(demo.services.printerJammed).toBe(true);
  });

  it('takes a provider webhook only with a valid signature, once per event id', async () => {
    const body = JSON.stringify({ id: 'evt_1', type: 'payment_succeeded', data: { orderId: 'ord_1' } });
    const t = Math.floor(Date.now() / 1000);
    const sign = (secret: string) => `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
    const bad = await request(demo.app).post('/webhooks/payments').set('Content-Type', 'application/json').set('Provider-Signature', sign('wrong')).send(body);
    expect(bad.status).toBe(400);
    const good = await request(demo.app).post('/webhooks/payments').set('Content-Type', 'application/json').set('Provider-Signature', sign(DEMO_WEBHOOK_SECRET)).send(body);
    expect(good.body).toEqual({ received: true, duplicate: false });
    const again = await request(demo.app).post('/webhooks/payments').set('Content-Type', 'application/json').set('Provider-Signature', sign(DEMO_WEBHOOK_SECRET)).send(body);
    expect(again.body).toEqual({ received: true, duplicate: true });
    expect(verifyProviderSignature(Buffer.from(body), sign(DEMO_WEBHOOK_SECRET), DEMO_WEBHOOK_SECRET, t + 301)).toBe(false);
  });

  it('approves a refund through the signed ingest endpoint, and resets', async () => {
    const runId = await start('refund');
    await harness.drain();
    const orderId = ((await flow.getRun(runId))!.input as { orderId: string }).orderId;
    const body = JSON.stringify({ name: 'refund_approval_decided', payload: { approvalId: `apr_${orderId}`, approved: true, by: 'curl' } });
    const res = await request(demo.app).post('/durable_flow/events').set('Content-Type', 'application/json').set('DurableFlow-Signature', signatureHeader(DEMO_EVENT_SECRET, body)).send(body);
    expect(res.status).toBe(202);
    await harness.drain();
    await harness.assertCompleted(runId, { refunded: true, refundId: `re_apr_${orderId}`, by: 'curl' });
    expect((await request(demo.app).post('/demo/reset')).status).toBe(303);
    expect(await flow.getRun(runId)).toBeNull();
  });
});
