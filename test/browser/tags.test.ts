/**
 * Run tags in Chromium, at 1400 and 390 px (issue 17 point 3): a row's tag chip filters the list by
 * it, the filter shows as a chip whose × removes it (the other filters stay), a tag typed into the
 * form adds a filter, the run page lists the run's tags as links to their filter; no page scrolls
 * sideways, however long a tag.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'tags' };
const SIZES = [
  { width: 1400, height: 760 },
  { width: 390, height: 844 },
];
const LONG = `order-${'x'.repeat(120)}`;

let ctx: TestContext;
let flow: DurableFlow;
let viewer: ViewerServer;
let browser: Browser;
const runs: { runId: string; customer: string; plan: string }[] = [];

beforeAll(async () => {
  ctx = await setupDatabase('tagsb');
  flow = ctx.flow();
  const harness = createTestHarness(flow);
  const checkout = flow.workflow('checkout', async ({ step }: WorkflowContext) => step.run('charge', () => ({ charged: true })));
  for (let i = 0; i < 9; i++) {
    const customer = ['acme', 'globex', 'initech'][i % 3]!;
    const plan = i % 2 === 0 ? 'pro' : 'free';
    const run = await checkout.start({ i }, { tags: { customer, plan, ...(i === 8 ? { ref: LONG } : {}) } });
    runs.push({ runId: run.runId, customer, plan });
  }
  await checkout.start({ untagged: true });
  await harness.drain();
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

async function open(viewport: { width: number; height: number }) {
  const opened = await openPage(browser, { httpCredentials: CREDENTIALS, viewport });
  const failed: string[] = [];
  opened.page.on('response', (response) => {
    const url = new URL(response.url());
    const endedPoll = url.pathname.endsWith('/socket.io/') && url.searchParams.has('sid') && response.status() === 400;
    if (response.status() >= 400 && !endedPoll && url.pathname !== '/favicon.ico') failed.push(`${response.status()} ${url.pathname}${url.search}`);
  });
  return { ...opened, failed };
}

/** The run ids the list shows, top to bottom. */
const shownRuns = (page: Page) => page.locator('table.runs tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-run-id')));
const filterChips = (page: Page) => page.locator('.tag-filters .chip').evaluateAll((chips) => chips.map((chip) => chip.getAttribute('data-tag-filter')));
const sideways = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
const newestFirst = (keep: (run: (typeof runs)[number]) => boolean) => [...runs].reverse().filter(keep).map((run) => run.runId);

describe.each(SIZES)('tags in the viewer at $width px', (size) => {
  it('a row chip filters by its tag, the filter chip removes it, a typed tag adds one', async () => {
    const { page, context, errors, failed } = await open(size);
    try {
      await page.goto(`${viewer.base}/?status=completed`);
      expect((await shownRuns(page)).length).toBe(10);
      expect(await filterChips(page)).toEqual([]);
      // The first row (newest tagged run, i = 8) shows its tags as chips; its customer chip filters by it.
      const row = page.locator(`tr[data-run-id="${runs[8]!.runId}"]`);
      expect(await row.locator('a.tag').allInnerTexts()).toEqual(['customer:initech', 'plan:pro', `ref:${LONG}`]);
      await row.locator('a.tag', { hasText: 'customer:initech' }).click();
      await page.waitForURL(/tag=customer%3Ainitech/);
      expect(await shownRuns(page)).toEqual(newestFirst((r) => r.customer === 'initech'));
      expect(await filterChips(page)).toEqual(['customer:initech']);
      expect(new URL(page.url()).searchParams.get('status')).toBe('completed');
      // A second tag typed into the form: both must match.
      await page.locator('label.tag-input input').fill('plan:pro');
      await page.locator('form.filters button[type="submit"]').click();
      await page.waitForURL(/tag=plan%3Apro/);
      expect(await filterChips(page)).toEqual(['customer:initech', 'plan:pro']);
      expect(await shownRuns(page)).toEqual(newestFirst((r) => r.customer === 'initech' && r.plan === 'pro'));
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      // The chip's × is a large enough target on a phone, and removes its filter only.
      const remove = page.locator('.chip[data-tag-filter="customer:initech"] .chip-remove');
      const box = (await remove.boundingBox())!;
      expect(box.width).toBeGreaterThanOrEqual(20);
      expect(box.x + box.width).toBeLessThanOrEqual(size.width);
      await remove.click();
      await page.waitForURL((url) => !url.search.includes('customer'));
      expect(await filterChips(page)).toEqual(['plan:pro']);
      expect(await shownRuns(page)).toEqual(newestFirst((r) => r.plan === 'pro'));
      expect(new URL(page.url()).searchParams.get('status')).toBe('completed');
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      // A tag without a colon typed into the form: the 400 says what to write.
      await page.locator('label.tag-input input').fill('plan');
      await page.locator('form.filters button[type="submit"]').click();
      await expect.poll(() => page.locator('body').innerText()).toContain('Invalid tag filter "plan": expected key:value, such as customer:c1');
      expect(failed.filter((f) => !f.startsWith('400 /durable_flow/?'))).toEqual([]);
      expect(errors.filter((e) => !e.startsWith('Failed to load resource'))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the run page shows its tags, each a link to the runs with that tag', async () => {
    const { page, context, errors, failed } = await open(size);
    try {
      await page.goto(`${viewer.base}/runs/${runs[8]!.runId}`);
      const tags = page.locator('.run-tags a.tag');
      expect(await tags.allInnerTexts()).toEqual(['customer:initech', 'plan:pro', `ref:${LONG}`]);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      // The long tag wraps inside the page. Read in one evaluation, polled: a live redraw of the run page
      // between a locator's query and its box read leaves a detached element (boundingBox null).
      await expect
        .poll(() => page.evaluate(() => document.querySelectorAll('.run-tags a.tag')[2]?.getBoundingClientRect().right ?? Infinity))
        .toBeLessThanOrEqual(size.width);
      await tags.nth(1).click();
      await page.waitForURL(/\?tag=plan%3Apro$/);
      expect(await filterChips(page)).toEqual(['plan:pro']);
      expect(await shownRuns(page)).toEqual(newestFirst((r) => r.plan === 'pro'));
      expect(failed).toEqual([]);
      expect(errors.filter((e) => !e.startsWith('Failed to load resource'))).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
