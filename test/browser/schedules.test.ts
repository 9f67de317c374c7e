/**
 * The Schedules page in Chromium, at 1400 and 390 px: next fire times in the schedule's own zone (and
 * UTC), the Actions cell lined up with its row, no sideways scroll of the page at 390 px (the table
 * scrolls in its panel), an overdue schedule flagged, and the Pause/Resume/Trigger buttons (CSRF form
 * posts) doing what they say, the page showing it. Screenshots in /tmp/sview-*.png.
 */
import type { Browser, Page } from 'playwright-core';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'schedules' };
const WIDE = { width: 1400, height: 800 };
const NARROW = { width: 390, height: 844 };
const SCREENSHOTS = process.env.SVIEW_SCREENSHOTS ?? '/tmp';

let ctx: TestContext;
let flow: DurableFlow;
let viewer: ViewerServer;
let browser: Browser;

beforeAll(async () => {
  ctx = await setupDatabase('schedb');
  flow = ctx.flow();
  flow.workflow('weekday-report', { schedule: { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin' } }, async () => 'ok');
  flow.workflow('sync-invoices', async () => 'synced');
  await flow.migrate();
  await flow.schedules.create('acme_invoice_sync_every_quarter_hour', { workflow: 'sync-invoices', cron: '*/15 * * * *', timezone: 'America/New_York', overlap: 'buffer_one' });
  await flow.schedules.backfill('acme_invoice_sync_every_quarter_hour', { from: '2026-06-01T10:00:00Z', to: '2026-06-01T11:00:00Z' });
  await createTestHarness(flow).drain();
  // A schedule of a workflow no process registers: its slot passes, nothing fires it.
  await flow.schedules.create('orphan', { workflow: 'ghost-workflow', cron: '*/5 * * * *' });
  await flow.pool.query(`UPDATE durable_flow_schedules SET next_at = now() - interval '12 minutes' WHERE name = 'orphan'`);
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

const scriptErrors = (errors: string[]) => errors.filter((e) => !e.startsWith('Failed to load resource'));

/** Each row's cells' top and bottom edges, the Actions cell's apart. */
/**
 * Read in one evaluation (a locator's evaluateAll finds the rows, then evaluates: a live redraw between
 * the two, as schedules fire, once left detached rows whose computed display was '').
 */
async function cellEdges(page: Page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('table.schedules tbody tr')).map((row) => {
      const cells = Array.from(row.children).map((cell) => {
        const box = cell.getBoundingClientRect();
        return { actions: cell.classList.contains('actions'), display: getComputedStyle(cell).display, top: box.top, bottom: box.bottom };
      });
      return { name: row.getAttribute('data-schedule'), cells };
    }),
  );
}

async function widths(page: Page) {
  return page.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    window: window.innerWidth,
    panels: Array.from(document.querySelectorAll('.table-scroll')).map((el) => ({ scroll: el.scrollWidth, client: el.clientWidth })),
  }));
}

