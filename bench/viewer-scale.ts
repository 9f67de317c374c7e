/**
 * The viewer at scale (issue 17, point 4): a database of N runs (default 10,000,000) built by set-based
 * SQL, and one run of 10,000 steps, then every list page, filter, count and search of the viewer timed
 * through its JSON API over HTTP (the router, as a browser's fetch sees it). Figures are printed, never
 * asserted.
 *
 *   npx tsx bench/viewer-scale.ts                      # 10,000,000 runs (the build takes a while)
 *   npx tsx bench/viewer-scale.ts --runs=1000000 --keep
 *   npx tsx bench/viewer-scale.ts --reuse=df_viewer_<time>_<id>   # measure a kept database again
 *
 * The database is named as the other bench databases (df_viewer_<time>_<id>), so a test run started
 * meanwhile leaves it alone. `--reuse` runs migrate() on it first (a new migration's indexes are built).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import express from 'express';
import pg from 'pg';
import { DurableFlow } from '../lib/index.js';
import { ADMIN_URL, createDb, median, percentile, round, urlFor } from './anchors/common.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const N = Number(arg('runs') ?? 10_000_000);
const SAMPLES = Number(arg('samples') ?? 25);
const reuse = arg('reuse');
const keep = process.argv.includes('--keep') || reuse !== undefined;
if (!Number.isInteger(N) || N < 10_000) throw new Error('--runs: an integer of at least 10000');
const CHUNK = 500_000;
const WORKFLOWS = 20;
const FANOUT = 10_000;
const BIG_STEPS = 10_000;

const db = reuse ? { name: reuse, url: urlFor(reuse, ADMIN_URL), drop: async () => {} } : await createDb('df_viewer');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 10 });
const log = (text: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);

/**
 * The runs: statuses by a hash of g (93 % completed, 3 % failed, 1.5 % cancelled, then running,
 * sleeping, waiting with a pending wait, enqueued for later), 20 workflows, every 10th run a child of
 * the run before it, tags on a tenth (`tenant` of 1,000 values and `env:prod`), inputs of ~300 bytes.
 * Triggers are off while loading (session_replication_role); the maintained counts are recomputed after.
 */
