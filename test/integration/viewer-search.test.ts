/**
 * The run list's text search finds what a user types (issue #10, defect 13): text with quotes,
 * backslashes, LIKE wildcards and any Unicode, in values and in keys, although `input::text` shows
 * JSON with `"` and `\` escaped; and it finds nothing more than that.
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

  it('a run id typed whole finds its run, whatever its input', async () => {
    const res = await request(app).get('/df/api/runs?q=backslash');
    expect(res.body.runs.map((r: { runId: string }) => r.runId)).toEqual(['backslash']);
  });
});
