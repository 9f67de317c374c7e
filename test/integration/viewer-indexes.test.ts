/**
 * The run list over the indexes of migration 019 (issue 17, points 4 and 7): lists ordered by id (the
 * creation order), each filter read from an index range, the counts the triggers keep, and the text
 * search bounded to the newest SEARCH_WINDOW runs of the filter per page, which it says, with a way on
 * that neither skips nor repeats a run; run-id prefixes stay exact over every run.
 */
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { SEARCH_WINDOW, listConditions } from '../../lib/read/list-search.js';
import type { RunFilter } from '../../lib/read/lists.js';
import { STEP_PAGE } from '../../lib/http/values.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let app: express.Express;
const TOTAL = SEARCH_WINDOW + 2000;

beforeAll(async () => {
  ctx = await setupDatabase('viewidx');
  flow = ctx.flow();
  app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true }));
  // Oldest first (ids in this order): 3 runs whose id starts with "needle-", 5 whose input holds
  // "needle", then TOTAL - 8 others; 1 in 50 failed, 4 workflows, every 10th a child of the run before.
  await flow.pool.query(
    `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, error, parent_run_id, created_at)
     SELECT CASE WHEN g <= 3 THEN 'needle-' || g ELSE 'run-' || g END, 'wf' || (g % 4),
            CASE WHEN g % 50 = 1 THEN 'failed' ELSE 'completed' END,
            jsonb_build_object('note', CASE WHEN g BETWEEN 4 AND 8 THEN 'a needle here' ELSE 'hay ' || g END),
            CASE WHEN g % 50 = 1 THEN '{"class": "Error", "message": "broke"}'::jsonb END,
            CASE WHEN g % 10 = 0 THEN 'run-' || (g - 1) END,
            now() - interval '1 day' + g * interval '1 second'
     FROM generate_series(1, ${TOTAL}) g ORDER BY g`,
  );
  // A run inserted late with an older created_at (a long transaction's): listed by id, newest first.
  await flow.pool.query(`INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, created_at) VALUES ('late', 'wf0', 'completed', now() - interval '2 days')`);
  await flow.pool.query('VACUUM ANALYZE durable_flow_workflow_runs');
});
afterAll(async () => {
  await ctx.cleanup();
});

interface Page {
  runs: { runId: string }[];
  next: string | null;
  searched: { runs: number; cut: boolean } | null;
  counts: Record<string, number>;
}

async function pages(query: string): Promise<Page[]> {
  const all: Page[] = [];
  let before: string | null = null;
  do {
    const res = await request(app).get(`/df/api/runs?${query}${before ? `&before=${encodeURIComponent(before)}` : ''}`);
    expect(res.status).toBe(200);
    all.push(res.body as Page);
    before = (res.body as Page).next;
    expect(all.length).toBeLessThan(TOTAL);
  } while (before);
  return all;
}

const ids = (list: Page[]) => list.flatMap((p) => p.runs.map((r) => r.runId));

