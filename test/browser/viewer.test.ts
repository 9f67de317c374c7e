import type { Browser } from 'playwright-core';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, Worker, WorkflowContext } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'correct horse battery staple' };
const CANCEL_QUESTION = 'Cancel this run (and the runs it started)?';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let viewer: ViewerServer;
let browser: Browser;

beforeAll(async () => {
  ctx = await setupDatabase('browser');
  flow = ctx.flow();
  worker = flow.worker({ pollInterval: 100 });
  await worker.start();
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

const auth = { httpCredentials: CREDENTIALS };

// Hostile strings on every page, denied routes and CSRF: test/chaos/viewer.test.ts.
describe('the viewer in Chromium', () => {
  it('updates the run list and a run page live, without a reload', async () => {
    const approval = flow.workflow('live-approval', async ({ step, log }: WorkflowContext<{ id: string }>) => {
      await step.run('create_request', () => ({ requested: true }));
      log.info('Waiting for approval');
      const decision = await step.waitForEvent<{ approved: boolean }>('decision', { match: { id: 'x' } });
      await step.run('apply', () => decision.approved);
      return decision;
    });
    const { page, dialogs, errors, context } = await openPage(browser, auth);
    try {
      await page.goto(`${viewer.base}/`);
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await page.evaluate(() => {
        (window as unknown as { marker: number }).marker = 42;
      });
      const run = await approval.start({ id: 'x' });
      await page.locator(`tr[data-run-id="${run.runId}"]`).waitFor({ timeout: 10_000 });
      await expect.poll(() => page.locator(`tr[data-run-id="${run.runId}"] .badge`).textContent(), { timeout: 10_000 }).toBe('waiting');
      // docs/screenshots/runs.png is taken by test/browser/lists.test.ts, over a realistic list.

      await page.goto(`${viewer.base}/runs/${run.runId}`);
      await expect.poll(() => page.locator('[data-live-indicator]').textContent(), { timeout: 10_000 }).toBe('live');
      await page.evaluate(() => {
        (window as unknown as { marker: number }).marker = 43;
      });
      expect(await page.locator('h1 .badge').textContent()).toBe('waiting');
      await flow.notify('decision', { id: 'x', approved: true });
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('completed');
      await page.locator('[data-step="apply"]').waitFor();
      // Same page, no reload.
      expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(43);
      // docs/screenshots/run.png is test/browser/run-page.test.ts's.
      expect(dialogs).toEqual([]);
      expect(errors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('cancels a run with the button (after confirming), and refuses the form without its CSRF token', async () => {
    const sleeper = flow.workflow('browser-sleeper', async ({ step }: WorkflowContext) => step.sleep('nap', '1 day'));
    const first = await sleeper.start({});
    const second = await sleeper.start({});
    await eventually(async () => (await flow.getRun(second.runId))!.status === 'sleeping');
    const { page, dialogs, context } = await openPage(browser, auth, [CANCEL_QUESTION]);
    try {
      await page.goto(`${viewer.base}/runs/${first.runId}`);
      await page.getByRole('button', { name: 'Cancel run' }).click();
      await page.waitForURL(`${viewer.base}/runs/${first.runId}`);
      await expect.poll(() => page.locator('h1 .badge').textContent()).toBe('cancelled');
      expect((await flow.getRun(first.runId))!.status).toBe('cancelled');

      await page.goto(`${viewer.base}/runs/${second.runId}`);
      // Once live, the page refetches its fragments to catch up, form included: tamper after that.
      await page.waitForFunction(() => document.body.hasAttribute('data-refreshed'), undefined, { timeout: 10_000 });
      await page.locator('input[name="_csrf"]').first().evaluate((input) => input.remove());
      const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/cancel')), page.getByRole('button', { name: 'Cancel run' }).click()]);
      expect(response.status()).toBe(403);
      expect(await page.locator('body').innerText()).toContain('missing or invalid CSRF token');
      expect((await flow.getRun(second.runId))!.status).toBe('sleeping');
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('denies the live channel without credentials and from another origin', async () => {
    const connect = (headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const socket = ioClient(`${viewer.url}/durable_flow`, { path: '/durable_flow/socket.io', transports: ['polling'], extraHeaders: headers, reconnection: false });
        socket.on('connect', () => {
          socket.close();
          resolve('connected');
        });
        socket.on('connect_error', (error) => {
          socket.close();
          resolve(error.message);
        });
      });
    const basic = `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}`;
    // Refused at the engine.io handshake (the refusals' statuses and messages: test/chaos/live.test.ts).
    expect(await connect({})).not.toBe('connected');
    expect(await connect({ Authorization: basic, Origin: 'https://evil.example' })).not.toBe('connected');
    expect(await connect({ Authorization: basic })).toBe('connected');
  });
});
