/**
 * The run page in Chromium, at 1400 px and at 390 px (issue #11, points 7–10): the timeline chart
 * (ticks evenly spaced and unique, the legend in the colours drawn, every failed attempt drawn), the
 * times (a year when not this year, relative with the absolute on hover, no "took" for what has not
 * finished, claims versus step attempts), no sideways scrolling, and Send matching event.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, Worker, Workflow, WorkflowContext } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const CREDENTIALS = { username: 'ops', password: 'correct horse battery staple' };
const auth = { httpCredentials: CREDENTIALS };
const WIDTHS = [1400, 390] as const;
const screenshotsDir = process.env.SCREENSHOTS ? path.resolve(import.meta.dirname, '../../docs/screenshots') : undefined;
/** An unbroken run id and value, which must not widen a page. */
const LONG = 'x'.repeat(40) + '-' + 'y'.repeat(200);

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let viewer: ViewerServer;
let browser: Browser;

interface Order {
  orderId: string;
  note?: string;
}

let waitingRunId: string;
let longRunId: string;
let orders: Workflow<Order, { shipped: boolean }>;
let renewals: Workflow<unknown, void>;
let doomed: Workflow<unknown, void>;
let sprawlingRunId: string;
let decidedRunId: string;
let stubborn: Workflow<unknown, void>;

beforeAll(async () => {
  ctx = await setupDatabase('runpage');
  flow = ctx.flow();
  orders = flow.workflow('order-fulfilment', async ({ step, input, log }: WorkflowContext<Order>) => {
    const order = await step.run('load_order', () => ({ orderId: input.orderId, items: 3, total: 129.5 }));
    // Fails its first two attempts (10 s apart), so the step keeps two failed attempts.
    await step.run('charge_card', { retries: 3, backoff: () => '10 seconds' }, ({ attempt }) => {
      if (attempt <= 2) throw new Error(`Card processor timed out (attempt ${attempt})`);
      return { charged: order.total };
    });
    log.info('Charged; cooling off before reserving stock', { orderId: input.orderId });
    await step.sleep('cool_off', '90 seconds');
    await step.run('reserve_stock', () => ({ reserved: order.items }));
    const shipment = await step.waitForEvent<{ orderId: string; carrier: string }>('shipment_confirmed', {
      event: 'shipment.confirmed',
      match: { orderId: input.orderId, warehouse: { id: 'eu-1' } },
      timeout: '7 days',
    });
    await step.run('notify_customer', () => ({ sent: true, carrier: shipment.carrier }));
    return { shipped: true };
  });
  renewals = flow.workflow('renewal', async ({ step }: WorkflowContext) => {
    await step.sleepUntil('until_renewal', new Date(Date.UTC(new Date().getUTCFullYear() + 1, 0, 1, 14, 3, 5)));
  });
  doomed = flow.workflow('doomed', async ({ step }: WorkflowContext) => {
    await step.run('always_fails', { retries: 2, backoff: () => 10 }, () => {
      throw new Error('The upstream answered 502');
    });
  });
  stubborn = flow.workflow('stubborn', async ({ step }: WorkflowContext) => {
    await step.run('flaky_api', { retries: 2, backoff: () => '1 hour' }, () => {
      throw new Error('Rate limited');
    });
  });
  // Every name a run page shows, unbroken: workflow, step, event, child run.
  const child = flow.workflow(`child-${'c'.repeat(120)}`, async ({ step }: WorkflowContext) => step.waitForEvent('never', { event: `never-${'e'.repeat(150)}` }));
  const sprawling = flow.workflow(`sprawling-${'w'.repeat(150)}`, async ({ step, log }: WorkflowContext) => {
    log.warn(`message-${LONG}`, { value: LONG });
    await step.run(`step-${'s'.repeat(150)}`, () => ({ value: LONG }));
    await step.invoke(`invoke-${'i'.repeat(150)}`, child, { note: LONG });
  });
  const decision = flow.workflow('expense-decision', async ({ step, input }: WorkflowContext<{ id: string }>) =>
    step.waitAny('decision', {
      approved: { event: 'expense.approved', match: { id: input.id } },
      [`rejected-${'r'.repeat(80)}`]: { event: `expense.rejected-${'e'.repeat(120)}`, match: { id: input.id } },
      expired: { sleep: '2 days' },
    }),
  );
  worker = flow.worker({ pollInterval: 50 });
  await worker.start();
  decidedRunId = (await decision.start({ id: 'exp-7' })).runId;
  await eventually(async () => (await flow.getRun(decidedRunId))!.status === 'waiting');
  await flow.notify('expense.approved', { id: 'exp-7', by: 'ana', note: LONG });
  await eventually(async () => (await flow.getRun(decidedRunId))!.status === 'completed');
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();

  // Two waiting orders, one as a user would see it (the screenshots), one with an unbroken id and values.
  waitingRunId = await waitingOrder('ord-1042');
  longRunId = await waitingOrder(`ord-${LONG}`, { note: LONG, runId: `run-${LONG}` });
  sprawlingRunId = (await sprawling.start({}, { runId: `sprawl-${LONG}` })).runId;
  await eventually(async () => (await flow.getRun(sprawlingRunId))!.childRunIds.length === 1 && (await flow.getRun(sprawlingRunId))!.status === 'waiting');
}, 60_000);

