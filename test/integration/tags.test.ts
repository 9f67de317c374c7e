/**
 * Run tags (issue 17 point 3, migration 015): `start(input, { tags })` stores them, `getRun().tags`
 * reads them back, children and replays inherit them, and the run list (HTML and JSON) filters by
 * `?tag=key:value` (repeatable: every one must match) together with the other filters and its cursor.
 * Bad tags are refused before anything is stored, a bad filter is a 400 naming what is wrong; and the
 * tag filter is answered from the GIN index on a table of 20,000 runs.
 */
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlowError } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import type { ReadDb } from '../../lib/read/db.js';
import { RunLists } from '../../lib/read/lists.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let harness: TestHarness;
let app: express.Express;

beforeAll(async () => {
  ctx = await setupDatabase('tagsint');
  ({ flow, harness } = await ctx.harnessed());
  app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true }));
});
afterAll(async () => {
  await ctx.cleanup();
});

const rowTags = async (runId: string) =>
  (await flow.pool.query<{ tags: unknown }>('SELECT tags FROM durable_flow_workflow_runs WHERE run_id = $1', [runId])).rows[0]?.tags;

describe('the tags start option', () => {
  it('is stored with the run and read back by getRun, the JSON run page and the run list; a run without tags has {}', async () => {
    const wf = flow.workflow('tag-basic', async () => 'ok');
    const tagged = await wf.start({}, { tags: { customer: 'c1', 'app/region': 'eu-west.1', note: 'a:b c' } });
    const plain = await wf.start({});
    expect((await flow.getRun(tagged.runId))!.tags).toEqual({ customer: 'c1', 'app/region': 'eu-west.1', note: 'a:b c' });
    expect((await flow.getRun(plain.runId))!.tags).toEqual({});
    await harness.drain();
    expect((await flow.getRun(tagged.runId))!.status).toBe('completed');
    const page = await request(app).get(`/df/api/runs/${tagged.runId}`).expect(200);
    expect(page.body.run.tags).toEqual({ customer: 'c1', 'app/region': 'eu-west.1', note: 'a:b c' });
    const list = await request(app).get('/df/api/runs?workflow=tag-basic').expect(200);
    const byId = new Map((list.body.runs as { runId: string; tags: unknown }[]).map((r) => [r.runId, r.tags]));
    expect(byId.get(tagged.runId)).toEqual({ customer: 'c1', 'app/region': 'eu-west.1', note: 'a:b c' });
    expect(byId.get(plain.runId)).toEqual({});
    // A value may hold ':' (the filter splits at the first one).
    const colon = await request(app).get(`/df/api/runs?tag=${encodeURIComponent('note:a:b c')}`).expect(200);
    expect((colon.body.runs as { runId: string }[]).map((r) => r.runId)).toEqual([tagged.runId]);
  });

  it('the live changes of a run carry its tags', async () => {
    const wf = flow.workflow('tag-live', async () => 'ok');
    const changes = await harness.captureChanges(async () => {
      await wf.start({}, { tags: { live: 'yes' } });
      await harness.drain();
    });
    const runChanges = changes.filter((c) => c.type.startsWith('workflow_run.') && c.workflow === 'tag-live');
    expect(runChanges.length).toBeGreaterThan(0);
    for (const change of runChanges) expect(change.snapshot.tags).toEqual({ live: 'yes' });
  });

  it('refuses bad tags with INVALID_ARGUMENT naming the tag and the rule, and stores nothing', async () => {
    const wf = flow.workflow('tag-bad', async () => 'ok');
    const cases: [unknown, RegExp][] = [
      [['customer', 'c1'], /Expected `tags` to be an object of string keys to string values.*got an array/],
      ['customer:c1', /Expected `tags` to be an object.*got string/],
      [{ 'cust:omer': 'c1' }, /Invalid tag "cust:omer" in `tags`: a tag key must be 1 to 64 letters, digits.*no ':'/],
      [{ '': 'c1' }, /Invalid tag "" in `tags`: a tag key must be/],
      [{ ['k'.repeat(65)]: 'c1' }, /Invalid tag "k{65}" in `tags`: a tag key must be 1 to 64/],
      [{ 'white space': 'x' }, /Invalid tag "white space"/],
      [{ customer: 42 }, /Invalid tag "customer" in `tags`: a tag value must be a string of 1 to 256 characters, got number \(write it as the string '42'\)/],
      [{ customer: '' }, /Invalid tag "customer" in `tags`: a tag value must be a string of 1 to 256 characters, got one of 0/],
      [{ customer: 'v'.repeat(257) }, /got one of 257/],
      [{ customer: 'a\u0000b' }, /must not contain the character U\+0000/],
      [Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])), /Expected at most 20 tags in `tags`, got 21/],
    ];
    for (const [tags, message] of cases) {
      const error = await wf.start({}, { tags: tags as Record<string, string> }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error, String(message)).toBeInstanceOf(DurableFlowError);
      expect((error as DurableFlowError).code).toBe('INVALID_ARGUMENT');
      expect((error as Error).message).toMatch(message);
    }
    // Exactly at the limits is fine.
    const edge = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`${'k'.repeat(62)}${String(i).padStart(2, '0')}`, 'v'.repeat(256)]));
    const ok = await wf.start({}, { tags: edge });
    expect(Object.keys((await flow.getRun(ok.runId))!.tags)).toHaveLength(20);
    const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'tag-bad'`);
    expect(rows[0]!.n).toBe(1);
  });

  it('a child run carries its parent\'s tags with its own (step.invoke / invokeMany `tags`) merged over them; a replay carries the replayed run\'s', async () => {
    const child = flow.workflow('tag-child', async ({ input }: WorkflowContext<number>) => input * 2);
    const parent = flow.workflow('tag-parent', async ({ step }: WorkflowContext) => {
      const one = await step.invoke<number>('one', child, 1, { tags: { stage: 'child', extra: 'yes' } });
      const plain = await step.invoke<number>('plain', child, 2);
      const many = await step.invokeMany('many', [3, 4], { tags: { batch: 'b7' } }, (n) => ({ workflow: child, input: n }));
      return { one: one.runId, plain: plain.runId, many: many.map((m) => m.runId) };
    });
    const run = await parent.start({}, { tags: { customer: 'c9', stage: 'parent' } });
    await harness.drain();
    const ids = (await flow.getRun(run.runId))!.output as { one: string; plain: string; many: string[] };
    expect((await flow.getRun(ids.one))!.tags).toEqual({ customer: 'c9', stage: 'child', extra: 'yes' });
    expect((await flow.getRun(ids.plain))!.tags).toEqual({ customer: 'c9', stage: 'parent' });
    for (const id of ids.many) expect((await flow.getRun(id))!.tags).toEqual({ customer: 'c9', stage: 'parent', batch: 'b7' });
    // The parent's own tags are untouched by its children's.
    expect((await flow.getRun(run.runId))!.tags).toEqual({ customer: 'c9', stage: 'parent' });

    const replay = await flow.replay(ids.one);
    expect((await flow.getRun(replay.runId))!.tags).toEqual({ customer: 'c9', stage: 'child', extra: 'yes' });
    expect((await flow.getRun(replay.runId))!.replayOf).toBe(ids.one);
  });

  it('a bad `tags` option of step.invoke fails the run with INVALID_ARGUMENT and starts no child', async () => {
    const child = flow.workflow('tag-child-2', async () => 'never');
    const parent = flow.workflow('tag-parent-bad', async ({ step }: WorkflowContext) => {
      await step.invoke('one', child, 1, { tags: { 'bad key': 'x' } });
    });
    const run = await parent.start({});
    await harness.drain();
    const info = (await flow.getRun(run.runId))!;
    expect(info.status).toBe('failed');
    expect(info.error?.message).toMatch(/Invalid tag "bad key" in the `tags` of step "one": a tag key must be/);
    expect(info.childRunIds).toEqual([]);
  });

  it('a debounced start folded into a waiting run gives it its tags, as it gives its input', async () => {
    const wf = flow.workflow('tag-debounce', { debounce: { period: '1 minute' } }, async () => 'ok');
    const first = await wf.start({ n: 1 }, { tags: { round: '1' } });
    const second = await wf.start({ n: 2 }, { tags: { round: '2' } });
    expect(second.runId).toBe(first.runId);
    expect(await rowTags(first.runId)).toEqual({ round: '2' });
  });

  it('a run started twice with the same id or idempotency key keeps the tags of its first start', async () => {
    const wf = flow.workflow('tag-idem', async () => 'ok');
    const a = await wf.start({}, { idempotencyKey: 'k1', tags: { first: 'yes' } });
    const b = await wf.start({}, { idempotencyKey: 'k1', tags: { second: 'yes' } });
    expect(b.runId).toBe(a.runId);
    expect((await flow.getRun(a.runId))!.tags).toEqual({ first: 'yes' });
  });

  it('stores the tags when the start is inside the caller\'s transaction', async () => {
    const wf = flow.workflow('tag-tx', async () => 'ok');
    const client = await flow.pool.connect();
    let runId: string;
    try {
      await client.query('BEGIN');
      runId = (await wf.start({}, { transaction: client, tags: { via: 'tx' } })).runId;
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect((await flow.getRun(runId))!.tags).toEqual({ via: 'tx' });
  });
});

describe('the run list filtered by ?tag=key:value', () => {
  const started: { runId: string; customer: string; plan: string; workflow: string; status: 'completed' | 'failed' }[] = [];

  beforeAll(async () => {
    const good = flow.workflow('tag-list-ok', async () => 'ok');
    const bad = flow.workflow('tag-list-fail', { retries: 0 }, async () => {
      throw new Error('declined');
    });
    for (let i = 0; i < 60; i++) {
      const customer = `lc${i % 3}`;
      const plan = i % 2 === 0 ? 'pro' : 'free';
      const wf = i % 5 === 0 ? bad : good;
      const run = await wf.start({ i }, { tags: { customer, plan } });
      started.push({ runId: run.runId, customer, plan, workflow: wf.name, status: i % 5 === 0 ? 'failed' : 'completed' });
    }
    await harness.drain();
  });

  /** Every run id the JSON list shows for `query`, following `next` with pages of 7. */
  async function allPages(query: string): Promise<string[]> {
    const ids: string[] = [];
    let url: string | null = `/df/api/runs?limit=7&${query}`;
    let pages = 0;
    while (url) {
      const body = (await request(app).get(url).expect(200)).body as { runs: { runId: string }[]; next: string | null };
      ids.push(...body.runs.map((r) => r.runId));
      url = body.next ? `/df/api/runs?limit=7&${query}&before=${encodeURIComponent(body.next)}` : null;
      if (++pages > 50) throw new Error('paging does not end');
    }
    return ids;
  }

  it('shows exactly the runs carrying every tag asked, newest first, each once across pages, with status, workflow and search', async () => {
    const newestFirst = [...started].reverse();
    const cases: [string, (r: (typeof started)[number]) => boolean][] = [
      ['tag=customer:lc1', (r) => r.customer === 'lc1'],
      ['tag=customer:lc1&tag=plan:pro', (r) => r.customer === 'lc1' && r.plan === 'pro'],
      ['tag=plan:free&status=failed', (r) => r.plan === 'free' && r.status === 'failed'],
      ['tag=customer:lc2&workflow=tag-list-ok', (r) => r.customer === 'lc2' && r.workflow === 'tag-list-ok'],
      ['tag=customer:lc0&q=declined', (r) => r.customer === 'lc0' && r.status === 'failed'],
      ['tag=customer:lc1&tag=customer:lc2', () => false],
      ['tag=customer:nobody', () => false],
      ['tag=customer:lc1&tag=customer:lc1', (r) => r.customer === 'lc1'],
    ];
    for (const [query, keep] of cases) {
      const expected = newestFirst.filter(keep).map((r) => r.runId);
      expect(await allPages(query), query).toEqual(expected);
    }
    expect(newestFirst.filter((r) => r.customer === 'lc1' && r.plan === 'pro').length).toBeGreaterThan(7);
  });

  it('the HTML list filters the same, shows the filter as a chip whose link removes it, and tags as chips in the rows', async () => {
    const res = await request(app).get('/df/?tag=customer:lc1&tag=plan:pro&status=completed').expect(200);
    const expected = [...started].reverse().filter((r) => r.customer === 'lc1' && r.plan === 'pro' && r.status === 'completed');
    const shown = [...res.text.matchAll(/<tr data-run-id="([^"]+)"/g)].map((m) => m[1]);
    expect(shown).toEqual(expected.map((r) => r.runId));
    expect(res.text).toContain('data-tag-filter="customer:lc1"');
    expect(res.text).toContain('data-tag-filter="plan:pro"');
    // Removing customer:lc1 keeps the status and the other tag.
    expect(res.text).toMatch(/data-tag-filter="customer:lc1"><span class="chip-text">customer:lc1<\/span><a class="chip-remove" href="\/df\/\?status=completed&amp;tag=plan%3Apro"/);
    // A row's tag links to the list with that tag added.
    expect(res.text).toContain('<a class="tag" href="/df/?status=completed&amp;tag=customer%3Alc1&amp;tag=plan%3Apro"');
    // The pager keeps the tags.
    const paged = await request(app).get('/df/?tag=customer:lc0&limit=5').expect(200);
    expect(paged.text).toMatch(/href="\/df\/\?limit=5&amp;before=[^"]+&amp;tag=customer%3Alc0" rel="next"/);
    // An empty tag field (the form's) is no filter.
    const empty = await request(app).get('/df/api/runs?tag=&workflow=tag-list-ok').expect(200);
    expect(empty.body.runs.length).toBeGreaterThan(0);
    // A tag given twice is one filter, one chip.
    const twice = await request(app).get('/df/?tag=customer:lc1&tag=customer:lc1').expect(200);
    expect(twice.text.match(/data-tag-filter="customer:lc1"/g)).toHaveLength(1);
  });

  it('answers a bad tag filter with a 400 that says what is wrong, never a 500', async () => {
    const cases: [string, RegExp][] = [
      ['tag=customer', /Invalid tag filter "customer": expected key:value, such as customer:c1/],
      ['tag=:c1', /Invalid tag filter ":c1": a tag key must be 1 to 64/],
      ['tag=customer:', /Invalid tag filter "customer:": a tag value must be a string of 1 to 256 characters, got one of 0/],
      [`tag=${'k'.repeat(65)}:v`, /a tag key must be 1 to 64/],
      [`tag=k:${'v'.repeat(257)}`, /got one of 257/],
      ['tag=bad%20key:v', /Invalid tag filter "bad key:v"/],
      ['tag=k:a%00b', /U\+0000/],
      [Array.from({ length: 21 }, (_, i) => `tag=k${i}:v`).join('&'), /at most 20 tag parameters, got 21/],
      ['tag[a]=b', /Invalid tag filter: expected tag=key:value|Unknown query parameter/],
    ];
    for (const [query, message] of cases) {
      const json = await request(app).get(`/df/api/runs?${query}`);
      expect(json.status, query).toBe(400);
      expect(String(json.body.error), query).toMatch(message);
      const html = await request(app).get(`/df/?${query}`);
      expect(html.status, query).toBe(400);
    }
  });
});

describe('the tags index', () => {
  it('answers a tag filter of the run list from durable_flow_runs_tags on a table of 20,000 runs', async () => {
    // 20,000 runs: 1 in 1,000 of customer "rare", a quarter with other tags, the rest without any.
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, tags)
       SELECT 'bulk-' || i, 'tag-bulk', 'completed', '{}'::jsonb,
              CASE WHEN i % 1000 = 0 THEN jsonb_build_object('customer', 'rare', 'plan', 'pro')
                   WHEN i % 4 = 0 THEN jsonb_build_object('customer', 'c' || (i % 97), 'plan', 'free')
                   ELSE '{}'::jsonb END
       FROM generate_series(1, 20000) AS i`,
    );
    await flow.pool.query('ANALYZE durable_flow_workflow_runs');
    const list = await request(app).get('/df/api/runs?tag=customer:rare&limit=50').expect(200);
    expect(list.body.runs).toHaveLength(20);
    expect(new Set((list.body.runs as { tags: { customer: string } }[]).map((r) => r.tags.customer))).toEqual(new Set(['rare']));
    // The list's own statement (lib/read/lists.ts), with its parameters, explained instead of run.
    const plans: unknown[] = [];
    const explaining = {
      tables: flow.tables,
      select: async (sql: string, bind: unknown[] = []) => {
        plans.push((await flow.pool.query(`EXPLAIN (FORMAT JSON) ${sql}`, bind)).rows[0]['QUERY PLAN']);
        return [];
      },
    } as unknown as ReadDb;
    await new RunLists(explaining).listRuns({ status: null, workflow: null, q: null, scope: { kind: 'top' }, tags: [{ key: 'customer', value: 'rare' }], before: null, limit: 50 });
    expect(plans).toHaveLength(1);
    const nodes: { type: string; index?: string }[] = [];
    const walk = (node: Record<string, unknown>) => {
      nodes.push({ type: String(node['Node Type']), ...(node['Index Name'] ? { index: String(node['Index Name']) } : {}) });
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    walk((plans[0] as { Plan: Record<string, unknown> }[])[0]!.Plan);
    expect(nodes).toContainEqual({ type: 'Bitmap Index Scan', index: 'durable_flow_runs_tags' });
    // Runs without tags are not in the partial index: it holds the 5,000 tagged ones only.
    const { rows: stats } = await flow.pool.query<{ tuples: string }>(`SELECT reltuples::bigint::text AS tuples FROM pg_class WHERE relname = 'durable_flow_runs_tags'`);
    expect(Number(stats[0]!.tuples)).toBeLessThan(6000);
  });
});
