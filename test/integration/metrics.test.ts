import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { NonRetriableError } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { compactMetrics } from '../../lib/metrics/reads.js';
import { spawnFixture } from '../helpers/child.js';
import { databasePerFile, eventually } from '../helpers/flow.js';
import { registerMetricsWorkflows } from '../fixtures/metrics-workflows.js';

const files = databasePerFile('metrics');

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Parsed { types: Map<string, string>; help: Map<string, string>; samples: Sample[] }

/** A small parser of the Prometheus text format (0.0.4): HELP, TYPE and sample lines. */
function parse(body: string): Parsed {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === 'TYPE' ? types : help).set(meta[2]!, meta[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`Unparsed line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return { types, help, samples };
}

const value = (p: Parsed, name: string, labels: Record<string, string>) =>
  p.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value;

describe('GET <mount>/metrics', () => {
  it('answers Prometheus text whose counts match the runs made: statuses, totals, step and resume histograms, lag, slots', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    const wf = registerMetricsWorkflows(flow, NonRetriableError);
    const worker = flow.worker({ concurrency: 4, pollInterval: 50 });
    await worker.start();
    const ok = await Promise.all([1, 2, 3].map(() => wf.ok.start({})));
    const failed = await Promise.all([1, 2].map(() => wf.fail.start({})));
    await Promise.all(ok.map((r) => r.result()));
    await Promise.all(failed.map((r) => r.result().catch(() => 'failed')));
    // An event notified by a process without a worker: the run is made ready, then claimed (a resume sample).
    const waiting = await wf.wait.start({ key: 'k1' });
    await eventually(async () => (await flow.getRun(waiting.runId))?.status === 'waiting');
    const other = files.ctx.flow();
    await other.notify('m-go', { key: 'k1' });
    await waiting.result();
    // A run of a workflow no worker registers: due, never claimed (queue lag).
    await other.workflow('m-nobody', async () => 1).start({});

    const app = express().use('/flow', flow.router({ allowUnauthenticated: true }));
    const res = await request(app).get('/flow/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const p = parse(res.text);
    expect(Object.fromEntries(p.types)).toEqual({
      durable_flow_runs: 'gauge',
      durable_flow_runs_started_total: 'counter',
      durable_flow_runs_completed_total: 'counter',
      durable_flow_runs_failed_total: 'counter',
      durable_flow_runs_cancelled_total: 'counter',
      durable_flow_queue_lag_seconds: 'gauge',
      durable_flow_step_duration_seconds: 'histogram',
      durable_flow_event_resume_seconds: 'histogram',
      durable_flow_lease_losses_total: 'counter',
      durable_flow_worker_slots: 'gauge',
    });
    expect(p.help.get('durable_flow_runs')).toMatch(/Cluster-wide/);
    expect(p.help.get('durable_flow_worker_slots')).toMatch(/This process only/);
    expect(value(p, 'durable_flow_runs', { workflow: 'm-ok', status: 'completed' })).toBe(3);
    expect(value(p, 'durable_flow_runs', { workflow: 'm-ok', status: 'running' })).toBe(0);
    expect(value(p, 'durable_flow_runs', { workflow: 'm-fail', status: 'failed' })).toBe(2);
    expect(value(p, 'durable_flow_runs', { workflow: 'm-wait', status: 'completed' })).toBe(1);
    expect(value(p, 'durable_flow_runs', { workflow: 'm-nobody', status: 'enqueued' })).toBe(1);
    expect(value(p, 'durable_flow_runs_started_total', { workflow: 'm-ok' })).toBe(3);
    expect(value(p, 'durable_flow_runs_completed_total', { workflow: 'm-ok' })).toBe(3);
    expect(value(p, 'durable_flow_runs_failed_total', { workflow: 'm-fail' })).toBe(2);
    expect(value(p, 'durable_flow_runs_completed_total', { workflow: 'm-fail' })).toBe(0);
    // Two steps per m-ok run, one (failed) per m-fail run; +Inf is the count.
    expect(value(p, 'durable_flow_step_duration_seconds_count', { workflow: 'm-ok' })).toBe(6);
    expect(value(p, 'durable_flow_step_duration_seconds_bucket', { workflow: 'm-ok', le: '+Inf' })).toBe(6);
    expect(value(p, 'durable_flow_step_duration_seconds_count', { workflow: 'm-fail' })).toBe(2);
    expect(value(p, 'durable_flow_event_resume_seconds_count', { workflow: 'm-wait' })).toBe(1);
    expect(value(p, 'durable_flow_event_resume_seconds_bucket', { workflow: 'm-wait', le: '+Inf' })).toBe(1);
    const buckets = p.samples.filter((s) => s.name === 'durable_flow_step_duration_seconds_bucket' && s.labels.workflow === 'm-ok').map((s) => s.value);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b)); // cumulative
    const lag = p.samples.find((s) => s.name === 'durable_flow_queue_lag_seconds' && s.labels.workflow === 'm-nobody');
    expect(lag?.labels.queue).toBe('default');
    expect(lag!.value).toBeGreaterThanOrEqual(0);
    expect(value(p, 'durable_flow_worker_slots', { state: 'total' })).toBe(4);
    expect(value(p, 'durable_flow_worker_slots', { state: 'busy' })).toBe(0);
    expect(value(p, 'durable_flow_lease_losses_total', {})).toBe(0);

    // Two flows in one process: each its own registry, no clash.
    const second = await request(express().use('/other', other.router({ allowUnauthenticated: true }))).get('/other/metrics').expect(200);
    expect(value(parse(second.text), 'durable_flow_runs', { workflow: 'm-ok', status: 'completed' })).toBe(3);
    expect(value(parse(second.text), 'durable_flow_worker_slots', { state: 'total' })).toBe(0);
    await worker.stop();
  });

  it('is behind the router access check: denied until configured, basic auth asked for', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    const denied = await request(express().use('/f', flow.router())).get('/f/metrics').expect(403);
    expect(denied.text).toMatch(/denied by default/);
    const app = express().use('/f', flow.router({ basicAuth: { username: 'ops', password: 'pw' } }));
    const challenged = await request(app).get('/f/metrics').expect(401);
    expect(challenged.headers['www-authenticate']).toMatch(/^Basic/);
    await request(app).get('/f/metrics').auth('ops', 'wrong').expect(401);
    const ok = await request(app).get('/f/metrics').auth('ops', 'pw').expect(200);
    expect(ok.text).toContain('# TYPE durable_flow_runs gauge');
    await request(app).get('/f/metrics?x=1').auth('ops', 'pw').expect(400);
  });
});

describe('lease losses', () => {
  it("count this process's executions stopped by a lost lease, and keep counting them once their worker stopped", async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const slow = flow.workflow('m-slow', async ({ step }) => {
      await step.run('hold', async () => {
        entered();
        await gate;
        return 1;
      });
      return 'done';
    });
    const worker = flow.worker({ concurrency: 2, pollInterval: 50 });
    await worker.start();
    const run = await slow.start({});
    await inside;
    // Another worker took the run over (as after an expired lease): the epoch moved on.
    await flow.pool.query(`UPDATE durable_flow_workflow_runs SET lease_owner = 'elsewhere', lease_epoch = lease_epoch + 1 WHERE run_id = $1`, [run.runId]);
    release();
    await eventually(() => worker.stats.lost === 1);
    const app = express().use('/f', flow.router({ allowUnauthenticated: true }));
    const scrape = async () => parse((await request(app).get('/f/metrics').expect(200)).text);
    expect(value(await scrape(), 'durable_flow_lease_losses_total', {})).toBe(1);
    await worker.stop();
    const after = await scrape();
    expect(value(after, 'durable_flow_lease_losses_total', {})).toBe(1);
    expect(value(after, 'durable_flow_worker_slots', { state: 'total' })).toBe(0);
  });
});

describe('event → resume samples', () => {
  it('count the runs a notify claims for a local worker (waiting → running, never ready), one sample each', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const local = flow.workflow('m-local', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('go', { event: 'm-local-go', timeout: '1 hour' });
      await step.run('hold', () => gate.then(() => 1));
    });
    const runs = await Promise.all([1, 2, 3].map(() => local.start({})));
    const drainer = flow.worker({ concurrency: 3, pollInterval: 50 });
    await drainer.start();
    await eventually(async () => (await Promise.all(runs.map((r) => flow.getRun(r.runId)))).every((r) => r!.status === 'waiting'));
    await drainer.stop();
    const resumes = async () => (await flow.metrics.series('hour', 'm-local')).reduce((sum, p) => sum + p.resume.samples, 0);
    expect(await resumes()).toBe(0);

    // A long poll: the runs are leased by the notify's own transaction, or not before the test ends.
    const worker = flow.worker({ concurrency: 3, pollInterval: '1 minute' });
    await worker.start();
    try {
      expect((await flow.notify('m-local-go', {})).matchedWaits).toBe(3);
      const { rows } = await flow.pool.query(`SELECT DISTINCT lease_owner, status FROM durable_flow_workflow_runs WHERE workflow_name = 'm-local'`);
      expect(rows).toEqual([{ lease_owner: worker.id, status: 'running' }]);
      expect(await resumes()).toBe(3);
      release();
      await Promise.all(runs.map((r) => r.result({ timeout: '10 seconds' })));
      expect(await resumes()).toBe(3);
    } finally {
      await worker.stop();
    }
  });
});

describe('metric rollups across two worker processes', () => {
  it('count every run that completed or failed, whichever process ran it; the status counts equal a count of the runs', async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    await flow.pool.query(`TRUNCATE durable_flow_workflow_runs, durable_flow_run_counts, durable_flow_metric_minutes, durable_flow_metric_samples CASCADE`);
    const wf = registerMetricsWorkflows(flow, NonRetriableError);
    const children = [1, 2].map(() => spawnFixture('metrics-worker.ts', { DATABASE_URL: files.ctx.db.url }));
    try {
      await Promise.all(children.map((c) => c.waitFor(/^READY$/, 30_000)));
      const ok = await Promise.all(Array.from({ length: 20 }, () => wf.ok.start({})));
      const failed = await Promise.all(Array.from({ length: 6 }, () => wf.fail.start({})));
      const waits = await Promise.all(['a', 'b', 'c'].map((key) => wf.wait.start({ key })));
      for (const run of waits) await eventually(async () => (await flow.getRun(run.runId))?.status === 'waiting');
      for (const key of ['a', 'b', 'c']) await flow.notify('m-go', { key });
      await Promise.all([...ok, ...waits].map((r) => r.result()));
      await Promise.all(failed.map((r) => r.result().catch(() => 'failed')));

      // Each connection wrote rows of its own shard (the runs were written by three processes' connections).
      const { rows: shards } = await flow.pool.query(`SELECT count(DISTINCT shard)::int AS n FROM durable_flow_run_counts`);
      expect(shards[0].n).toBeGreaterThan(2);
      const snapshot = await flow.metrics.series('hour', null);
      const sum = (f: 'completed' | 'failed' | 'started') => snapshot.reduce((s, p) => s + p[f], 0);
      expect(sum('completed')).toBe(23);
      expect(sum('failed')).toBe(6);
      expect(sum('started')).toBe(29);
      expect(snapshot.reduce((s, p) => s + p.step.samples, 0)).toBe(20 * 2 + 6 + 3);
      expect(snapshot.reduce((s, p) => s + p.resume.samples, 0)).toBe(3);

      const counted = async () =>
        (await flow.pool.query(`SELECT workflow_name, status, sum(runs)::int AS n, sum(children)::int AS children FROM durable_flow_run_counts GROUP BY 1, 2 HAVING sum(runs) <> 0 ORDER BY 1, 2`)).rows;
      const scanned = (await flow.pool.query(`SELECT workflow_name, status, count(*)::int AS n, (count(*) FILTER (WHERE parent_run_id IS NOT NULL))::int AS children FROM durable_flow_workflow_runs GROUP BY 1, 2 ORDER BY 1, 2`)).rows;
      expect(await counted()).toEqual(scanned);
      // Folding the shards changes no count.
      await compactMetrics({ select: async (sql, bind) => (await flow.pool.query(sql, bind)).rows as never, tables: flow.tables }, 0);
      expect(await counted()).toEqual(scanned);
      const after = await flow.pool.query(`SELECT DISTINCT shard FROM durable_flow_run_counts`);
      expect(after.rows).toEqual([{ shard: 0 }]);
      // And the page's JSON says the same.
      const api = await request(express().use('/f', flow.router({ allowUnauthenticated: true }))).get('/f/api/metrics?range=day').expect(200);
      expect(api.body.points.reduce((s: number, p: { completed: number }) => s + p.completed, 0)).toBe(23);
      expect(api.body.points).toHaveLength(96);
    } finally {
      for (const c of children) c.child.kill('SIGTERM');
      await Promise.all(children.map((c) => c.exited));
    }
  });
});

describe('status counts through every kind of change', () => {
  it('stay equal to a count of the runs through sleeps, retries, children, cancel, retry and replay', async () => {
    const { flow, harness } = await files.ctx.harnessed({ backoff: { initial: '1 minute', jitter: 0 } });
    await harness.reset();
    let flaky = 0;
    const child = flow.workflow('m-child', async ({ step }) => step.run('c', () => 'child'));
    const parent = flow.workflow('m-parent', async ({ step }) => {
      await step.sleep('nap', '1 hour');
      await step.run('flaky', () => {
        if (flaky++ === 0) throw new Error('once');
        return 1;
      });
      return step.invoke('kid', child, {});
    });
    const never = flow.workflow('m-never', async ({ step }) => step.waitForEvent('m-none', { timeout: '1 day' }));
    const fails = flow.workflow('m-fails', async ({ step }) => step.run('x', () => { throw new NonRetriableError('no'); }));
    const runs = await Promise.all([parent.start({}), parent.start({}), never.start({}), never.start({}), fails.start({})]);
    await harness.drain();
    const counted = async () =>
      (await flow.pool.query(`SELECT workflow_name, status, sum(runs)::int AS n, sum(children)::int AS children FROM durable_flow_run_counts GROUP BY 1, 2 HAVING sum(runs) <> 0 ORDER BY 1, 2`)).rows;
    const scanned = async () => (await flow.pool.query(`SELECT workflow_name, status, count(*)::int AS n, (count(*) FILTER (WHERE parent_run_id IS NOT NULL))::int AS children FROM durable_flow_workflow_runs GROUP BY 1, 2 ORDER BY 1, 2`)).rows;
    expect(await counted()).toEqual(await scanned());
    await harness.travel('61 minutes');
    await harness.drain();
    await harness.travel('2 minutes');
    await harness.drain();
    expect(await counted()).toEqual(await scanned());
    await flow.cancel(runs[2]!.runId);
    await flow.retry(runs[4]!.runId);
    await flow.replay(runs[0]!.runId);
    await harness.drain();
    const final = await scanned();
    expect(await counted()).toEqual(final);
    expect(final).toEqual(expect.arrayContaining([{ workflow_name: 'm-child', status: 'completed', n: 2, children: 2 }, { workflow_name: 'm-never', status: 'cancelled', n: 1, children: 0 }]));
  });
});

describe('metrics and retention', () => {
  it('a prune takes pruned runs off the status counts, keeps the totals (old minutes folded, never lost), and harness.reset() clears them', async () => {
    const { flow, harness } = await files.ctx.harnessed();
    await harness.reset();
    const wf = registerMetricsWorkflows(flow, NonRetriableError);
    for (let i = 0; i < 4; i++) await wf.ok.start({});
    await harness.drain();
    const app = express().use('/f', flow.router({ allowUnauthenticated: true }));
    const scrape = async () => parse((await request(app).get('/f/metrics').expect(200)).text);
    let p = await scrape();
    expect(value(p, 'durable_flow_runs', { workflow: 'm-ok', status: 'completed' })).toBe(4);
    expect(value(p, 'durable_flow_runs_completed_total', { workflow: 'm-ok' })).toBe(4);

    await harness.travel('31 days');
    expect((await flow.prune()).runs).toBe(4);
    p = await scrape();
    expect(value(p, 'durable_flow_runs', { workflow: 'm-ok', status: 'completed' })).toBe(0);
    expect(value(p, 'durable_flow_runs_completed_total', { workflow: 'm-ok' })).toBe(4);
    expect(value(p, 'durable_flow_step_duration_seconds_count', { workflow: 'm-ok' })).toBe(8);
    // The minutes of 31 days ago are folded into the totals' row; no other minute row is left.
    const { rows } = await flow.pool.query(`SELECT minute = '-infinity' AS folded, shard, completed::int FROM durable_flow_metric_minutes WHERE workflow_name = 'm-ok'`);
    expect(rows).toEqual([{ folded: true, shard: 0, completed: 4 }]);
    // The page's hour shows none of them (they finished a month ago).
    const points = await flow.metrics.series('day', 'm-ok');
    expect(points.reduce((sum, point) => sum + point.completed, 0)).toBe(0);

    await harness.reset();
    p = await scrape();
    expect(p.samples.filter((s) => s.labels.workflow === 'm-ok')).toEqual([]);
  });
});