/**
 * Starts an order and brings it to its wait, moving the flow's clock to each wake-up time (its two
 * retries, 10 s apart, then its 90 s sleep), so its timeline spans about two minutes.
 */
async function waitingOrder(orderId: string, extra: { note?: string; runId?: string } = {}): Promise<string> {
  const { runId } = await orders.start({ orderId, ...(extra.note ? { note: extra.note } : {}) }, extra.runId ? { runId: extra.runId } : {});
  for (;;) {
    const run = await eventually(async () => {
      const r = (await flow.getRun(runId))!;
      return ['retrying', 'sleeping', 'waiting'].includes(r.status) && (r.status === 'waiting' || r.wakeAt) ? r : null;
    });
    if (run.status === 'waiting') return runId;
    flow.setClockOffset(Math.max(flow.clockOffsetMs, run.wakeAt!.getTime() - Date.now() + 50));
    // Until the worker has taken this wake-up: another state or another wake-up time.
    await eventually(async () => {
      const r = (await flow.getRun(runId))!;
      return r.status !== run.status || r.wakeAt?.getTime() !== run.wakeAt!.getTime();
    });
  }
}
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

/** Errors of the page's own scripts and CSP refusals (not the network's: a favicon, the socket's first transport). */
function scriptErrors(errors: string[]): string[] {
  return errors.filter((e) => !/^Failed to load resource|^WebSocket connection/.test(e));
}

/** Opens a run's page once its live channel has caught up (which redraws the page: measure after it). */
async function openRun(page: Page, runId: string, tail = ''): Promise<void> {
  await page.goto(`${viewer.base}/runs/${encodeURIComponent(runId)}${tail}`);
  if (!tail) await page.waitForFunction(() => document.body.hasAttribute('data-refreshed'), undefined, { timeout: 10_000 });
}

async function noSidewaysScroll(page: Page): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
  expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
}

/** The stored failed attempts of a run's steps, from its JSON twin. */
async function storedFailures(page: Page, runId: string): Promise<number> {
  const timeline = (await (await page.request.get(`${viewer.base}/api/runs/${encodeURIComponent(runId)}`)).json()) as {
    steps: { step: { metadata: { failures?: unknown[] } } }[];
  };
  return timeline.steps.reduce((n, { step }) => n + (step.metadata.failures?.length ?? 0), 0);
}

