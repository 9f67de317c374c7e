/**
 * The Metrics page in Chromium, at 1400 and 390 px: five charts drawn from the rollups (the throughput
 * and failure bars there), no sideways scroll, the hour/day toggle, and live updates as runs complete.
 * Screenshots in /tmp/mview-*.png.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NonRetriableError } from '../../lib/index.js';
import type { DurableFlow, Worker } from '../../lib/index.js';
import { registerMetricsWorkflows } from '../fixtures/metrics-workflows.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'metrics' };
const WIDE = { width: 1400, height: 900 };
const NARROW = { width: 390, height: 844 };
const SCREENSHOTS = process.env.MVIEW_SCREENSHOTS ?? '/tmp';

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let workflows: ReturnType<typeof registerMetricsWorkflows>;
let viewer: ViewerServer;
let browser: Browser;
let completed = 0;

async function runSome(ok: number, failing: number) {
  const runs = await Promise.all(Array.from({ length: ok }, () => workflows.ok.start({})));
  const failed = await Promise.all(Array.from({ length: failing }, () => workflows.fail.start({})));
  await Promise.all(runs.map((r) => r.result()));
  await Promise.all(failed.map((r) => r.result().catch(() => 'failed')));
  completed += ok;
}

beforeAll(async () => {
  ctx = await setupDatabase('mviewdb');
  flow = ctx.flow();
  workflows = registerMetricsWorkflows(flow, NonRetriableError);
  await flow.migrate();
  worker = flow.worker({ concurrency: 4, pollInterval: 50 });
  await worker.start();
  await runSome(5, 2);
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await worker?.stop();
  await ctx.cleanup();
});

const scriptErrors = (errors: string[]) => errors.filter((e) => !e.startsWith('Failed to load resource'));

describe('the Metrics page in Chromium', () => {
  for (const viewport of [WIDE, NARROW]) {
    it(`draws the charts, fits the page, toggles hour/day and updates live (${viewport.width} px)`, async () => {
      const { page, context, errors, dialogs } = await openPage(browser, { httpCredentials: CREDENTIALS, viewport });
      try {
        await page.goto(`${viewer.base}/metrics/page`);
        await page.locator('[data-live-indicator][data-state="live"]').waitFor();
        expect(await page.locator('header.top nav a.current').innerText()).toBe('Metrics');
        expect(await page.locator('[data-chart]').evaluateAll((els) => els.map((e) => e.getAttribute('data-chart')))).toEqual(['throughput', 'failures', 'lag', 'resume', 'steps']);
        expect(await page.locator('[data-total="completed"]').innerText()).toBe(String(completed));
        expect(Number(await page.locator('[data-total="failed"]').innerText())).toBeGreaterThanOrEqual(2);
        expect(await page.locator('[data-chart="throughput"] rect.metric-bar').count()).toBeGreaterThan(0);
        expect(await page.locator('[data-chart="failures"] rect.metric-bar.bad').count()).toBeGreaterThan(0);
        expect(await page.locator('[data-chart="steps"] rect.metric-bar.p50').count()).toBeGreaterThan(0);
        // No run was due when the metrics were read: no lag sample, said as such (not a blank chart).
        expect(await page.locator('[data-chart="lag"] p.empty').innerText()).toBe('No run waited for a worker in this range.');
        // The page never scrolls sideways; every chart fits the window.
        const measured = await page.evaluate(() => ({
          page: document.documentElement.scrollWidth,
          window: window.innerWidth,
          charts: Array.from(document.querySelectorAll('svg.metric-plot')).map((svg) => svg.getBoundingClientRect().right),
        }));
        expect(measured.page).toBeLessThanOrEqual(measured.window);
        for (const right of measured.charts) expect(right).toBeLessThanOrEqual(measured.window);
        await page.screenshot({ path: `${SCREENSHOTS}/mview-${viewport.width}.png`, fullPage: true });

        // Live: runs completing elsewhere redraw the charts' fragment.
        await runSome(3, 0);
        await page.locator(`[data-total="completed"]:text-is("${completed}")`).waitFor({ timeout: 15_000 });

        // The toggle: the last day, by 15 minutes.
        await page.locator('a[data-range="day"]').click();
        await page.waitForURL(/range=day/);
        expect(await page.locator('a[data-range="day"]').getAttribute('class')).toBe('current');
        expect(await page.locator('.metric-totals').innerText()).toMatch(/^Over the last day, by 15 minutes/);
        expect(await page.locator('[data-total="completed"]').innerText()).toBe(String(completed));
        expect(dialogs).toEqual([]);
        expect(scriptErrors(errors)).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }
});
