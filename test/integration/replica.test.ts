/**
 * `viewerDatabaseUrl` against a real streaming replica (test/helpers/replica-pair.ts: a primary of the
 * test's own and a copy made by pg_basebackup -R). Replay paused on the replica
 * (`pg_wal_replay_pause()`) makes its lag deterministic.
 */
import express from 'express';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { Change, WorkflowContext } from '../../lib/index.js';
import { setDebugPoint } from '../../lib/debug-point.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { eventually } from '../helpers/flow.js';
import { startReplicaPair } from '../helpers/replica-pair.js';
import type { ReplicaPair } from '../helpers/replica-pair.js';

const DB = 'df_replica_reads';
let pair: ReplicaPair;
const flows: DurableFlow[] = [];
const approvals = new Map<DurableFlow, { start(input: unknown): Promise<{ runId: string }> }>();
const warnings: string[] = [];
const logger = {
  info: (message: string) => void warnings.push(message),
  warn: (message: string) => void warnings.push(message),
  error: (message: string) => void warnings.push(message),
};

function viewerFlow(): DurableFlow {
  const flow = new DurableFlow({ databaseUrl: pair.primaryUrl(DB), viewerDatabaseUrl: pair.replicaUrl(DB), logger });
  flows.push(flow);
  approvals.set(
    flow,
    flow.workflow('approval', async ({ step }: WorkflowContext) => {
      await step.waitForEvent('decision', { event: 'approval_decided', timeout: '1 day' });
    }),
  );
  return flow;
}

function app(flow: DurableFlow): express.Express {
  return express().use('/df', flow.router({ allowUnauthenticated: true }));
}

/** A run waiting for its event, started on the primary and replayed on the replica. */
async function waitingRun(flow: DurableFlow): Promise<string> {
  const { runId } = await approvals.get(flow)!.start({});
  await createTestHarness(flow).drain();
  await eventually(async () => (await pair.onReplica<{ status: string }>(`SELECT status FROM durable_flow_workflow_runs WHERE run_id = '${runId}'`, DB))[0]?.status === 'waiting');
  return runId;
}

