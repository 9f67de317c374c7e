import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, Worker } from '../../lib/index.js';
import { createApp } from '../../example-app/app.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let server: http.Server;
let url: string;
let browser: Browser;

beforeAll(async () => {
  ctx = await setupDatabase('demob');
  flow = ctx.flow();
  const { app } = createApp(flow, { paymentBackoff: '200 ms' });
  server = http.createServer(app);
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
});
