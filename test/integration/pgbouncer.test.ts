/**
 * Behind a real PgBouncer in transaction mode (Debian's 1.18: no named prepared statements), three
 * server connections shared by every client: with `directUrl`, migrations, LISTEN and the prune lock go
 * to Postgres itself and everything else through the bouncer, across two worker processes and this
 * one. Without `directUrl`, migrate() refuses, saying what to pass.
 */
import fs from 'node:fs';
import path from 'node:path';
import express from 'express';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { Logger } from '../../lib/index.js';
import { loadMigrations } from '../../lib/db/migrator.js';
import { killAllChildren, spawnFixture } from '../helpers/child.js';
import { createEmptyDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import { startPgBouncer } from '../helpers/pgbouncer.js';
import type { Bouncer } from '../helpers/pgbouncer.js';
import { registerBouncerWorkflows } from '../fixtures/bouncer-workflows.js';

/** What breaks when a session is assumed through a pooler in transaction mode. */
const SESSION_ERRORS = /prepared statement|unsupported startup parameter|advisory lock|does not exist|LISTEN (connection|failed)/i;

let db: TestDatabase;
let bouncer: Bouncer;
let direct: pg.Pool;
const flows: DurableFlow[] = [];
const problems: string[] = [];
const logger: Logger = {
  warn: (message, data) => problems.push(`warn ${message} ${JSON.stringify(data ?? {})}`),
  error: (message, data) => problems.push(`error ${message} ${JSON.stringify(data ?? {})}`),
};

beforeAll(async () => {
  db = await createEmptyDatabase('pgbounce');
  bouncer = await startPgBouncer({ database: db.name, poolSize: 3 });
  direct = new pg.Pool({ connectionString: db.url, max: 2 });
}, 60_000);
afterAll(async () => {
  killAllChildren();
  await Promise.all(flows.map((flow) => flow.close({ timeout: 1000 }).catch(() => undefined)));
  await direct?.end();
  await bouncer?.stop();
  await db?.drop();
});

const advisoryLocks = async () =>
  (await direct.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, [db.name])).rows[0]!.n;

describe('without directUrl, through PgBouncer', () => {
  it('migrate() refuses with a message naming the pooler and `directUrl`, applies nothing and leaves no lock held', async () => {
    const flow = new DurableFlow({ databaseUrl: bouncer.url(db.name), logger: false });
    flows.push(flow);
    await expect(flow.migrate()).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: expect.stringMatching(/`databaseUrl` reaches Postgres through a connection pooler .*Pass `directUrl`/),
    });
    const { rows } = await direct.query(`SELECT to_regclass('durable_flow_migrations') AS t`);
    expect(rows[0].t).toBeNull();
    expect(await advisoryLocks()).toBe(0);
  });
});