describe.each(WIDTHS)('the run page at %i px', (width) => {
  const viewport = { viewport: { width, height: 900 } };

  it('draws ticks evenly spaced with unique labels, a legend in the colours drawn, and every failed attempt', async () => {
    const { page, context, errors } = await openPage(browser, { ...auth, ...viewport });
    try {
      await openRun(page, waitingRunId);
      const ticks = page.locator('.tl-row').first().locator('line.tick');
      const xs = await ticks.evaluateAll((lines) => lines.map((line) => line.getBoundingClientRect().left));
      expect(xs.length).toBeGreaterThanOrEqual(3);
      const gaps = xs.slice(1).map((x, i) => x - xs[i]!);
      for (const gap of gaps) expect(Math.abs(gap - gaps[0]!)).toBeLessThan(1);
      expect(gaps[0]!).toBeGreaterThan(width === 390 ? 20 : 60);

      // Every label shown is different, evenly spaced, and none overlaps the next.
      const labels = await page.locator('.tl-axis text.tick-label').evaluateAll((texts) =>
        texts.filter((t) => getComputedStyle(t).display !== 'none').map((t) => ({ text: t.textContent, box: t.getBoundingClientRect().toJSON() as DOMRect })),
      );
      const texts = labels.map((l) => l.text);
      expect(new Set(texts).size).toBe(texts.length);
      expect(texts).toContain('+1m');
      for (let i = 1; i < labels.length; i++) expect(labels[i]!.box.left).toBeGreaterThan(labels[i - 1]!.box.right + 4);

      // The chart fills its panel.
      const panel = await page.locator('.timeline').evaluate((el) => el.parentElement!.getBoundingClientRect().width);
      const track = await page.locator('.tl-row .tl-track').first().evaluate((el) => el.getBoundingClientRect().right - el.parentElement!.getBoundingClientRect().left);
      expect(track).toBeGreaterThan(panel - 40);

      // Each bar's legend entry shows the same fill, opacity and outline as the bar.
      const rows = await page.locator('.tl-row').evaluateAll((els) =>
        els.map((el) => {
          const style = getComputedStyle(el.querySelector('rect.tl-bar')!);
          return { key: el.getAttribute('data-key'), fill: style.fill, opacity: style.fillOpacity, stroke: style.stroke };
        }),
      );
      const legend = await page.locator('.legend li').evaluateAll((els) =>
        els.map((el) => {
          const rect = el.querySelector('rect.tl-bar');
          const style = rect ? getComputedStyle(rect) : null;
          return { key: el.getAttribute('data-key'), text: el.textContent!.trim(), fill: style?.fill, opacity: style?.fillOpacity, stroke: style?.stroke };
        }),
      );
      expect(new Set(rows.map((r) => r.key)).size).toBeGreaterThanOrEqual(3);
      for (const row of rows) {
        const entry = legend.find((l) => l.key === row.key);
        expect(entry, `legend entry for ${row.key}`).toBeDefined();
        expect({ fill: entry!.fill, opacity: entry!.opacity, stroke: entry!.stroke }).toEqual({ fill: row.fill, opacity: row.opacity, stroke: row.stroke });
      }
      // No legend entry for something not drawn.
      expect(legend.filter((l) => l.key !== 'failure').map((l) => l.key).sort()).toEqual([...new Set(rows.map((r) => r.key))].sort());
      expect(legend.find((l) => l.key === 'waiting-wait')!.text).toBe('wait: waiting');

      // Every stored failed attempt is drawn, on its step's row.
      const stored = await storedFailures(page, waitingRunId);
      expect(stored).toBe(2);
      expect(await page.locator('.tl-row[data-key="success-run"] .tl-failure').count()).toBe(stored);
      expect(await page.locator('.legend [data-key="failure"]').textContent()).toContain(`failed attempt (${stored})`);
      expect(await page.locator('[data-step="charge_card"] details.failures summary').textContent()).toBe('2 failed attempt(s)');

      await noSidewaysScroll(page);
      expect(scriptErrors(errors)).toEqual([]);
      if (screenshotsDir && width === 1400) {
        fs.mkdirSync(screenshotsDir, { recursive: true });
        await page.screenshot({ path: path.join(screenshotsDir, 'run.png'), fullPage: true });
      }
      // At 390 px, the first screen: header, cards and the timeline.
      if (screenshotsDir && width === 390) await page.screenshot({ path: path.join(screenshotsDir, 'run-mobile.png') });
    } finally {
      await context.close();
    }
  });

  it('a failed run draws each of its failed attempts, the last one included', async () => {
    const run = await doomed.start({});
    await eventually(async () => (await flow.getRun(run.runId))!.status === 'failed');
    const { page, context } = await openPage(browser, { ...auth, ...viewport });
    try {
      await openRun(page, run.runId);
      expect(await storedFailures(page, run.runId)).toBe(3);
      expect(await page.locator('.tl-row[data-key="danger-run"] .tl-failure').count()).toBe(3);
      expect(await page.locator('[data-step="always_fails"] .step-when').innerText()).toMatch(/^3 attempts · started .* · took \d+m?s$/);
      await noSidewaysScroll(page);
    } finally {
      await context.close();
    }
  });

  it('writes the year of a time in another year, relative times with the absolute on hover, and no "took" for what has not finished', async () => {
    const renewal = await renewals.start({ note: LONG }, { runId: `renewal-${LONG}` });
    await eventually(async () => (await flow.getRun(renewal.runId))!.status === 'sleeping');
    const nextYear = String(new Date().getUTCFullYear() + 1);
    const { page, context } = await openPage(browser, { ...auth, ...viewport });
    try {
      await openRun(page, renewal.runId);
      const wakes = page.locator('[data-step="until_renewal"] p.meta', { hasText: 'Wakes' });
      expect(await wakes.innerText()).toMatch(new RegExp(`^Wakes Jan 1, ${nextYear} 14:03:05 UTC \\(in \\d+ (days|months)\\)$`));
      const card = page.locator('.card', { hasText: 'Next wake-up' }).locator('time');
      expect(await card.getAttribute('title')).toBe(`Jan 1, ${nextYear} 14:03:05 UTC`);
      expect(await card.getAttribute('datetime')).toBe(`${nextYear}-01-01T14:03:05.000Z`);
      expect(await card.textContent()).toMatch(/^in \d+ (days|months)$/);
      // This year's times go without the year; relative on the page, absolute on hover.
      const created = page.locator('.card', { hasText: 'Created' }).locator('time');
      expect(await created.textContent()).toMatch(/^(just now|\d+ (s|min) ago)$/);
      expect(await created.getAttribute('title')).toMatch(/^[A-Z][a-z]{2} \d{1,2}, \d\d:\d\d:\d\d UTC$/);
      expect(await page.locator('[data-step="until_renewal"] .step-when').innerText()).toMatch(/^sleeping since /);

      await openRun(page, waitingRunId);
      const waiting = page.locator('[data-step="shipment_confirmed"]');
      expect(await waiting.locator('.badge').first().textContent()).toBe('waiting');
      expect(await waiting.innerText()).not.toContain('took');
      expect(await waiting.locator('.wait p.meta', { hasText: 'Times out' }).innerText()).toMatch(/^Times out [A-Z][a-z]{2} \d{1,2}, \d\d:\d\d:\d\d UTC \(in 6 days\)$/);
      expect(await page.locator('[data-card="duration"] .label').textContent()).toBe('Since start');
      expect(await waiting.locator('.step-when').innerText()).toMatch(/^waiting since [A-Z][a-z]{2} \d{1,2}, \d\d:\d\d:\d\d UTC \(\d+(ms|s|m)\)$/);
      expect(await page.locator('.tl-row[data-key="waiting-wait"] title').first().textContent()).toMatch(/^shipment_confirmed \(wait\): waiting, waiting since /);
      // A step between attempts is retrying, since its last failure.
      const retrying = await stubborn.start({});
      await eventually(async () => (await flow.getRun(retrying.runId))!.status === 'retrying');
      await openRun(page, retrying.runId);
      const flaky = page.locator('[data-step="flaky_api"]');
      expect(await flaky.locator('.step-when').innerText()).toMatch(/^1 attempt · retrying since [A-Z][a-z]{2} \d{1,2}, \d\d:\d\d:\d\d UTC, first attempt (just now|\d+ s ago)$/);
      expect(await flaky.locator('p.meta', { hasText: 'Next attempt' }).innerText()).toMatch(/^Next attempt .* UTC \(in (59|60) min\)$/);
      expect(await flaky.innerText()).not.toContain('took');
      expect(await page.locator('.tl-row .tl-failure').count()).toBe(1);
      await openRun(page, waitingRunId);
      // A finished step did take its time.
      expect(await page.locator('[data-step="load_order"] .step-when').innerText()).toMatch(/^1 attempt · started .* · took \d+m?s$/);
      // Claims of the run versus attempts of a step, each explained.
      const claims = page.locator('[data-card="claims"]');
      expect(await claims.locator('.label').innerText()).toBe('CLAIMS');
      expect(await claims.locator('abbr').getAttribute('title')).toContain('replays the workflow from the top');
      expect(await page.locator('[data-step="charge_card"] abbr.attempts').textContent()).toBe('3 attempts');
      expect(await page.locator('[data-step="charge_card"] abbr.attempts').getAttribute('title')).toContain('each retry after a failure');
      await noSidewaysScroll(page);
    } finally {
      await context.close();
    }
  });

  it('with unbroken ids, names and values, no run page or logs page scrolls sideways: tables and code scroll in their panel', async () => {
    const { page, context } = await openPage(browser, { ...auth, ...viewport });
    try {
      await openRun(page, longRunId);
      expect(await page.locator('.run-id').textContent()).toBe(longRunId);
      expect(await page.locator('form.send-matching textarea').inputValue()).toContain(LONG);
      await noSidewaysScroll(page);
      await openRun(page, sprawlingRunId);
      expect(await page.locator('.related li').count()).toBe(1);
      await noSidewaysScroll(page);
      const childId = (await flow.getRun(sprawlingRunId))!.childRunIds[0]!;
      await openRun(page, childId);
      expect(await page.locator('.related').innerText()).toContain(sprawlingRunId);
      await noSidewaysScroll(page);
      await openRun(page, sprawlingRunId, '/logs');
      await noSidewaysScroll(page);
      await openRun(page, longRunId, '/logs');
      expect(await page.locator('table.logs-table tbody tr').count()).toBe(1);
      expect(await page.locator('table.logs-table time').first().getAttribute('title')).toMatch(/ago$/);
      await noSidewaysScroll(page);
    } finally {
      await context.close();
    }
  });
});

