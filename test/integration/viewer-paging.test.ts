/**
 * The run list reaches every run (issue #10, defects 11 and 13): following "Older" from the first page
 * shows each run exactly once under every filter, when thousands of runs share one `created_at` or lie
 * microseconds apart, in the HTML list and its JSON twin alike; and the text search finds what a user
 * types, whatever JSON escapes in it. The list holds the top-level runs unless asked for child runs
 * too (`children=1`) or for one run's children (`parent=`), and pages just as well in each (issue #11).
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

interface Seeded {
  runId: string;
  workflow: string;
  status: string;
  note: string;
  parent: string | null;
}
const seeded: Seeded[] = [];
const WORKFLOWS = ['pay', 'ship', 'mail'];
const STATUSES = ['completed', 'failed', 'waiting', 'cancelled'];
const PER_GROUP = 400;

/**
 * Inserts `PER_GROUP` runs in one statement with `created_at` given by `createdAt` (SQL over `i`, the
 * 1-based row number); workflows, statuses and notes cycle with different periods so every filter
 * combination selects runs from the middle of tied groups.
 */
async function seed(group: string, createdAt: string, parent: string | null = null): Promise<void> {
  const rows = Array.from({ length: PER_GROUP }, (_, k) => ({
    runId: `${group}-${String(k).padStart(4, '0')}`,
    workflow: WORKFLOWS[k % 3]!,
    status: STATUSES[k % 4]!,
    note: `mark-${k % 5}`,
    parent,
  }));
  seeded.push(...rows);
  await flow.pool.query(
    `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, created_at, parent_run_id)
     SELECT r.run_id, r.workflow, r.status, jsonb_build_object('note', r.note), ${createdAt}, r.parent
     FROM jsonb_to_recordset($1::jsonb) AS r(run_id text, workflow text, status text, note text, parent text, i int)`,
    [JSON.stringify(rows.map((r, k) => ({ run_id: r.runId, workflow: r.workflow, status: r.status, note: r.note, parent: r.parent, i: k + 1 })))],
  );
}

beforeAll(async () => {
  ctx = await setupDatabase('paging');
  flow = ctx.flow();
  app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true }));
  // One statement, one now(): every run of the group has the very same created_at.
  await seed('same', 'now()');
  // All inside one millisecond, a microsecond apart, newest first in id order (so id and time disagree).
  await seed('micro', `timestamptz '2024-05-01 12:00:00.000000+00' + (${PER_GROUP} - i) * interval '1 microsecond'`);
  // Ties inside microseconds inside milliseconds: three runs per microsecond, a millisecond per 21 runs.
  await seed('mixed', `timestamptz '2024-05-01 11:00:00.000500+00' + (i % 7 / 3) * interval '1 microsecond' + (i / 21) * interval '1 millisecond'`);
  // Children of one run, among the others in time, five to a microsecond.
  await seed('kids', `timestamptz '2024-05-01 11:00:00.000700+00' + (i / 5) * interval '1 microsecond'`, 'same-0000');
});
afterAll(async () => {
  await ctx.cleanup();
});

const top = (r: Seeded) => r.parent === null;
/** Query strings of the filters and their combinations, with the runs each must show. */
const filters: [string, (run: Seeded) => boolean][] = [
  ['', top],
  ['status=failed', (r) => top(r) && r.status === 'failed'],
  ['workflow=ship', (r) => top(r) && r.workflow === 'ship'],
  ['q=mark-3', (r) => top(r) && r.note === 'mark-3'],
  ['status=waiting&workflow=mail', (r) => top(r) && r.status === 'waiting' && r.workflow === 'mail'],
  ['status=completed&q=mark-1', (r) => top(r) && r.status === 'completed' && r.note === 'mark-1'],
  ['workflow=pay&q=mark-4', (r) => top(r) && r.workflow === 'pay' && r.note === 'mark-4'],
  ['status=cancelled&workflow=pay&q=mark-2', (r) => top(r) && r.status === 'cancelled' && r.workflow === 'pay' && r.note === 'mark-2'],
  // A run id's start; child runs too; one run's children.
  ['q=micro-01', (r) => r.runId.startsWith('micro-01')],
  ['children=1', () => true],
  ['children=1&status=failed&workflow=ship', (r) => r.status === 'failed' && r.workflow === 'ship'],
  ['children=1&q=kids-02', (r) => r.runId.startsWith('kids-02')],
  ['parent=same-0000', (r) => r.parent === 'same-0000'],
  ['parent=same-0000&q=mark-3', (r) => r.parent === 'same-0000' && r.note === 'mark-3'],
];

