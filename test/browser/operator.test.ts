/**
 * The viewer's operator tools in Chromium, at 1400 and 390 px: pause then resume a run from its page
 * (with a reason), rerun it from a step of its timeline with edited input, the Audit page listing
 * those actions with the signed-in user, and no sideways scroll of the page at 390 px (wide tables
 * scroll in their panel). Screenshots in /tmp/oview-*.png.
 */
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'operator' };
const WIDE = { width: 1400, height: 900 };
const NARROW = { width: 390, height: 844 };
const SCREENSHOTS = process.env.OVIEW_SCREENSHOTS ?? '/tmp';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let viewer: ViewerServer;
let browser: Browser;
let order: { start(input: unknown): Promise<{ runId: string }> };

beforeAll(async () => {
  ctx = await setupDatabase('opbrowser');
  flow = ctx.flow();
  order = flow.workflow('order-fulfilment', async ({ step, input }) => {
    const charged = await step.run('charge-card', async () => ({ charged: (input as { amount: number }).amount }));
    const approval = await step.waitForEvent('manager-approval', { event: 'approved', match: { order: (input as { order: string }).order } });
    return step.run('ship', async () => ({ ...charged, approval }));
  });
  const flaky = flow.workflow('flaky-upstream', { retries: 0 }, async ({ step }) =>
    step.run('call', async () => {
      throw Object.assign(new Error('upstream answered 503 for a request with a rather long identifier 7f3a9c2e-1b4d'), { code: 'UPSTREAM_DOWN' });
    }),
  );
  await flow.migrate();
  harness = createTestHarness(flow);
  // A failed run for the Failures page.
  await flaky.start({});
  await harness.drain();
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

const scriptErrors = (errors: string[]) => errors.filter((e) => !e.startsWith('Failed to load resource'));

async function fits(page: Page, what: string) {
  const { scroll, inner, wide } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
    // What sticks out, to say so when it does.
    wide: Array.from(document.querySelectorAll('body *'))
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && !el.closest('.table-scroll'))
      .slice(-5)
      .map((el) => `${el.tagName.toLowerCase()}.${el.className}:${Math.round(el.getBoundingClientRect().width)}`),
  }));
  expect(scroll, `${what}: the page scrolls sideways (${wide.join(', ')})`).toBeLessThanOrEqual(inner);
}

/**
 * Fills a field of a live fragment: the live channel may redraw the fragment while the text goes in
 * (into the element it replaced), so the field as it is now is read back, and filled again if it lost
 * the text. Once it holds it, viewer.js keeps it through later redraws.
 */
async function fillKept(field: Locator, value: string) {
  for (let i = 0; i < 5; i++) {
    await field.fill(value);
    if ((await field.inputValue()) === value) return;
  }
  throw new Error(`The field did not keep ${JSON.stringify(value)}`);
}

const status = async (runId: string) => (await flow.getRun(runId))!.status;