async function build(client: pg.Client): Promise<void> {
  await client.query(`SET session_replication_role = replica`);
  for (let from = 1; from <= N; from += CHUNK) {
    const to = Math.min(N, from + CHUNK - 1);
    const t = performance.now();
    await client.query(
      `WITH g AS (
         SELECT g, (g * 2654435761 % 1000) AS h, now() - (($2::bigint - g) * interval '90 days' / $2::bigint) AS at
         FROM generate_series($1::bigint, $3::bigint) g)
       INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, output, error, parent_run_id, parent_step_name,
         tags, wake_at, lease_owner, lease_expires_at, attempts, created_at, updated_at, started_at, completed_at, failed_at, cancelled_at)
       SELECT md5(g::text)::uuid::text, 'wf_' || lpad((g * 7 % ${WORKFLOWS})::text, 2, '0'),
         CASE WHEN h < 930 THEN 'completed' WHEN h < 960 THEN 'failed' WHEN h < 975 THEN 'cancelled' WHEN h < 980 THEN 'running'
              WHEN h < 990 THEN 'sleeping' WHEN h < 998 THEN 'waiting' ELSE 'enqueued' END,
         jsonb_build_object('orderId', g, 'customer', 'cust-' || (g % 100000), 'email', 'user' || (g % 100000) || '@example.com',
           'items', jsonb_build_array(jsonb_build_object('sku', 'sku-' || (g % 977), 'qty', g % 5 + 1), jsonb_build_object('sku', 'sku-' || (g % 613), 'qty', 1)),
           'note', md5(g::text) || ' ' || md5((g + 1)::text) || ' ' || md5((g + 2)::text)),
         CASE WHEN h < 930 THEN '{"ok": true}'::jsonb END,
         CASE WHEN h >= 930 AND h < 960 THEN jsonb_build_object('class', 'PaymentError', 'code', 'E_DECLINED_' || (g % 7), 'message', 'card declined for order ' || g) END,
         CASE WHEN g % 10 = 9 THEN md5((g - 1)::text)::uuid::text END, CASE WHEN g % 10 = 9 THEN 'child_start' END,
         CASE WHEN g % 10 = 3 THEN jsonb_build_object('tenant', 't' || (g / 10 % 1000), 'env', 'prod') ELSE '{}'::jsonb END,
         CASE WHEN h >= 975 AND h < 980 THEN now() + interval '1 hour' WHEN h >= 980 AND h < 990 THEN now() + interval '1 day'
              WHEN h >= 998 THEN now() + interval '2 days' END,
         CASE WHEN h >= 975 AND h < 980 THEN 'bench-worker' END, CASE WHEN h >= 975 AND h < 980 THEN now() + interval '1 hour' END,
         CASE WHEN h < 998 THEN 1 ELSE 0 END, at, at + interval '2 seconds', CASE WHEN h < 998 THEN at + interval '1 second' END,
         CASE WHEN h < 930 THEN at + interval '2 seconds' END, CASE WHEN h >= 930 AND h < 960 THEN at + interval '2 seconds' END,
         CASE WHEN h >= 960 AND h < 975 THEN at + interval '2 seconds' END
       FROM g`,
      [from, N, to],
    );
    log(`runs ${to.toLocaleString('en')} / ${N.toLocaleString('en')} (${Math.round(performance.now() - t)} ms)`);
  }
  // Waiting runs: the step they wait in and its pending wait.
  await client.query(
    `WITH s AS (
       INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, kind, status, position, started_at, created_at, updated_at)
       SELECT id, 'approval', 'wait', 'waiting', 0, created_at, created_at, created_at FROM durable_flow_workflow_runs WHERE status = 'waiting'
       RETURNING id, workflow_run_id, created_at)
     INSERT INTO durable_flow_workflow_waits (workflow_run_id, workflow_step_id, event_name, status, match, timeout_at, created_at, updated_at)
     SELECT workflow_run_id, id, 'approval', 'pending', jsonb_build_object('run', workflow_run_id), created_at + interval '7 days', created_at, created_at FROM s`,
  );
  // One fan-out parent with FANOUT children, and one run of BIG_STEPS steps (each with a log).
  await client.query(
    `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, output, created_at, started_at, completed_at)
     VALUES ('bench-fanout', 'wf_fanout', 'completed', '{"n": ${FANOUT}}', '{"ok": true}', now(), now(), now()),
            ('bench-big', 'wf_big', 'completed', '{"steps": ${BIG_STEPS}}', '{"ok": true}', now(), now(), now())`,
  );
  await client.query(
    `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, output, parent_run_id, parent_step_name, created_at, started_at, completed_at)
     SELECT 'bench-fanout-' || g, 'wf_child', 'completed', jsonb_build_object('item', g), '{"ok": true}', 'bench-fanout', 'items_' || g, now(), now(), now()
     FROM generate_series(1, ${FANOUT}) g`,
  );
  await client.query(
    `WITH s AS (
       INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, attempts, position, result, started_at, completed_at)
       SELECT r.id, 'step_' || g, 'succeeded', 1, g, jsonb_build_object('value', g, 'text', md5(g::text)), now(), now()
       FROM durable_flow_workflow_runs r CROSS JOIN generate_series(0, ${BIG_STEPS - 1}) g WHERE r.run_id = 'bench-big'
       RETURNING id, workflow_run_id, position)
     INSERT INTO durable_flow_workflow_logs (workflow_run_id, workflow_step_id, key, level, message)
     SELECT workflow_run_id, id, '@' || position, 'info', 'step ' || position || ' done' FROM s`,
  );
  await client.query(`SET session_replication_role = origin`);
  // What the metric triggers would have kept (migration 016's initial fill).
  await client.query(`DELETE FROM durable_flow_run_counts`);
  await client.query(
    `INSERT INTO durable_flow_run_counts (workflow_name, status, shard, runs, children)
     SELECT workflow_name, status, 0, count(*), count(*) FILTER (WHERE parent_run_id IS NOT NULL) FROM durable_flow_workflow_runs GROUP BY 1, 2`,
  );
  log('vacuum analyze');
  await client.query(`VACUUM ANALYZE`);
}

interface Figure {
  query: string;
  samples: number;
  median: number;
  p95: number;
  rows: number;
}

async function measure(base: string, cases: [string, string][]): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const [name, path] of cases) {
    const times: number[] = [];
    let rows = 0;
    let failed: string | null = null;
    // A query over a second a sample (a scan of every run) is timed 3 times, not SAMPLES: still a figure, in minutes.
    let samples = SAMPLES;
    for (let i = 0; i < samples + 2; i++) {
      const t = performance.now();
      const res = await fetch(`${base}${path}`, { headers: path.startsWith('/api/') ? {} : { accept: 'text/html' } });
      const body = await res.text();
      const took = performance.now() - t;
      // A refusal (the viewer's 10 s statement timeout, say) is a figure too: the time it took to fail.
      if (!res.ok) failed = `${res.status}`;
      if (i === 0 && took > 1000) samples = Math.min(SAMPLES, 3);
      if (i >= 2) times.push(took); // two warm-ups
      if (path.startsWith('/api/') && res.ok) {
        const json = JSON.parse(body) as { runs?: unknown[]; workflows?: unknown[]; steps?: unknown[] };
        rows = (json.runs ?? json.workflows ?? json.steps ?? []).length;
      }
    }
    figures.push({ query: failed ? `${name} (HTTP ${failed})` : name, samples: times.length, median: round(median(times), 1), p95: round(percentile(times, 95), 1), rows });
    log(`${name}: ${round(median(times), 1)} ms`);
  }
  return figures;
}

