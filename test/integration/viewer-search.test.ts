/**
 * The run list's text search finds what a user types (issue #10, defect 13): text with quotes,
 * backslashes, LIKE wildcards and any Unicode, in values and in keys, although `input::text` shows
 * JSON with `"` and `\` escaped; and it finds nothing more than that. It also finds a run by the start
 * of its id and by the class, code or message of its error, which the list shows bounded (issue #11).
 */
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let app: express.Express;

/** Run id → input. Every input is different from the others in what a search below looks for. */
const INPUTS: Record<string, unknown> = {
  quote: { said: 'she said "hi" twice' },
  backslash: { path: 'C:\\temp\\new folder' },
  both: { raw: 'a\\"b' },
  percent: { discount: '100% off' },
  underscore: { field: 'snake_case' },
  unicode: { greeting: 'Grüße aus 日本 🚀' },
  key: { 'he wrote "yes"': true },
  newline: { text: 'first line\nsecond line' },
  plain: { order: 7, status: 'paid' },
  nested: { items: [{ sku: 'x-1', notes: ['fragile "glass"'] }] },
};

/** Failed runs (their input `{}`) → their error. */
const ERRORS: Record<string, Record<string, string>> = {
  'err-declined': { class: 'PaymentError', code: 'CardDeclined', message: `Card was declined by the bank. ${'Details follow. '.repeat(30)}` },
  'err-timeout': { class: 'TimeoutError', message: 'Upstream answered nothing after 30 seconds' },
};

/** What a user types → the runs it must find (and only those). */
const SEARCHES: [string, string[]][] = [
  ['she said "hi"', ['quote']],
  ['SAID "HI" TWICE', ['quote']],
  ['"hi"', ['quote']],
  ['C:\\temp\\new', ['backslash']],
  ['\\temp', ['backslash']],
  ['a\\"b', ['both']],
  ['100%', ['percent']],
  ['0% o', ['percent']],
  ['e_c', ['underscore']],
  ['日本 🚀', ['unicode']],
  ['Grüße', ['unicode']],
  ['🚀', ['unicode']],
  ['wrote "yes"', ['key']],
  ['line\nsecond', ['newline']],
  ['fragile "glass"', ['nested']],
  // JSON as stored still matches, as before: a key with its value.
  ['"order": 7', ['plain']],
  ['"status": "paid"', ['plain']],
  // A run id's start, not its middle.
  ['back', ['backslash']],
  ['uni', ['unicode']],
  ['slash', []],
  ['err-', ['err-declined', 'err-timeout']],
  // The error's message, class and code, in any case.
  ['declined by the bank', ['err-declined']],
  ['CARD DECLINED', []],
  ['CardDeclined', ['err-declined']],
  ['paymenterror', ['err-declined']],
  ['timeouterror', ['err-timeout']],
  ['after 30 seconds', ['err-timeout']],
  // Wildcards and escapes are text, not patterns.
  ['%', ['percent']],
  ['_', ['underscore']],
  ['%_%', []],
  ['\\\\', []],
  ['nothing like this', []],
];

beforeAll(async () => {
  ctx = await setupDatabase('search');
  flow = ctx.flow();
  app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true }));
  const wf = flow.workflow('search', async () => null);
  for (const [runId, input] of Object.entries(INPUTS)) await wf.start(input, { runId });
  for (const [runId, error] of Object.entries(ERRORS)) {
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, error, failed_at) VALUES ($1, 'search', 'failed', '{}', $2, now())`,
      [runId, JSON.stringify(error)],
    );
  }
});
afterAll(async () => {
  await ctx.cleanup();
});

describe('run list search', () => {
  it('finds the runs whose input holds the typed text (quotes, backslashes, %, _, Unicode, keys, nested values), and only those, in JSON and HTML', async () => {
    for (const [q, expected] of SEARCHES) {
      const json = await request(app).get(`/df/api/runs?q=${encodeURIComponent(q)}`);
      expect(json.status, q).toBe(200);
      expect(json.body.runs.map((r: { runId: string }) => r.runId).sort(), JSON.stringify(q)).toEqual([...expected].sort());
      const html = await request(app).get(`/df/?q=${encodeURIComponent(q)}`);
      const shown = [...html.text.matchAll(/<tr data-run-id="([^"]+)">/g)].map((m) => m[1]!);
      expect(shown.sort(), `html ${JSON.stringify(q)}`).toEqual([...expected].sort());
    }
  });

  it('shows a failed run\'s error code and the start of its message, bounded, in JSON and HTML', async () => {
    const json = await request(app).get('/df/api/runs?status=failed');
    const byId = Object.fromEntries(json.body.runs.map((r: { runId: string; error: unknown }) => [r.runId, r.error]));
    expect(byId['err-timeout']).toEqual({ code: 'TimeoutError', message: 'Upstream answered nothing after 30 seconds', cut: false });
    expect(byId['err-declined']).toMatchObject({ code: 'CardDeclined', cut: true });
    expect(byId['err-declined'].message).toHaveLength(160);
    expect(ERRORS['err-declined']!.message!.startsWith(byId['err-declined'].message)).toBe(true);
    const html = await request(app).get('/df/?status=failed');
    expect(html.text).toContain('<strong class="error-code">CardDeclined</strong>');
    expect(html.text).toContain(`${byId['err-declined'].message}…</span>`);
    expect(html.text).not.toContain(ERRORS['err-declined']!.message);
    const completed = await request(app).get('/df/api/runs?q=backslash');
    expect(completed.body.runs[0].error).toBeNull();
  });

  it('a run id typed whole finds its run, whatever its input', async () => {
    const res = await request(app).get('/df/api/runs?q=backslash');
    expect(res.body.runs.map((r: { runId: string }) => r.runId)).toEqual(['backslash']);
  });
});