describe('the operator tools in Chromium', () => {
  for (const viewport of [WIDE, NARROW]) {
    it(`pauses and resumes a run, reruns it from a step with edited input, and the Audit page lists it (${viewport.width} px)`, async () => {
      const tag = `o-${viewport.width}`;
      const { runId } = await order.start({ order: tag, amount: 40 });
      await harness.drain();
      expect(await status(runId)).toBe('waiting');
      const { page, context, errors, dialogs } = await openPage(browser, { httpCredentials: CREDENTIALS, viewport });
      try {
        await page.goto(`${viewer.base}/runs/${runId}`);
        await page.locator('[data-live-indicator][data-state="live"]').waitFor();
        // The live channel's catch-up redraw, after which the page is measured.
        await page.waitForFunction(() => document.body.hasAttribute('data-refreshed'), undefined, { timeout: 10_000 });
        await fits(page, 'run page');
        await page.screenshot({ path: `${SCREENSHOTS}/oview-run-${viewport.width}.png`, fullPage: true });

        // Pause, with a reason: the page comes back showing the run paused and the audit entry.
        const pauseForm = page.locator(`form[action$="/runs/${runId}/pause"]`);
        await fillKept(pauseForm.locator('input[name="reason"]'), 'checking the stock');
        await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/pause')), pauseForm.locator('button').click()]);
        await page.waitForLoadState();
        await page.locator('.run-header h1 .badge', { hasText: 'paused' }).waitFor();
        expect(await status(runId)).toBe('paused');
        expect((await flow.audit({ runId }))[0]).toMatchObject({ action: 'pause', actor: 'ops', reason: 'checking the stock' });
        const auditRow = page.locator('.run-audit tr[data-action="pause"]');
        await expect(auditRow.locator('td.actor').textContent()).resolves.toBe('ops');
        await expect(auditRow.locator('td.reason').textContent()).resolves.toBe('checking the stock');

        // Resume: due again (no worker here runs it), the pause form is back.
        const resumeForm = page.locator(`form[action$="/runs/${runId}/resume"]`);
        await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/resume')), resumeForm.locator('button').click()]);
        await page.waitForLoadState();
        await page.locator(`form[action$="/runs/${runId}/pause"]`).waitFor();
        expect(await status(runId)).toBe('ready');
        await page.locator('.run-audit tr[data-action="resume"]').waitFor();
        await harness.drain();
        await page.locator('.run-header h1 .badge', { hasText: 'waiting' }).waitFor();

        // Rerun from the wait step, the input edited in its JSON form.
        const step = page.locator('article.step[data-step="manager-approval"]');
        await step.locator('details.operator-form summary', { hasText: 'Rerun from here' }).click();
        const rerun = step.locator('form[action$="/rerun-from"]');
        const input = rerun.locator('textarea[name="input"]');
        expect(JSON.parse(await input.inputValue())).toEqual({ order: tag, amount: 40 });
        await fillKept(input, JSON.stringify({ order: tag, amount: 45 }));
        await fillKept(rerun.locator('input[name="reason"]'), 'amount was wrong');
        await fits(page, 'run page, rerun form open');
        await step.screenshot({ path: `${SCREENSHOTS}/oview-rerun-${viewport.width}.png` });
        await Promise.all([page.waitForURL((url) => url.pathname.startsWith('/durable_flow/runs/') && !url.pathname.includes(encodeURIComponent(runId))), rerun.locator('button').click()]);
        const newRunId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
        expect(await flow.getRun(newRunId)).toMatchObject({ replayOf: runId, input: { order: tag, amount: 45 } });
        await page.locator('.replay-of a', { hasText: runId }).waitFor();

        // The Audit page: the three actions, newest first, by the signed-in user.
        await page.locator('header.top nav a', { hasText: 'Audit' }).click();
        await page.waitForURL(`${viewer.base}/audit`);
        await page.fill('input[name="run"]', runId);
        await Promise.all([page.waitForURL(/\/audit\?run=/), page.locator('form.filters button').click()]);
        const rows = page.locator('table.audit tbody tr');
        expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-action')))).toEqual(['rerun_from', 'resume', 'pause']);
        expect(await rows.locator('td.actor').allTextContents()).toEqual(['ops', 'ops', 'ops']);
        expect(await rows.first().locator('td.reason').textContent()).toBe('amount was wrong');
        await rows.first().locator('a', { hasText: newRunId }).waitFor();
        await fits(page, 'audit page');
        await page.screenshot({ path: `${SCREENSHOTS}/oview-audit-${viewport.width}.png`, fullPage: true });

        // The other operator pages fit too.
        const pages = { failures: '/failures', workflows: '/workflows', list: '/?workflow=order-fulfilment&status=waiting&children=1', bulk: '/bulk?action=cancel&workflow=order-fulfilment&status=waiting' };
        for (const [name, path] of Object.entries(pages)) {
          await page.goto(`${viewer.base}${path}`);
          await fits(page, path);
          await page.screenshot({ path: `${SCREENSHOTS}/oview-${name}-${viewport.width}.png`, fullPage: true });
        }
        expect(scriptErrors(errors)).toEqual([]);
        expect(dialogs).toEqual([]);
      } finally {
        await context.close();
      }
    }, 60_000);
  }
});