try {
  await flow.migrate();
  // A client of its own: the build's statements run longer than the flow's query timeout.
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    if (!reuse) {
      const t = performance.now();
      await build(client);
      log(`built ${N.toLocaleString('en')} runs in ${Math.round((performance.now() - t) / 1000)} s`);
    }
    const sample = async (sql: string) => (await client.query(sql)).rows[0] as Record<string, string>;
    const mid = await sample(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '_' || id AS cursor, run_id
       FROM durable_flow_workflow_runs WHERE id = (SELECT max(id) / 2 FROM durable_flow_workflow_runs)`,
    );
    const deep = encodeURIComponent(mid.cursor!);
    const prefix = mid.run_id!.slice(0, 8);
    const app = express();
    app.use('/durable_flow', flow.router({ allowUnauthenticated: true }));
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/durable_flow`;
    const cases: [string, string][] = [
      ['list, top, first page', '/api/runs'],
      ['list, top, deep page', `/api/runs?before=${deep}`],
      ['list, all, first page', '/api/runs?children=1'],
      ['list, all, deep page', `/api/runs?children=1&before=${deep}`],
      [`list, children of a ${FANOUT.toLocaleString('en')}-child run`, '/api/runs?parent=bench-fanout'],
      ...['completed', 'failed', 'cancelled', 'running', 'sleeping', 'waiting', 'enqueued', 'retrying'].map(
        (s): [string, string] => [`status=${s}`, `/api/runs?status=${s}`],
      ),
      ['status=failed, deep page', `/api/runs?status=failed&before=${deep}`],
      ['workflow', '/api/runs?workflow=wf_07'],
      ['workflow, deep page', `/api/runs?workflow=wf_07&before=${deep}`],
      ['workflow + status=completed', '/api/runs?workflow=wf_07&status=completed'],
      ['workflow + status=failed', '/api/runs?workflow=wf_07&status=failed'],
      ['workflow + status=waiting', '/api/runs?workflow=wf_07&status=waiting'],
      ['tag (1,000 runs)', '/api/runs?tag=tenant:t42'],
      ['tag (1,000,000 runs)', '/api/runs?tag=env:prod'],
      ['tag + status=failed', '/api/runs?tag=env:prod&status=failed'],
      ['run id typed whole', `/api/runs?q=${mid.run_id}`],
      ['run id prefix (8 chars)', `/api/runs?q=${prefix}`],
      ['text search, common (items)', '/api/runs?q=sku-1'],
      ['text search, rare', '/api/runs?q=cust-4242'],
      ['text search, no match', '/api/runs?q=no-such-text'],
      ['text search + status=failed', '/api/runs?q=declined&status=failed'],
      ['counts + 1 row (all)', '/api/runs?children=1&limit=1'],
      ['counts + 1 row (workflow)', '/api/runs?workflow=wf_07&limit=1'],
      ['Workflows page (JSON)', '/api/workflows'],
      ['Run list page (HTML)', '/'],
      [`run page (JSON), ${BIG_STEPS.toLocaleString('en')} steps`, '/api/runs/bench-big'],
      [`run page (HTML), ${BIG_STEPS.toLocaleString('en')} steps`, '/runs/bench-big'],
      [`run page logs, ${BIG_STEPS.toLocaleString('en')} steps`, '/api/runs/bench-big/logs'],
    ];
    const figures = await measure(base, cases.slice(Number(arg('skip') ?? 0)));
    server.close();
    const total = await sample(`SELECT count(*) AS n FROM durable_flow_workflow_runs`);
    console.log(`\nViewer at ${Number(total.n).toLocaleString('en')} runs (${SAMPLES} samples each, 3 for a query over a second, after 2 warm-ups; ms over HTTP, JSON API unless said)\n`);
    console.log('| query | median ms | p95 ms | samples | rows |');
    console.log('|---|---:|---:|---:|---:|');
    for (const f of figures) console.log(`| ${f.query} | ${f.median} | ${f.p95} | ${f.samples} | ${f.rows} |`);
    if (keep) console.log(`\nkept: --reuse=${db.name}`);
  } finally {
    await client.end();
  }
} finally {
  await flow.close();
  if (!keep) await db.drop();
}