describe('the Schedules page in Chromium', () => {
  for (const viewport of [WIDE, NARROW]) {
    it(`shows zone-local fire times, lines the Actions cell up with its row and fits the page (${viewport.width} px)`, async () => {
      const { page, context, errors, dialogs } = await openPage(browser, { httpCredentials: CREDENTIALS, viewport });
      try {
        await page.goto(`${viewer.base}/schedules`);
        await page.locator('[data-live-indicator][data-state="live"]').waitFor();
        const report = page.locator('tr[data-schedule="weekday-report"]');
        const fires = report.locator('ol.next-fires time');
        expect(await fires.count()).toBe(5);
        for (const time of await fires.all()) {
          const iso = (await time.getAttribute('datetime'))!;
          const berlin = DateTime.fromISO(iso, { zone: 'Europe/Berlin' }).setLocale('en-GB');
          expect(berlin.toFormat('HH:mm')).toBe('09:00');
          expect(await time.innerText()).toBe(`${berlin.toFormat('ccc d LLL')} 09:00 Europe/Berlin (${berlin.toUTC().toFormat('HH:mm')} UTC)`);
        }
        expect(await report.locator('.cron-words').innerText()).toBe('At 09:00, Monday through Friday');
        // New York's quarter hours: UTC with its date when it differs, never the zone's only.
        const sync = page.locator('tr[data-schedule="acme_invoice_sync_every_quarter_hour"]');
        expect(await sync.locator('ol.next-fires time').first().innerText()).toMatch(/^[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}( \d{4})? \d\d:(00|15|30|45) America\/New_York \(([A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}( \d{4})? )?\d\d:(00|15|30|45) UTC\)$/);
        expect(await sync.locator('ul.recent-runs li').count()).toBe(4);
        // The overdue one is flagged; the others are not.
        expect(await page.locator('tr.overdue').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-schedule')))).toEqual(['orphan']);
        expect(await page.locator('tr[data-schedule="orphan"] .overdue-flag').innerText()).toMatch(/^overdue due 1\d min ago: no worker registers workflow ghost-workflow\?$/);

        // Every cell of a row, the Actions cell too, is a table cell spanning the row's height.
        const rows = await cellEdges(page);
        expect(rows.map((r) => r.name)).toEqual(['acme_invoice_sync_every_quarter_hour', 'orphan', 'weekday-report']);
        for (const row of rows) {
          const actions = row.cells.find((c) => c.actions)!;
          expect(actions.display, row.name!).toBe('table-cell');
          for (const cell of row.cells) {
            expect(Math.abs(cell.top - actions.top), `${row.name} top`).toBeLessThanOrEqual(1);
            expect(Math.abs(cell.bottom - actions.bottom), `${row.name} bottom`).toBeLessThanOrEqual(1);
          }
        }
        // The page never scrolls sideways: at 390 px the table scrolls inside its panel.
        const measured = await widths(page);
        expect(measured.page).toBeLessThanOrEqual(measured.window);
        expect(measured.panels).toHaveLength(1);
        expect(measured.panels[0]!.client).toBeLessThanOrEqual(measured.window);
        if (viewport === NARROW) expect(measured.panels[0]!.scroll).toBeGreaterThan(measured.panels[0]!.client);
        await page.screenshot({ path: `${SCREENSHOTS}/sview-${viewport.width}.png`, fullPage: true });
        expect(dialogs).toEqual([]);
        expect(scriptErrors(errors)).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }

  it('pauses, resumes and triggers from the buttons (CSRF form posts), the page showing each', async () => {
    const { page, context, errors, dialogs } = await openPage(browser, { httpCredentials: CREDENTIALS, viewport: NARROW });
    try {
      await page.goto(`${viewer.base}/schedules`);
      const row = page.locator('tr[data-schedule="weekday-report"]');
      await row.getByRole('button', { name: 'Pause' }).click();
      await page.waitForURL(/done=pause/);
      expect(await page.locator('.notice.done').innerText()).toBe('Paused weekday-report.');
      expect(await row.locator('.badge.waiting').innerText()).toBe('paused');
      expect(await row.locator('td.next').innerText()).toBe('paused');
      expect((await flow.schedules.get('weekday-report'))!.paused).toBe(true);
      await page.screenshot({ path: `${SCREENSHOTS}/sview-paused-390.png`, fullPage: true });

      await row.getByRole('button', { name: 'Resume' }).click();
      await page.waitForURL(/done=resume/);
      expect(await page.locator('.notice.done').innerText()).toBe('Resumed weekday-report.');
      expect(await row.locator('.badge.waiting').count()).toBe(0);
      expect(await row.locator('ol.next-fires time').count()).toBe(5);
      expect((await flow.schedules.get('weekday-report'))!.paused).toBe(false);

      expect(await row.locator('ul.recent-runs li').count()).toBe(0);
      await row.getByRole('button', { name: 'Trigger now' }).click();
      await page.waitForURL(/done=trigger/);
      const runId = new URL(page.url()).searchParams.get('run')!;
      expect((await flow.getRun(runId))!.workflow).toBe('weekday-report');
      expect(await page.locator('.notice.done').innerText()).toBe(`Triggered weekday-report: run ${runId} started.`);
      expect(await row.locator(`ul.recent-runs a[href$="/runs/${runId}"]`).count()).toBe(1);
      expect((await widths(page)).page).toBeLessThanOrEqual(NARROW.width);
      await page.screenshot({ path: `${SCREENSHOTS}/sview-triggered-390.png`, fullPage: true });
      expect(dialogs).toEqual([]);
      expect(scriptErrors(errors)).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
