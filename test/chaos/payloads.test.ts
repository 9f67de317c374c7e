/**
 * G10: huge payloads in the viewer. A run with a 5 MB input, output, step result and matched event,
 * and a run with 100,000 log lines: the run list and the events list stay small, the run page and its
 * JSON twin are bounded (previews, with a link to each whole value, which serves it byte for byte),
 * logs come a page at a time and every one of them is reachable, and in Chromium the pages load and
 * respond. Sizes are asserted, durations are not.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, Worker, WorkflowContext } from '../../lib/index.js';
import { launchBrowser, openPage } from '../helpers/browser.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { startViewer } from '../helpers/viewer.js';
import type { ViewerServer } from '../helpers/viewer.js';

const MB = 1024 * 1024;
const CREDENTIALS = { username: 'ops', password: 'correct horse battery staple' };
const AUTH = { Authorization: `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}` };
const LOGS = 100_000;

/** Over `bytes` of JSON text: START first, END last (in an array: jsonb reorders object keys), escapes and Unicode between. */
function big(tag: string, bytes: number) {
  const chunk = `${tag} "quoted" \\ 日本 <b>`;
  const items = [`START-${tag}`];
  for (let size = 0; size < bytes; size += Buffer.byteLength(JSON.stringify(chunk)) + 8) items.push(`${chunk} #${items.length}`);
  items.push(`END-${tag}`);
  return { items };
}
const INPUT = big('input', 5 * MB);
const OUTPUT = big('output', 5 * MB);
const RESULT = big('result', 5 * MB);
const PAYLOAD = big('payload', 5 * MB);

let ctx: TestContext;
let flow: DurableFlow;
let worker: Worker;
let viewer: ViewerServer;
let browser: Browser;
let bigRun: string;
let chattyRun: string;

beforeAll(async () => {
  ctx = await setupDatabase('payloads');
  flow = ctx.flow({ maxPayloadSize: 16 * MB });
  worker = flow.worker({ pollInterval: 100 });
  await worker.start();
  const heavy = flow.workflow('heavy', async ({ step }: WorkflowContext) => {
    await step.run('load', () => RESULT);
    await step.waitForEvent('delivery', { match: { to: 'heavy' } });
    return OUTPUT;
  });
  bigRun = (await heavy.start(INPUT)).runId;
  await eventually(async () => (await flow.getRun(bigRun))!.status === 'waiting', 60_000);
  await flow.notify('delivery', { to: 'heavy', ...PAYLOAD });
  await eventually(async () => (await flow.getRun(bigRun))!.status === 'completed', 60_000);

  const chatty = flow.workflow('chatty', async ({ step, log }: WorkflowContext) => {
    log.info('run-level line');
    await step.run('talk', () => 'talked');
  });
  chattyRun = (await chatty.start({})).runId;
  await eventually(async () => (await flow.getRun(chattyRun))!.status === 'completed', 60_000);
  // 100,000 more lines, in one statement: half on the step, half on the run; 1,000 share each instant.
  await flow.pool.query(
    `INSERT INTO durable_flow_workflow_logs (workflow_run_id, workflow_step_id, key, level, message, data, created_at)
     SELECT r.id, CASE WHEN i % 2 = 0 THEN s.id END, 'bulk-' || i, 'info', 'line ' || i, jsonb_build_object('i', i),
            now() + (i / 1000) * interval '1 millisecond'
     FROM durable_flow_workflow_runs r JOIN durable_flow_workflow_steps s ON s.workflow_run_id = r.id, generate_series(1, $2) AS i
     WHERE r.run_id = $1`,
    [chattyRun, LOGS],
  );
  viewer = await startViewer(flow, { basicAuth: CREDENTIALS });
  browser = await launchBrowser();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await viewer?.close();
  await ctx.cleanup();
});

