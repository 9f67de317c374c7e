import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, Worker } from '../../lib/index.js';
import { DEMO_EVENT_SECRET, DEMO_WEBHOOK_SECRET, createApp } from '../../example-app/app.js';
import type { DemoApp } from '../../example-app/app.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let server: http.Server;
let url: string;
let browser: Browser;
let demoApp: DemoApp;

beforeAll(async () => {
  ctx = await setupDatabase('demob');
  flow = ctx.flow();
  demoApp = createApp(flow, { paymentBackoff: '200 ms', labelBackoff: '200 ms' });
  server = http.createServer(demoApp.app);
  flow.attachLive(server);
  worker = flow.worker({ pollInterval: 100 });
  await worker.start();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await ctx.cleanup();
});

const RESET_QUESTION = 'Reset the demo? This deletes every run and event.';
const RETRY_BUTTON = 'Retry from the failed step';

/** Runs `command` with bash, as a user pasting it into a shell would; resolves with what it printed. */
function bash(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', command], { timeout: 20_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
  });
}

const screenshots = process.env.SCREENSHOTS ? path.resolve(import.meta.dirname, '../../docs/screenshots') : undefined;

describe('the demo in Chromium', () => {
  it('starts a refund, approves it on the home page, and the run page shows it complete live', async () => {
    const { page, context, dialogs } = await openPage(browser);
    try {
      await page.goto(url);
      await page.getByRole('button', { name: 'Start a refund' }).click();
      await page.waitForURL(/\/durable_flow\/runs\//);
      const runUrl = page.url();
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('waiting');

      // Approve from the home page in a second tab; the run page (first tab) updates by itself.
      const home = await context.newPage();
      await home.goto(url);
      await home.locator('#approvals').getByRole('button', { name: 'Approve' }).first().click();
      await home.waitForURL(`${url}/`);
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('completed');
      expect(page.url()).toBe(runUrl);
      await page.locator('[data-step="issue_refund"]').waitFor();
      expect(await page.locator('aside').innerText()).toContain('"refunded": true');
      expect(dialogs).toEqual([]);

      if (screenshots) {
        fs.mkdirSync(screenshots, { recursive: true });
        await home.getByRole('button', { name: 'Place an order' }).click();
        await home.waitForURL(/\/durable_flow\/runs\//);
        await expect.poll(() => home.locator('h1 .badge').textContent(), { timeout: 20_000 }).toBe('completed');
        await home.goto(url);
        await home.getByRole('button', { name: 'Take a payment' }).click();
        await home.waitForURL(/\/durable_flow\/runs\//);
        await expect.poll(() => home.locator('h1 .badge').textContent(), { timeout: 20_000 }).toBe('completed');
        // docs/screenshots/run.png is test/browser/run-page.test.ts's.
        await home.goto(`${url}/durable_flow/`);
        await home.screenshot({ path: path.join(screenshots, 'runs.png'), fullPage: true });
        await home.goto(url);
        await home.screenshot({ path: path.join(screenshots, 'demo.png'), fullPage: true });
      }
    } finally {
      await context.close();
    }
  });

  it('the home page is live: a run started elsewhere appears and its status changes without a reload', async () => {
    const { page, context, dialogs, errors } = await openPage(browser);
    try {
      await page.goto(url);
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await page.evaluate(() => {
        (window as unknown as { marker: number }).marker = 11;
      });
      const { workflows } = demoApp;
      const run = await workflows.refund.start({ orderId: 'ord_live', amount: 5, reason: 'Live' });
      const status = page.locator(`#runs tr[data-run-id="${run.runId}"] .status`);
      await expect.poll(() => status.textContent().catch(() => null), { timeout: 10_000 }).toBe('waiting');
      await page.locator(`#approvals li[data-run-id="${run.runId}"]`).waitFor({ timeout: 10_000 });
      await flow.notify('refund_approval_decided', { approvalId: 'apr_ord_live', approved: false, by: 'test' });
      await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('completed');
      expect(await page.locator(`#approvals li[data-run-id="${run.runId}"]`).count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(11);
      expect(dialogs).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('shows the secrets and headers with curl commands that work as shown, pasted into bash', async () => {
    const { page, context } = await openPage(browser);
    try {
      await page.goto(url);
      await page.getByRole('button', { name: 'Start a refund' }).click();
      await page.waitForURL(/\/durable_flow\/runs\//);
      const runId = decodeURIComponent(page.url().split('/runs/')[1]!);
      await eventually(async () => (await flow.getRun(runId))?.status === 'waiting');
      await page.goto(url);
      const panel = page.locator('#signed-events');
      expect(await panel.locator('[data-secret="event"]').textContent()).toBe(DEMO_EVENT_SECRET);
      expect(await panel.locator('[data-secret="webhook"]').textContent()).toBe(DEMO_WEBHOOK_SECRET);
      expect(await panel.innerText()).toContain('DurableFlow-Signature');
      expect(await panel.innerText()).toContain('Provider-Signature');
      const eventCommand = await panel.locator('pre[data-command="event"]').innerText();
      // For this server's port, whatever PORT it runs on.
      expect(eventCommand).toContain(`${url}/durable_flow/events`);
      const answer = JSON.parse(await bash(eventCommand)) as { events: { name: string; duplicate: boolean }[] };
      expect(answer.events).toMatchObject([{ name: 'refund_approval_decided', duplicate: false }]);
      await eventually(async () => (await flow.getRun(runId))?.status === 'completed');
      expect((await flow.getRun(runId))!.output).toMatchObject({ refunded: true, by: 'curl' });

      const webhookCommand = await panel.locator('pre[data-command="webhook"]').innerText();
      expect(webhookCommand).toContain(`${url}/webhooks/payments`);
      expect(JSON.parse(await bash(webhookCommand))).toEqual({ received: true, duplicate: false });
      expect(JSON.parse(await bash(webhookCommand))).toEqual({ received: true, duplicate: true });

      // With no refund waiting, the event command still works as shown (an event the Events page lists).
      const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM ${flow.tables.runs} WHERE workflow_name = 'refund_approval' AND status = 'waiting'`);
      expect(rows[0].n).toBe(0);
      await page.reload();
      const ping = JSON.parse(await bash(await panel.locator('pre[data-command="event"]').innerText())) as { events: { name: string }[] };
      expect(ping.events).toMatchObject([{ name: 'demo_ping' }]);
    } finally {
      await context.close();
    }
  });

  it('a shipping label fails for real; after fixing the printer, Retry in the viewer completes it', async () => {
    const { page, context, dialogs } = await openPage(browser);
    try {
      await page.goto(url);
      await page.getByRole('button', { name: 'Print a label' }).click();
      await page.waitForURL(/\/durable_flow\/runs\//);
      const runUrl = page.url();
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 20_000 }).toBe('failed');
      expect(await page.locator('body').innerText()).toContain('The label printer is jammed');
      await page.goto(url);
      expect(await page.locator('#failed').innerText()).toContain('shipping_label');
      await page.getByRole('button', { name: 'Fix the printer' }).click();
      await page.waitForURL(`${url}/`);
      expect(await page.locator('[data-printer]').textContent()).toBe('working');
      await page.goto(runUrl);
      await page.getByRole('button', { name: RETRY_BUTTON }).click();
      await page.waitForURL(runUrl);
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 20_000 }).toBe('completed');
      await page.locator('[data-step="notify_carrier"]').waitFor();
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('Reset demo asks first: dismissed, nothing is deleted; confirmed, every run goes', async () => {
    const run = await demoApp.workflows.payment.start({ amount: 3 });
    const dismissed = await openPage(browser);
    const asked: string[] = [];
    try {
      // Dismissed (openPage dismisses a confirm it was not told to expect, and records it).
      await dismissed.page.goto(url);
      await dismissed.page.getByRole('button', { name: 'Reset demo' }).click();
      expect(dismissed.dialogs).toEqual([`confirm: ${RESET_QUESTION}`]);
      expect(dismissed.page.url()).toBe(`${url}/`);
      expect(await flow.getRun(run.runId)).not.toBeNull();
    } finally {
      await dismissed.context.close();
    }
    const confirmed = await openPage(browser, {}, [RESET_QUESTION]);
    try {
      confirmed.page.on('dialog', (dialog) => asked.push(dialog.message()));
      await confirmed.page.goto(url);
      await Promise.all([confirmed.page.waitForResponse((r) => r.url().endsWith('/demo/reset')), confirmed.page.getByRole('button', { name: 'Reset demo' }).click()]);
      expect(asked).toEqual([RESET_QUESTION]);
      expect(await flow.getRun(run.runId)).toBeNull();
      expect(confirmed.dialogs).toEqual([]);
    } finally {
      await confirmed.context.close();
    }
  });

  it('the home page does not scroll sideways at 390 px (the commands scroll in their box)', async () => {
    const { page, context } = await openPage(browser, { viewport: { width: 390, height: 800 } });
    try {
      await page.goto(url);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    } finally {
      await context.close();
    }
  });

  // SCREENSHOTS=1: docs/screenshots/demo.png, the home page at 1400 px with a run in each state worth seeing.
  it.skipIf(!screenshots)('takes the demo screenshot', async () => {
    const { page, context } = await openPage(browser, { viewport: { width: 1400, height: 900 } });
    try {
      const { workflows } = demoApp;
      const paid = await workflows.payment.start({ amount: 19.99 });
      const order = await workflows.order.start({ orderId: 'ord_1042', items: [{ sku: 'mug', quantity: 2 }, { sku: 'tee', quantity: 1 }] });
      const label = await workflows.label.start({ orderId: 'ord_1042' });
      await workflows.onboarding.start({ email: 'ana@example.com', accountId: 'acct_ana' });
      await workflows.refund.start({ orderId: 'ord_1041', amount: 42.5, reason: 'Damaged in transit' });
      await eventually(async () => (await flow.getRun(label.runId))?.status === 'failed', 20_000);
      await eventually(async () => (await flow.getRun(paid.runId))?.status === 'completed' && (await flow.getRun(order.runId))?.status === 'completed', 20_000);
      await page.goto(url);
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await page.locator('#approvals li').first().waitFor();
      await page.screenshot({ path: path.join(screenshots!, 'demo.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });
});