describe('with directUrl: databaseUrl through PgBouncer in transaction mode, directUrl to Postgres', () => {
  let flow: DurableFlow;

  it('migrate() applies every migration over directUrl', async () => {
    flow = new DurableFlow({ databaseUrl: bouncer.url(db.name), directUrl: db.url, logger });
    flows.push(flow);
    const result = await flow.migrate();
    expect(result.applied).toEqual(loadMigrations().map((m) => m.name));
    expect(await advisoryLocks()).toBe(0);
    await direct.query('CREATE TABLE pgb_effects (run_id text NOT NULL, step text NOT NULL, pid int NOT NULL)');
  }, 60_000);

  it('two worker processes and this one: every run completes, each step once; waits are woken by a notify from this process', async () => {
    const userDb = new pg.Pool({ connectionString: bouncer.url(db.name), max: 2 });
    try {
      registerBouncerWorkflows(flow, userDb);
      const env = { DATABASE_URL: bouncer.url(db.name), DIRECT_URL: db.url };
      const workers = [spawnFixture('bouncer-worker.ts', env), spawnFixture('bouncer-worker.ts', env)];
      await Promise.all(workers.map((w) => w.waitFor(/^READY/, 30_000)));

      const handles = [
        ...(await Promise.all(Array.from({ length: 30 }, (_, i) => startOf('pgb_steps', { i })))),
        ...(await Promise.all(Array.from({ length: 10 }, (_, i) => startOf('pgb_sleep', { i })))),
      ];
      const waiting = await Promise.all(Array.from({ length: 10 }, (_, i) => startOf('pgb_wait', { key: `k${i}` })));
      // Every wait is recorded (and its run suspended) before its event is sent.
      await eventually(async () => {
        const { rows } = await direct.query<{ n: number }>(`SELECT count(*)::int AS n FROM durable_flow_workflow_waits WHERE status = 'pending'`);
        return rows[0]!.n === 10;
      }, 30_000);
      // Workers poll once a minute: each wait resumes soon only because its worker heard the wake-up (LISTEN, on directUrl).
      await Promise.all(waiting.map((_, i) => flow.notify('pgb_go', { key: `k${i}`, n: i })));
      const results = await Promise.all([...handles, ...waiting].map((runId) => flow.handle(runId).result({ timeout: '40 seconds' })));
      expect(results.slice(0, 30)).toEqual(Array(30).fill('done'));
      expect(results.slice(30, 40)).toEqual(Array(10).fill('rested'));
      expect(results.slice(40)).toEqual(Array.from({ length: 10 }, (_, i) => i));

      const { rows: effects } = await direct.query<{ run_id: string; step: string; n: number; pids: number[] }>(
        'SELECT run_id, step, count(*)::int AS n, array_agg(DISTINCT pid) AS pids FROM pgb_effects GROUP BY run_id, step',
      );
      expect(effects).toHaveLength(30 * 3 + 10 * 2 + 10);
      expect(effects.filter((e) => e.n !== 1)).toEqual([]);
      const ran = new Set(effects.flatMap((e) => e.pids));
      expect([...ran].sort()).toEqual(workers.map((w) => w.pid).sort());

      // Through PgBouncer: at most 3 server connections, shared by many more clients, none holding a prepared statement.
      const servers = (await bouncer.show('SERVERS')).filter((s) => s.database === db.name);
      expect(servers.length).toBeGreaterThan(0);
      expect(servers.length).toBeLessThanOrEqual(3);
      expect((await bouncer.show('CLIENTS')).filter((c) => c.database === db.name).length).toBeGreaterThan(3);
      const prepared = await Promise.all(
        [1, 2, 3].map(() => userDb.query<{ n: number }>('SELECT count(*)::int AS n, pg_sleep(0.05) FROM pg_prepared_statements').then((r) => r.rows[0]!.n)),
      );
      expect(prepared).toEqual([0, 0, 0]);
      // The LISTEN sessions (one per worker process, at least) are on Postgres itself, none a server connection of the bouncer.
      const bouncerPids = new Set(servers.map((s) => Number(s.remote_pid)));
      const { rows: listening } = await direct.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'durable-flow-listen'`,
        [db.name],
      );
      expect(listening.length).toBeGreaterThanOrEqual(2);
      expect(listening.filter((l) => bouncerPids.has(l.pid))).toEqual([]);

      for (const w of workers) w.child.kill('SIGTERM');
      await Promise.all(workers.map((w) => w.waitFor(/^STOPPED/, 20_000)));
      const logged = workers.flatMap((w) => w.output.filter((line) => line.startsWith('LOG ')));
      expect(logged.filter((line) => line.startsWith('LOG error') || SESSION_ERRORS.test(line))).toEqual([]);
      expect(problems.filter((line) => SESSION_ERRORS.test(line))).toEqual([]);
      expect(bouncer.log().split('\n').filter((line) => SESSION_ERRORS.test(line) || / (ERROR|WARNING) /.test(line))).toEqual([]);
    } finally {
      await userDb.end();
    }
  }, 120_000);

  it("the viewer's reads (getRun, timeline, the run list and a run page) go through PgBouncer", async () => {
    const app = express();
    app.use('/df', flow.router({ allowUnauthenticated: true }));
    const list = await request(app).get('/df/api/runs');
    expect(list.status).toBe(200);
    expect(list.body.counts.completed).toBe(50);
    const runId = (list.body.runs as { runId: string }[])[0]!.runId;
    const one = await request(app).get(`/df/api/runs/${runId}`);
    expect(one.status).toBe(200);
    expect(one.body.run.status).toBe('completed');
    expect((await request(app).get(`/df/runs/${runId}`)).text).toContain(runId);
    expect((await flow.getRun(runId))?.status).toBe('completed');
    expect((await flow.timeline(runId))?.steps.length).toBeGreaterThan(0);
    expect(problems.filter((line) => SESSION_ERRORS.test(line))).toEqual([]);
  }, 60_000);

  it('prune() holds its session lock on directUrl and leaves it released', async () => {
    const result = await flow.prune({ dryRun: false });
    expect(result.runs).toBe(0); // nothing is 30 days old
    expect(await advisoryLocks()).toBe(0);
  });

  it("the README's example runs through PgBouncer, and its pgbouncer.ini needs no setting the tests' does not have", async () => {
    process.env.DATABASE_URL = bouncer.url(db.name);
    process.env.DIRECT_DATABASE_URL = db.url;
    const { result } = (await import('../../examples/readme/pgbouncer.js')) as { result: unknown };
    expect(result).toBe('hello through PgBouncer');
    const readme = fs.readFileSync(path.join(import.meta.dirname, '../../README.md'), 'utf8');
    const ini = /### Behind PgBouncer[\s\S]*?```ini\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(ini).toMatch(/^pool_mode = transaction$/m);
    // durable-flow sends no start-up parameter PgBouncer refuses: neither file ignores any.
    for (const text of [ini, bouncer.ini]) expect(text).not.toMatch(/ignore_startup_parameters/);
    expect(bouncer.ini).toMatch(/^pool_mode = transaction$/m);
  });

  const startOf = (workflow: string, input: unknown): Promise<string> => flow.startRun(flow.definitions.get(workflow)!, input);
});

describe('without directUrl, through PgBouncer, once migrated', () => {
  it('a worker without directUrl through PgBouncer does not LISTEN there, and says why', async () => {
    const warnings: string[] = [];
    const lone = new DurableFlow({ databaseUrl: bouncer.url(db.name), logger: { warn: (m, d) => warnings.push(`${m} ${JSON.stringify(d)}`), error: () => undefined } });
    flows.push(lone);
    const worker = lone.worker({ pollInterval: '1 minute' });
    await worker.start();
    await eventually(() => warnings.some((w) => /LISTEN connection failed.*reaches Postgres through a connection pooler.*Pass `directUrl`/.test(w)), 10_000);
    expect(lone.listener.state).not.toBe('listening');
    await worker.stop();
  });
});