const replicaViewers = async () =>
  Number((await pair.onReplica<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '${DB}' AND application_name = 'durable-flow-viewer'`))[0]!.n);

async function csrf(agent: ReturnType<typeof request.agent>): Promise<string> {
  const page = await agent.get('/df/events');
  expect(page.status).toBe(200);
  return /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
}

beforeAll(async () => {
  pair = await startReplicaPair();
  const admin = new pg.Client({ connectionString: pair.primaryUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  await viewerFlow().migrate();
}, 60_000);
afterAll(async () => {
  await Promise.all(flows.map((flow) => flow.close({ timeout: 1000 }).catch(() => undefined)));
  pair?.destroy();
});

describe('viewer reads on a streaming replica', () => {
  it('reads its pages on the replica, and shows an action at once though replay is paused', async () => {
    const [flowA, flowB] = [viewerFlow(), viewerFlow()];
    const runId = await waitingRun(flowA);
    const agent = request.agent(app(flowA));
    const token = await csrf(agent);
    expect(await replicaViewers()).toBeGreaterThan(0);

    await pair.onReplica('SELECT pg_wal_replay_pause()');
    try {
      // A run started now is on the primary only: the viewer, reading the replica, does not list it yet.
      const { runId: unseen } = await approvals.get(flowA)!.start({});
      const before = await agent.get('/df/api/runs');
      expect(before.status).toBe(200);
      const listed = (before.body as { runs: { runId: string }[] }).runs.map((run) => run.runId);
      expect(listed).toContain(runId);
      expect(listed).not.toContain(unseen);

      // The cancel (a form POST with its CSRF token) writes the primary; the page after it shows it.
      const cancelled = await agent.post(`/df/runs/${runId}/cancel`).type('form').send({ _csrf: token });
      expect(cancelled.status).toBe(303);
      const lsnCookie = (cancelled.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('durable_flow_lsn='));
      expect(lsnCookie).toMatch(/^durable_flow_lsn=[0-9A-F]+%2F[0-9A-F]+; Path=\/df; HttpOnly; SameSite=Lax$/);
      expect(cancelled.headers.location).toBe(`/df/runs/${runId}`);
      const page = await agent.get(cancelled.headers.location!);
      expect(page.status).toBe(200);
      expect(page.text).toMatch(/<h1>approval <span class="badge [^"]*">cancelled<\/span>\s*<\/h1>/);
      expect((await agent.get(`/df/api/runs/${runId}`).then((r) => r.body as { run: { status: string } })).run.status).toBe('cancelled');
      expect(warnings.some((w) => w.startsWith('The viewer replica lags'))).toBe(true);

      // Another web process: the browser's cookie carries the position; without it, the replica's view.
      const other = app(flowB);
      const cookie = lsnCookie!.split(';')[0]!;
      const withCookie = await request(other).get(`/df/api/runs/${runId}`).set('Cookie', cookie);
      expect((withCookie.body as { run: { status: string } }).run.status).toBe('cancelled');
      const without = await request(other).get(`/df/api/runs/${runId}`);
      expect((without.body as { run: { status: string } }).run.status).toBe('waiting');
    } finally {
      await pair.onReplica('SELECT pg_wal_replay_resume()');
    }
    // Replay resumed: the replica catches up (a process without the position reads the cancel there)
    // and the process that was reading the primary reads it again.
    await eventually(async () => ((await request(app(flowB)).get(`/df/api/runs/${runId}`)).body as { run: { status: string } }).run.status === 'cancelled');
    const listed = await agent.get('/df/api/runs');
    expect((listed.body as { runs: unknown[] }).runs).toHaveLength(2);
    expect(warnings).toContain('The viewer replica has caught up: reading it again');
  }, 60_000);

  it('reads back the live feed changes on the primary while the replica lags', async () => {
    const flow = viewerFlow();
    const runId = await waitingRun(flow);
    const changes: Change[] = [];
    flow.onChange((change) => void changes.push(change));
    await flow.changesReady();
    await pair.onReplica('SELECT pg_wal_replay_pause()');
    try {
      await flow.cancel(runId);
      const change = await eventually(() => changes.find((c) => c.type === 'workflow_run.updated' && c.runId === runId));
      expect(change.snapshot.status).toBe('cancelled');
      // The page that the live update makes the browser fetch again reads what the feed showed.
      const page = await request(app(flow)).get(`/df/api/runs/${runId}`);
      expect((page.body as { run: { status: string } }).run.status).toBe('cancelled');
    } finally {
      await pair.onReplica('SELECT pg_wal_replay_resume()');
    }
  }, 60_000);

  it('falls back to the primary, with a warning, when the replica is down', async () => {
    const flow = viewerFlow();
    const runId = await waitingRun(flow);
    const viewer = app(flow);
    expect((await request(viewer).get(`/df/api/runs/${runId}`)).status).toBe(200);
    pair.stopReplica();
    try {
      await flow.cancel(runId);
      const page = await request(viewer).get(`/df/runs/${runId}`);
      expect(page.status).toBe(200);
      const json = await request(viewer).get(`/df/api/runs/${runId}`);
      expect(json.status).toBe(200);
      expect((json.body as { run: { status: string } }).run.status).toBe('cancelled');
      expect(warnings.some((w) => w.startsWith('The viewer replica did not answer'))).toBe(true);
    } finally {
      pair.startReplica();
    }
  }, 60_000);
});

describe('the replica failing under a request', () => {
  it('reads the rest of the page on the primary', async () => {
    const flow = viewerFlow();
    const runId = await waitingRun(flow);
    await flow.cancel(runId);
    await eventually(async () => (await pair.onReplica<{ status: string }>(`SELECT status FROM durable_flow_workflow_runs WHERE run_id = '${runId}'`, DB))[0]?.status === 'cancelled');
    const viewer = app(flow);
    expect((await request(viewer).get(`/df/api/runs/${runId}`)).status).toBe(200);
    // Chosen as fresh, then stopped before the page's reads (its open connections are terminated).
    let stopped = 0;
    setDebugPoint('viewer.replica-chosen', () => {
      setDebugPoint('viewer.replica-chosen', undefined);
      pair.stopReplica();
      stopped++;
    });
    try {
      const page = await request(viewer).get(`/df/runs/${runId}`);
      expect(stopped).toBe(1);
      expect(page.status).toBe(200);
      expect(page.text).toMatch(/<h1>approval <span class="badge [^"]*">cancelled<\/span>\s*<\/h1>/);
      expect(warnings).toContain('A read on the viewer replica failed: reading the primary');
    } finally {
      setDebugPoint('viewer.replica-chosen', undefined);
      pair.startReplica();
    }
  });
});

describe('the README example', () => {
  it('serves the viewer from the replica', async () => {
    Object.assign(process.env, { DATABASE_URL: pair.primaryUrl(DB), VIEWER_DATABASE_URL: pair.replicaUrl(DB), VIEWER_PASSWORD: 'pw' });
    const example = (await import('../../examples/readme/replica.js')) as { app: express.Express; flow: DurableFlow };
    flows.push(example.flow);
    await pair.onReplica(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${DB}' AND application_name = 'durable-flow-viewer'`);
    await eventually(async () => (await replicaViewers()) === 0);
    const runs = await request(example.app).get('/durable_flow/api/runs').auth('ops', 'pw');
    expect(runs.status).toBe(200);
    expect((runs.body as { runs: unknown[] }).runs.length).toBeGreaterThan(0);
    expect(await replicaViewers()).toBeGreaterThan(0);
  });
});

describe('the viewerDatabaseUrl option', () => {
  it('refuses what is not a Postgres connection string, naming the option', () => {
    expect(() => new DurableFlow({ databaseUrl: 'postgres://x@127.0.0.1/db', viewerDatabaseUrl: 'replica-host:5432' })).toThrow(
      /Expected `viewerDatabaseUrl` to be a Postgres connection string of a streaming replica.*got `"replica-host:5432"`/,
    );
    expect(() => new DurableFlow({ databaseUrl: 'postgres://x@127.0.0.1/db', viewerDatabaseUrl: 5432 as unknown as string })).toThrow(/`viewerDatabaseUrl`/);
  });
});