async function get(path: string) {
  const res = await fetch(path.startsWith('http') ? path : `${viewer.base}${path}`, { headers: AUTH });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, type: res.headers.get('content-type') ?? '', bytes: body.length, text: body.toString('utf8') };
}

interface Cut {
  path: string;
  bytes: number;
  preview: string;
  href: string;
}

describe('G10: huge payloads', () => {
  it('the run list and the events list stay small, and the events list links the whole payload', async () => {
    for (const path of ['/', '/api/runs', '/?q=START-input']) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(res.bytes, path).toBeLessThan(100_000);
    }
    expect((await get('/?q=START-input')).text).toContain(bigRun);
    const events = await get('/events');
    expect(events.bytes).toBeLessThan(100_000);
    expect(events.text).toContain('START-payload');
    expect(events.text).not.toContain('END-payload');
    const api = JSON.parse((await get('/api/events')).text) as { events: { id: string; payload: unknown }[]; truncated: Cut[] };
    const cut = api.truncated.find((c) => c.path.endsWith('.payload'))!;
    expect(cut.bytes).toBeGreaterThan(5 * MB);
    expect(events.text).toContain(cut.href.replace(viewer.url, ''));
    expect(isDeepStrictEqual(JSON.parse((await get(viewer.url + cut.href)).text), { to: 'heavy', ...PAYLOAD })).toBe(true);
  });

  it('the run page and its JSON twin are bounded; each value left out is linked, and the link serves it whole', async () => {
    const page = await get(`/runs/${bigRun}`);
    expect(page.status).toBe(200);
    expect(page.bytes).toBeLessThan(250_000);
    for (const tag of ['input', 'output', 'result', 'payload']) {
      expect(page.text, tag).toContain(`START-${tag}`);
      expect(page.text, tag).not.toContain(`END-${tag}`);
    }
    const json = await get(`/api/runs/${bigRun}`);
    expect(json.bytes).toBeLessThan(250_000);
    const timeline = JSON.parse(json.text) as { run: { input?: unknown; output?: unknown }; steps: { step: { id: string; name: string } }[]; truncated: Cut[] };
    expect(timeline.run.input).toBeUndefined();
    expect(timeline.run.output).toBeUndefined();
    const stepId = (name: string) => timeline.steps.find((s) => s.step.name === name)!.step.id;
    const event = { to: 'heavy', ...PAYLOAD };
    // The wait step's result is the event it matched: as large, cut too.
    const whole: Record<string, unknown> = {
      'run.input': INPUT,
      'run.output': OUTPUT,
      [`steps.${stepId('load')}.result`]: RESULT,
      [`steps.${stepId('delivery')}.result`]: event,
    };
    const eventCut = timeline.truncated.find((c) => c.path.startsWith('events.'))!;
    whole[eventCut.path] = event;
    expect(timeline.truncated.map((c) => c.path).sort()).toEqual(Object.keys(whole).sort());
    for (const cut of timeline.truncated) {
      expect(cut.bytes, cut.path).toBeGreaterThan(5 * MB);
      expect(cut.preview.length, cut.path).toBeLessThan(10_000);
      // The page links the same place.
      expect(page.text, cut.path).toContain(`href="${cut.href}"`);
      const raw = await get(viewer.url + cut.href);
      expect(raw.status, cut.path).toBe(200);
      expect(raw.type, cut.path).toMatch(/^application\/json/);
      expect(raw.bytes, cut.path).toBe(cut.bytes);
      // A boolean: a failing deep comparison of 5 MB would spend minutes printing its diff.
      expect(isDeepStrictEqual(JSON.parse(raw.text), whole[cut.path]), cut.path).toBe(true);
    }
    for (const bad of ['run.nope', 'steps.1.nope', 'steps.x.result', 'steps.99999.result', 'run.input.x', 'logs.1.data']) {
      expect((await get(`/api/runs/${bigRun}/values/${bad}`)).status, bad).toBeGreaterThanOrEqual(400);
    }
  });

  it('100,000 log lines: the run page shows the first ones and the count; paging the logs reaches every line once, in order', async () => {
    const page = await get(`/runs/${chattyRun}`);
    expect(page.bytes).toBeLessThan(400_000);
    expect(page.text).toContain('100,001 log lines');
    const json = JSON.parse((await get(`/api/runs/${chattyRun}`)).text) as { logCount: number; logsNext: string; runLogs: unknown[]; steps: { logs: unknown[] }[] };
    expect(json.logCount).toBe(LOGS + 1);
    const shown = json.runLogs.length + json.steps.reduce((n, s) => n + s.logs.length, 0);
    expect(shown).toBeLessThanOrEqual(500);
    expect(typeof json.logsNext).toBe('string');

    const { rows } = await flow.pool.query<{ id: string }>(
      `SELECT l.id FROM durable_flow_workflow_logs l JOIN durable_flow_workflow_runs r ON r.id = l.workflow_run_id WHERE r.run_id = $1 ORDER BY l.created_at, l.id`,
      [chattyRun],
    );
    const seen: string[] = [];
    let next: string | null = `/api/runs/${chattyRun}/logs?limit=500`;
    while (next) {
      const res = JSON.parse((await get(next)).text) as { logs: { id: string }[]; next: string | null };
      seen.push(...res.logs.map((l) => l.id));
      next = res.next ? viewer.url + res.next : null;
      expect(seen.length).toBeLessThanOrEqual(rows.length);
    }
    expect(seen).toEqual(rows.map((r) => String(r.id)));

    // The HTML log pages: bounded, and each begins where the previous one ended.
    let html = await get(`/runs/${chattyRun}/logs`);
    for (let p = 0; p < 3; p++) {
      expect(html.status).toBe(200);
      expect(html.bytes).toBeLessThan(400_000);
      const ids = [...html.text.matchAll(/<tr data-log-id="(\d+)"/g)].map((m) => m[1]!);
      expect(ids).toEqual(rows.slice(p * ids.length, (p + 1) * ids.length).map((r) => String(r.id)));
      const link = /<a href="([^"]+)" rel="next">/.exec(html.text)![1]!.replace(/&amp;/g, '&');
      html = await get(viewer.url + link);
    }
  });

  it('in Chromium, the big run page and the log pages load and respond: details open, links lead on', async () => {
    const { page, errors, context } = await openPage(browser, { httpCredentials: CREDENTIALS });
    try {
      // The page goes live and refetches its fragments once (catching up): wait for that before clicking,
      // not for network idle (live updates may long-poll).
      const caughtUp = page.waitForResponse((r) => r.url().includes('fragment='), { timeout: 30_000 });
      const response = await page.goto(`${viewer.base}/runs/${bigRun}`);
      expect(response!.status()).toBe(200);
      await caughtUp;
      await page.waitForLoadState('load');
      const details = page.locator('details.value-cut').first();
      const open = await details.evaluate((d) => (d as HTMLDetailsElement).open);
      await details.locator('summary').click();
      expect(await details.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(!open);
      const href = await page.locator('a.download').first().getAttribute('href');
      const size = await page.evaluate(async (url) => (await (await fetch(url!)).arrayBuffer()).byteLength, href);
      expect(size).toBeGreaterThan(5 * MB);

      await page.goto(`${viewer.base}/runs/${chattyRun}`);
      await page.getByRole('link', { name: /All logs|Next logs/ }).first().click();
      await page.waitForLoadState();
      expect(await page.locator('tr[data-log-id]').count()).toBeGreaterThan(0);
      const first = await page.locator('tr[data-log-id]').first().getAttribute('data-log-id');
      await page.getByRole('link', { name: /Next/ }).first().click();
      await page.waitForLoadState();
      expect(await page.locator('tr[data-log-id]').first().getAttribute('data-log-id')).not.toBe(first);
      expect(errors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
