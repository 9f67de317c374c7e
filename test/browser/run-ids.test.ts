/**
 * Every run id opens from the run list (issue #10, defect 13): in Chromium, a click on the run's link
 * opens its page, whose actions and JSON twin work too, for ids a URL would otherwise bend: dot
 * segments (browsers resolve `.` and `..`, even as `%2e`, before sending), slashes, `?`, `#`, `%`,
 * spaces, Unicode, and the ids that look like the escape used for the dots.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'correct horse battery staple' };
const CANCEL_QUESTION = 'Cancel this run (and the runs it started)?';
const IDS = [
  '.', '..', '...', './x', '../..', '.%2e', '%2e', '%2E%2e', 'a/b', '/', '?x', '#', '#top', '%', '%25', 'a%2Fb',
  'with  two spaces', ' leading', 'trailing ', '日本語-🚀', 'back\\slash', '~', '~.', '~..', '~~.', '~x', 'plain-id',
];

let ctx: TestContext;
let flow: DurableFlow;
let viewer: ViewerServer;
let browser: Browser;

beforeAll(async () => {
  ctx = await setupDatabase('runids');
  flow = ctx.flow();
  // No worker: the runs stay enqueued, so each page offers its Cancel action.
  const wf = flow.workflow('odd-ids', async () => null);
  for (const runId of IDS) await wf.start({ id: runId }, { runId });
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

describe('run ids in URLs', () => {
  it('every run opens by clicking its link in the list; its JSON twin and its Cancel action reach the same run', async () => {
    const { page, dialogs, context } = await openPage(browser, { httpCredentials: CREDENTIALS }, [CANCEL_QUESTION]);
    try {
      for (const runId of IDS) {
        await page.goto(`${viewer.base}/?workflow=odd-ids`);
        const rows = await page.locator('tr[data-run-id]').all();
        const ids = await Promise.all(rows.map((row) => row.getAttribute('data-run-id')));
        expect([...ids].sort()).toEqual([...IDS].sort());
        const row = rows[ids.indexOf(runId)]!;
        const [response] = await Promise.all([page.waitForEvent('response', (r) => r.request().isNavigationRequest()), row.locator('a.workflow').click()]);
        await page.waitForLoadState();
        expect(response.status(), `${JSON.stringify(runId)}: ${response.url()}`).toBe(200);
        expect(await page.locator('code.run-id').first().textContent(), response.url()).toBe(runId);

        const json = await page.locator('a[rel="alternate"][type="application/json"]').getAttribute('href');
        const twin = await page.evaluate(async (href) => {
          const res = await fetch(href!, { headers: { Accept: 'application/json' } });
          return { status: res.status, body: (await res.json()) as { run: { runId: string } } };
        }, json);
        expect(twin.status, `${JSON.stringify(runId)}: ${json}`).toBe(200);
        expect(twin.body.run.runId).toBe(runId);

        await page.getByRole('button', { name: 'Cancel run' }).click();
        await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('cancelled');
        expect(await page.locator('code.run-id').first().textContent()).toBe(runId);
        expect((await flow.getRun(runId))!.status, JSON.stringify(runId)).toBe('cancelled');
      }
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  }, 300_000);
});