describe.each(WIDTHS)('a waitAny on the run page at %i px', (width) => {
  it('shows every branch, the one taken and the ones not taken, without sideways scrolling', async () => {
    const { page, context } = await openPage(browser, { ...auth, viewport: { width, height: 900 } });
    try {
      await openRun(page, decidedRunId);
      const step = page.locator('article.step[data-step="decision"]');
      await expect.poll(() => step.locator('.branch-summary').innerText()).toMatch(/waitAny over 3 branches: took approved/);
      expect(await step.locator('.wait.branch').count()).toBe(3);
      const badges = await step.locator('.wait.branch > .badge').allInnerTexts();
      expect(badges).toEqual(['taken', 'not taken', 'not taken']);
      expect(await step.locator('.wait.branch[data-branch="approved"] .badge').isVisible()).toBe(true);
      await noSidewaysScroll(page);
      if (screenshotsDir) await page.screenshot({ path: path.join(screenshotsDir, `run-wait-any-${width}.png`), fullPage: true });
    } finally {
      await context.close();
    }
  });
});

describe('Send matching event', () => {
  it.each(WIDTHS)('at %i px: is prefilled from the wait, keeps the form on bad JSON, and wakes the run', async (width) => {
    const orderId = `order-send-${width}`;
    const run = { runId: await waitingOrder(orderId) };
    const { page, context, dialogs, errors } = await openPage(browser, { ...auth, viewport: { width, height: 900 } });
    try {
      await openRun(page, run.runId);
      const form = page.locator('form.send-matching');
      expect(await form.count()).toBe(1);
      expect(await form.locator('input[name="name"]').inputValue()).toBe('shipment.confirmed');
      const prefilled = await form.locator('textarea[name="payload"]').inputValue();
      expect(JSON.parse(prefilled)).toEqual({ orderId, warehouse: { id: 'eu-1' } });
      await noSidewaysScroll(page);

      // Bad JSON: nothing is sent, the form says what is wrong and keeps what was typed.
      const bad = `{ "orderId": "${orderId}", "warehouse": { "id": "eu-1" }, "carrier": }`;
      await form.locator('textarea[name="payload"]').fill(bad);
      await form.getByRole('button', { name: 'Send matching event' }).click();
      await expect.poll(() => form.locator('.form-error').isVisible()).toBe(true);
      expect(await form.locator('.form-error').textContent()).toBe(`The payload is not valid JSON: Unexpected token '}', ..."carrier": }". Nothing was sent.`);
      expect(await form.locator('textarea[name="payload"]').inputValue()).toBe(bad);
      expect(page.url()).toBe(`${viewer.base}/runs/${run.runId}`);
      expect((await flow.getRun(run.runId))!.status).toBe('waiting');

      // The run changes while the form is being edited: the page is redrawn, the edit stays.
      const redrawn = await page.evaluate(() => document.body.getAttribute('data-refreshed'));
      await flow.pool.query(`UPDATE ${flow.tables.runs} SET priority = 3, updated_at = clock_timestamp() WHERE run_id = $1`, [run.runId]);
      await page.waitForFunction((before) => document.body.getAttribute('data-refreshed') !== before, redrawn, { timeout: 10_000 });
      expect(await page.locator('.card', { hasText: 'Queue · priority' }).locator('.value').textContent()).toBe('default · 3');
      expect(await form.locator('textarea[name="payload"]').inputValue()).toBe(bad);

      // Valid JSON that does not contain the match: sent, matching nothing, and the page says so.
      await form.locator('textarea[name="payload"]').fill(`{ "orderId": "${orderId}", "warehouse": { "id": "us-2" } }`);
      await form.getByRole('button', { name: 'Send matching event' }).click();
      await expect.poll(() => form.locator('.form-status').textContent()).toBe('Sent, but it matched no wait: check the payload against the match.');
      expect((await flow.getRun(run.runId))!.status).toBe('waiting');

      // Fixed, it is sent: the run wakes and finishes, and the page shows it without a reload.
      await page.evaluate(() => {
        (window as unknown as { marker: number }).marker = 7;
      });
      await form.locator('textarea[name="payload"]').fill(`{ "orderId": "${orderId}", "warehouse": { "id": "eu-1", "dock": 4 }, "carrier": "DHL" }`);
      await form.getByRole('button', { name: 'Send matching event' }).click();
      await eventually(async () => (await flow.getRun(run.runId))!.status === 'completed');
      // (The status line may already be gone with the form, when the page was redrawn first.)
      expect((await flow.getRun(run.runId))!.output).toEqual({ shipped: true });
      await expect.poll(() => page.locator('h1 .badge').textContent(), { timeout: 10_000 }).toBe('completed');
      expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(7);
      expect(await page.locator('form.send-matching').count()).toBe(0);
      expect(await page.locator('[data-card="duration"] .label').textContent()).toBe('Duration');
      expect(await page.locator('[data-step="shipment_confirmed"] .wait').innerText()).not.toContain('Times out');
      expect(await page.locator('[data-step="notify_customer"] .step-when').innerText()).toContain('took');
      expect(dialogs).toEqual([]);
      expect(scriptErrors(errors)).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('works without live updates (the page reloads) and without JavaScript (a plain form post)', async () => {
    // The viewer of another flow on the same database, with no live channel attached.
    const quiet = await startViewer(ctx.flow(), { basicAuth: CREDENTIALS }, false);
    try {
      // No live channel: after sending, the page loads again and shows the run awake.
      const first = await waitingOrder('order-no-live');
      const { page, context } = await openPage(browser, auth);
      try {
        await page.goto(`${quiet.base}/runs/${first}`);
        expect(await page.locator('body').getAttribute('data-socket-path')).toBe('');
        await Promise.all([page.waitForEvent('load'), page.locator('form.send-matching').getByRole('button', { name: 'Send matching event' }).click()]);
        await eventually(async () => (await flow.getRun(first))!.status === 'completed');
      } finally {
        await context.close();
      }
      // No JavaScript: the form posts to the send-event action, which wakes the run. Bad JSON comes
      // back in the Events page's form, as typed, with what is wrong.
      const second = await waitingOrder('order-no-js');
      const noJs = await openPage(browser, { ...auth, javaScriptEnabled: false });
      try {
        await noJs.page.goto(`${quiet.base}/runs/${second}`);
        await noJs.page.locator('form.send-matching textarea[name="payload"]').fill('{ "orderId": ');
        await noJs.page.locator('form.send-matching').getByRole('button', { name: 'Send matching event' }).click();
        expect(await noJs.page.locator('body').innerText()).toContain('The payload is not valid JSON');
        expect(await noJs.page.locator('textarea[name="payload"]').inputValue()).toBe('{ "orderId": ');
        expect((await flow.getRun(second))!.status).toBe('waiting');
        await noJs.page.goto(`${quiet.base}/runs/${second}`);
        await noJs.page.locator('form.send-matching').getByRole('button', { name: 'Send matching event' }).click();
        await noJs.page.waitForURL(/\/events\?sent=\d+$/);
        await eventually(async () => (await flow.getRun(second))!.status === 'completed');
      } finally {
        await noJs.context.close();
      }
    } finally {
      await quiet.close();
    }
  });
});