/** Every run id seen while following `next` from the first JSON page (a cycle fails the test). */
async function pageJson(query: string, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let before: string | null = null;
  for (let pages = 0; ; pages++) {
    expect(pages, `${query}: more pages than runs`).toBeLessThan(seeded.length);
    const url = `/df/api/runs?${query}${query ? '&' : ''}limit=${limit}${before ? `&before=${encodeURIComponent(before)}` : ''}`;
    const res = await request(app).get(url);
    expect(res.status, url).toBe(200);
    seen.push(...res.body.runs.map((r: { runId: string }) => r.runId));
    before = res.body.next;
    if (!before) return seen;
  }
}

/** The same, following the rendered "Older »" link of the HTML list. */
async function pageHtml(query: string, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let url: string | null = `/df/?${query}${query ? '&' : ''}limit=${limit}`;
  for (let pages = 0; url; pages++) {
    expect(pages, `${query}: more pages than runs`).toBeLessThan(seeded.length);
    const res = await request(app).get(url);
    expect(res.status, url).toBe(200);
    seen.push(...[...res.text.matchAll(/<tr data-run-id="([^"]+)">/g)].map((m) => m[1]!));
    const next = /<a href="([^"]+)" rel="next">/.exec(res.text)?.[1];
    // The link keeps the filters and the page size of the page it is on.
    url = next ? next.replace(/&amp;/g, '&') : null;
    if (url) expect(url).toContain(`limit=${limit}`);
    for (const part of query.split('&').filter(Boolean)) if (url) expect(url).toContain(part);
  }
  return seen;
}

describe('run list paging', () => {
  it('shows every run exactly once, following next, under every filter (ties in created_at, microseconds apart), in JSON and HTML', async () => {
    const table = (await flow.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM durable_flow_workflow_runs')).rows[0]!.n;
    expect(table).toBe(seeded.length);
    for (const [query, keep] of filters) {
      const expected = seeded.filter(keep).map((r) => r.runId).sort();
      expect(expected.length, query).toBeGreaterThan(20);
      for (const [how, pager] of [['json', pageJson], ['html', pageHtml]] as const) {
        // 37: page boundaries fall inside every tied group.
        const seen = await pager(query, 37);
        const what = `${how} ${query || '(no filter)'}`;
        expect(seen.length - new Set(seen).size, `${what}: duplicates`).toBe(0);
        expect([...seen].sort(), what).toEqual(expected);
      }
    }
  });

  it('pages of one run each still reach every run of a tied group', async () => {
    const seen = await pageJson('workflow=mail&status=failed', 1);
    expect([...seen].sort()).toEqual(seeded.filter((r) => top(r) && r.workflow === 'mail' && r.status === 'failed').map((r) => r.runId).sort());
  });

  it('a cursor is validated: altered, truncated or foreign ones are a 400, for the page and the JSON alike', async () => {
    const first = await request(app).get('/df/api/runs?limit=5');
    const next = first.body.next as string;
    expect(typeof next).toBe('string');
    for (const bad of [next.slice(0, -1) + (next.endsWith('1') ? '2' : '1') + 'x', next.slice(0, 10), `${next}0000000000000000000`, 'x', `${next}&`]) {
      for (const path of ['/df/api/runs', '/df/']) {
        const res = await request(app).get(`${path}?before=${encodeURIComponent(bad)}`);
        expect(res.status, `${path} ${bad}`).toBe(400);
        expect(res.text).toMatch(/Invalid cursor/);
      }
    }
  });
});
