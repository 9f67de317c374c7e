/**
 * The flow-control view in Chromium, at 1400 and 390 px (issue 16): the Workflows page lists each
 * workflow's limits in words, the run list and the run page say why a run waits, and no page scrolls
 * sideways however long the keys (the tables scroll inside their panel).
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'flow-view' };
const WIDE = { width: 1400, height: 760 };
const NARROW = { width: 390, height: 844 };
const LONG_KEY = 'account-with-a-rather-long-identifier-0123456789abcdef0123456789abcdef';

let ctx: TestContext;
let flow: DurableFlow;
let viewer: ViewerServer;
let browser: Browser;
let debouncedRunId: string;
let boundedRunId: string;

beforeAll(async () => {
  ctx = await setupDatabase('flowviewb');
  flow = ctx.flow();
  await flow.migrate();
  const byAccount = (input: { account: string }) => input.account;
  const sync = flow.workflow(
    'sync-account-after-webhooks',
    { debounce: { period: '30 seconds', maxWait: '5 minutes', key: byAccount }, concurrency: { limit: 1, key: byAccount }, timeout: '1 hour' },
    async () => undefined,
  );
  const report = flow.workflow('nightly-report', { singleton: { mode: 'skip' }, priority: 10 }, async () => undefined);
  flow.workflow('send-invoice-email', { rateLimit: { limit: 100, period: '1 minute', key: byAccount } }, async () => undefined);
  debouncedRunId = (await sync.start({ account: LONG_KEY })).runId;
  await sync.start({ account: LONG_KEY });
  boundedRunId = (await report.start({}, { delay: '10 minutes', startBy: '5 minutes' })).runId;
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

/** Whether the page scrolls sideways, and how far each table's panel scrolls inside. */
async function widths(page: Page) {
  return page.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    window: window.innerWidth,
    panels: Array.from(document.querySelectorAll('.table-scroll')).map((el) => ({ scroll: el.scrollWidth, client: el.clientWidth })),
  }));
}

async function open(viewport: { width: number; height: number }) {
  const opened = await openPage(browser, { httpCredentials: CREDENTIALS, viewport });
  const failed: string[] = [];
  opened.page.on('response', (response) => {
    const url = new URL(response.url());
    const endedPoll = url.pathname.endsWith('/socket.io/') && url.searchParams.has('sid') && response.status() === 400;
    if (response.status() >= 400 && !endedPoll && url.pathname !== '/favicon.ico') failed.push(`${response.status()} ${url.pathname}`);
  });
  return { ...opened, failed };
}

/** Script errors and CSP violations: failed loads are in `failed` (the favicon, which the viewer has none of, left out). */
const scriptErrors = (errors: string[]) => errors.filter((e) => !e.startsWith('Failed to load resource'));

describe.each([
  ['1400 px', WIDE],
  ['390 px', NARROW],
])('the flow-control view at %s', (_label, viewport) => {
  it('the Workflows page lists each limit in words, without scrolling the page sideways', async () => {
    const { context, page, errors, failed } = await open(viewport);
    try {
      await page.goto(`${viewer.base}/workflows`);
      const row = page.locator('tr[data-workflow="sync-account-after-webhooks"]');
      await expect.poll(() => row.locator('ul.workflow-limits li').count()).toBe(3);
      expect(await row.locator('li[data-limit="debounce"]').innerText()).toContain('fold into one run with the last input');
      expect(await row.locator('li[data-limit="concurrency"]').innerText()).toContain('at most 1 run of one key execute at once');
      expect(await row.locator('li[data-limit="timeout"]').isVisible()).toBe(true);
      expect(await page.locator('tr[data-workflow="send-invoice-email"] li[data-limit="rateLimit"]').innerText()).toContain('cancelled with RATE_LIMITED');
      const w = await widths(page);
      expect(w.page).toBeLessThanOrEqual(w.window);
      for (const panel of w.panels) expect(panel.client).toBeLessThanOrEqual(w.window);
      expect(scriptErrors(errors)).toEqual([]);
      expect(failed).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the run list labels each waiting run, and the run page says why it waits and what deadline is ahead', async () => {
    const { context, page, errors, failed } = await open(viewport);
    try {
      await page.goto(`${viewer.base}/`);
      const label = page.locator(`tr[data-run-id="${debouncedRunId}"] .waiting-label`);
      expect(await label.innerText()).toMatch(/^debounced · in \d+ s$/);
      expect(await page.locator(`tr[data-run-id="${boundedRunId}"] .waiting-label`).innerText()).toMatch(/^delayed · in [45] min$/);
      let w = await widths(page);
      expect(w.page).toBeLessThanOrEqual(w.window);

      await page.goto(`${viewer.base}/runs/${debouncedRunId}`);
      const panel = page.locator('section.waiting-reason[data-waiting="debounced"]');
      expect(await panel.isVisible()).toBe(true);
      expect(await panel.innerText()).toContain(`debounced (key "${LONG_KEY}")`);
      expect(await panel.innerText()).toContain('debounce max wait');
      expect(await panel.locator('.waiting-deadline').innerText()).toContain('fails with RUN_TIMEOUT');
      w = await widths(page);
      expect(w.page).toBeLessThanOrEqual(w.window);

      await page.goto(`${viewer.base}/runs/${boundedRunId}`);
      const deadline = page.locator('section.waiting-reason .waiting-deadline[data-deadline="startBy"]');
      expect(await deadline.innerText()).toContain('cancelled with DEADLINE_EXCEEDED if it has not begun by then, which comes first');
      w = await widths(page);
      expect(w.page).toBeLessThanOrEqual(w.window);
      expect(scriptErrors(errors)).toEqual([]);
      expect(failed).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