describe('the run list at migration 019', () => {
  it('lists newest first by id, a run inserted late with an older created_at first, and counts what the triggers keep', async () => {
    const first = (await request(app).get('/df/api/runs?children=1&limit=3')).body as Page;
    expect(first.runs.map((r) => r.runId)).toEqual(['late', `run-${TOTAL}`, `run-${TOTAL - 1}`]);
    const failed = (await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE status = 'failed' AND parent_run_id IS NULL`)).rows[0]!.n;
    const page = (await request(app).get('/df/api/runs?status=failed&limit=500')).body as Page;
    expect(failed).toBe(TOTAL / 50);
    expect(page.counts.failed).toBe(failed);
    // Every failed top-level run once, in id order, over pages of 7.
    const paged = ids(await pages('status=failed&limit=7'));
    expect(paged.length).toBe(failed);
    expect(new Set(paged).size).toBe(failed);
    const numbers = paged.map((id) => Number(id.slice(4)));
    expect(numbers).toEqual([...numbers].sort((a, b) => b - a));
    // A workflow with no run of the status (the maintained counts say so): empty, without a scan.
    expect(((await request(app).get('/df/api/runs?workflow=wf0&status=waiting')).body as Page).runs).toEqual([]);
    expect((await request(app).get('/df/api/runs?workflow=wf2&status=failed&limit=500')).body.runs.every((r: { workflow: string; status: string }) => r.workflow === 'wf2' && r.status === 'failed')).toBe(true);
  });

  it('searches text among the newest runs of the filter and says so; following next finds the older matches once each, run-id prefixes over every run', async () => {
    for (const limit of [2, 3, 50]) {
      const list = await pages(`q=needle&children=1&limit=${limit}`);
      const found = ids(list);
      expect(new Set(found).size, `limit ${limit}: no run twice`).toBe(found.length);
      expect([...found].sort(), `limit ${limit}`).toEqual(['needle-1', 'needle-2', 'needle-3', 'run-4', 'run-5', 'run-6', 'run-7', 'run-8']);
      // The first page read the newest SEARCH_WINDOW runs only, and said so.
      expect(list[0]!.searched).toEqual({ runs: SEARCH_WINDOW, cut: true });
      expect(list[list.length - 1]!.searched!.cut).toBe(false);
    }
    // With room on the page, the run-id matches older than the window come at once; text matches after.
    const [first] = await pages('q=needle&children=1&limit=50');
    expect(first!.runs.map((r) => r.runId)).toEqual(['needle-3', 'needle-2', 'needle-1']);
    // A run id typed whole is found on the first page, however old.
    expect(((await request(app).get('/df/api/runs?q=needle-2')).body as Page).runs.map((r) => r.runId)).toEqual(['needle-2']);
    // The page says how far the text search read, with the link that goes on.
    const html = await request(app).get('/df/?q=needle&children=1');
    expect(html.text).toContain(`searched among the newest ${SEARCH_WINDOW.toLocaleString('en')} runs of this list`);
    expect(html.text).toMatch(/Search older runs/);
    // A search within fewer runs than the window reads all of them: nothing said, nothing cut.
    const small = (await request(app).get('/df/api/runs?q=broke&status=failed')).body as Page;
    expect(small.searched).toEqual({ runs: TOTAL / 50, cut: false });
    expect(small.runs.length).toBe(50);
  });

  it('reads every filter from an index: the primary key, runs_by_status, runs_by_workflow, runs_parent, run_id', async () => {
    const base: RunFilter = { status: null, workflow: null, q: null, scope: { kind: 'all' }, tags: [], before: null, limit: 50 };
    const plan = async (filter: RunFilter, extra = '') => {
      const params: unknown[] = [];
      const where = listConditions(filter, params);
      const sql = `EXPLAIN SELECT id FROM durable_flow_workflow_runs WHERE ${where.sql}${extra} ORDER BY id DESC LIMIT 51`;
      const rows = (await flow.pool.query<{ 'QUERY PLAN': string }>(sql, params)).rows;
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    };
    expect(await plan(base)).toMatch(/Index (Only )?Scan Backward using durable_flow_workflow_runs_pkey/);
    expect(await plan({ ...base, status: 'failed' })).toMatch(/durable_flow_runs_by_status/);
    expect(await plan({ ...base, workflow: 'wf1' })).toMatch(/durable_flow_runs_by_workflow/);
    expect(await plan({ ...base, scope: { kind: 'children', parentRunId: 'run-9' } })).toMatch(/durable_flow_runs_parent/);
    expect(await plan({ ...base, before: { createdAt: '2024-01-01T00:00:00.000000Z', id: '5000' }, status: 'failed' })).toMatch(/durable_flow_runs_by_status/);
    const prefix = (await flow.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT id FROM durable_flow_workflow_runs WHERE starts_with(run_id, $1)`, ['needle-'])).rows;
    expect(prefix.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/durable_flow_runs_run_id/);
  });

  it('pages a run of many steps on its page: STEP_PAGE at a time, in order, with the count and links', async () => {
    await flow.pool.query(`INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status) VALUES ('many-steps', 'wf0', 'completed')`);
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, position, result)
       SELECT r.id, 'step_' || g, 'succeeded', g, to_jsonb(g) FROM durable_flow_workflow_runs r, generate_series(0, ${STEP_PAGE * 2 + 49}) g WHERE r.run_id = 'many-steps'`,
    );
    const first = (await request(app).get('/df/api/runs/many-steps')).body as { steps: { step: { name: string } }[]; stepCount: number; stepsOffset: number };
    expect(first.stepCount).toBe(STEP_PAGE * 2 + 50);
    expect(first.steps.map((s) => s.step.name)).toEqual(Array.from({ length: STEP_PAGE }, (_, i) => `step_${i}`));
    const last = (await request(app).get(`/df/api/runs/many-steps?steps=${STEP_PAGE * 2}`)).body as typeof first;
    expect(last.steps.map((s) => s.step.name)).toEqual(Array.from({ length: 50 }, (_, i) => `step_${STEP_PAGE * 2 + i}`));
    expect(last.stepsOffset).toBe(STEP_PAGE * 2);
    const html = await request(app).get(`/df/runs/many-steps?steps=${STEP_PAGE}`);
    expect(html.text).toContain(`Showing steps ${STEP_PAGE + 1}–${STEP_PAGE * 2} of ${STEP_PAGE * 2 + 50}`);
    expect(html.text).toContain(`/runs/many-steps?steps=${STEP_PAGE * 2}" rel="next">Later steps`);
    expect(html.text).toContain(`/runs/many-steps" rel="prev">« Earlier steps`);
    // Live redraws fetch the page it is on, this step page.
    expect(html.text).toContain(`data-page-url="/df/runs/many-steps?steps=${STEP_PAGE}"`);
    const bad = await request(app).get('/df/api/runs/many-steps?steps=x');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain(`expected the offset of a step page (0, ${STEP_PAGE}, ${STEP_PAGE * 2} …)`);
    expect((await request(app).get('/df/runs/many-steps?steps=x')).status).toBe(400);
    // The logs page names the step of each log, on the first step page or not.
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_logs (workflow_run_id, workflow_step_id, key, level, message)
       SELECT s.workflow_run_id, s.id, 'k-' || s.name, 'info', 'log of ' || s.name FROM durable_flow_workflow_steps s
       JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id WHERE r.run_id = 'many-steps' AND s.name IN ('step_1', 'step_${STEP_PAGE * 2 + 7}')`,
    );
    const logs = (await request(app).get('/df/runs/many-steps/logs')).text;
    expect(logs).toContain(`<td>step_${STEP_PAGE * 2 + 7}</td>`);
    expect(logs).toContain('<td>step_1</td>');
  });
});
