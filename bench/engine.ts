/**
 * Engine micro-benchmark: throughput of 3-step workflows, start → result latency, event → resume
 * latency, and Postgres transactions and WAL flushes per workflow. Run: `npx tsx bench/engine.ts`.
 * Figures are printed, never asserted. Uses DATABASE_URL's server (default: local postgres).
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { DurableFlow } from '../lib/index.js';
import type { WorkflowContext } from '../lib/index.js';

const ADMIN = process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = Number(process.env.BENCH_N ?? 2000);
const SEQ = Number(process.env.BENCH_SEQ ?? 200);

function url(db: string): string {
  const u = new URL(ADMIN);
  u.pathname = `/${db}`;
  return u.toString();
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

interface Stats {
  commits: number;
  walSyncs: number;
  walRecords: number;
}

async function stats(pool: pg.Pool, db: string): Promise<Stats> {
  // Backends report their counters when idle; give them time, then read a fresh snapshot.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  await pool.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await pool.query(
    `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1)::float8 AS commits,
            (SELECT wal_sync FROM pg_stat_wal)::float8 AS wal_syncs,
            (SELECT wal_records FROM pg_stat_wal)::float8 AS wal_records`,
    [db],
  );
  return { commits: rows[0].commits, walSyncs: rows[0].wal_syncs, walRecords: rows[0].wal_records };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function define(flow: DurableFlow) {
  const three = flow.workflow('three', async ({ step, input }: WorkflowContext<{ n: number }>) => {
    const a = await step.run('a', () => input.n + 1);
    const b = await step.run('b', () => a + 1);
    const c = await step.run('c', () => b + 1);
    return c;
  });
  const resumed = { at: 0 };
  const waiter = flow.workflow('waiter', async ({ step, input }: WorkflowContext<{ k: number }>) => {
    await step.run('before', () => 1);
    await step.waitForEvent('go', { match: { k: input.k } });
    await step.run('after', () => {
      resumed.at = performance.now();
    });
  });
  return { three, waiter, resumed };
}

async function main(): Promise<void> {
  const db = `df_bench_${Date.now()}`;
  await admin(`CREATE DATABASE ${db}`);
  const statsPool = new pg.Pool({ connectionString: url(db), max: 1 });
  const open = async () => {
    const flow = new DurableFlow({ databaseUrl: url(db), logger: false, poolSize: 20 });
    const workflows = define(flow);
    const worker = flow.worker({ concurrency: Number(process.env.BENCH_CONCURRENCY ?? 20), pollInterval: '1 second' });
    await worker.start();
    return { flow, worker, ...workflows };
  };
  const row = (label: string, value: string) => console.log(`${label.padEnd(52)} ${value}`);
  try {
    const setup = new DurableFlow({ databaseUrl: url(db), logger: false });
    await setup.migrate();
    await setup.close();

    // 1. An idle worker's own background cost (its polls), measured with closed connections so
    //    every backend has reported its counters.
    const idleStart = await stats(statsPool, db);
    let t = performance.now();
    let phase = await open();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await phase.flow.close();
    const idleEnd = await stats(statsPool, db);
    const idle = (idleEnd.commits - idleStart.commits - 1) / ((performance.now() - t) / 1000);

    // 2. Sequential start → result latency and database cost per workflow.
    phase = await open();
    await Promise.all(Array.from({ length: 50 }, (_, n) => phase.three.start({ n }).then((r) => r.result())));
    const before = await stats(statsPool, db);
    t = performance.now();
    const latencies: number[] = [];
    for (let i = 0; i < SEQ; i++) {
      const t0 = performance.now();
      const run = await phase.three.start({ n: i });
      await run.result();
      latencies.push(performance.now() - t0);
    }
    await phase.flow.close();
    const after = await stats(statsPool, db);
    const seconds = (performance.now() - t) / 1000;
    const perWf = (x: number, y: number) => (y - x - 1 - idle * seconds) / SEQ;

    // 3. Throughput: N started at once.
    phase = await open();
    const t0 = performance.now();
    const runs = await Promise.all(Array.from({ length: N }, (_, n) => phase.three.start({ n })));
    await Promise.all(runs.map((r) => r.result()));
    const throughput = N / ((performance.now() - t0) / 1000);

    // 4. Event → resume: notify until the waiting run's next step starts.
    const resume: number[] = [];
    for (let k = 0; k < 100; k++) {
      const run = await phase.waiter.start({ k });
      for (;;) {
        const info = await phase.flow.getRun(run.runId);
        if (info!.status === 'waiting') break;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      const sent = performance.now();
      await phase.flow.notify('go', { k });
      await run.result();
      resume.push(phase.resumed.at - sent);
    }
    await phase.flow.close();

    console.log(`\ndurable-flow engine bench (${N} at once, ${SEQ} sequential, worker concurrency ${phase.worker.concurrency})`);
    row('3-step workflows/s, all started at once', throughput.toFixed(0));
    row('start → result latency median / p99 (ms)', `${percentile(latencies, 50).toFixed(2)} / ${percentile(latencies, 99).toFixed(2)}`);
    row('event → resume latency median / p99 (ms)', `${percentile(resume, 50).toFixed(2)} / ${percentile(resume, 99).toFixed(2)}`);
    row('transactions per 3-step workflow (sequential)', perWf(before.commits, after.commits).toFixed(2));
    row('WAL flushes per 3-step workflow (sequential)', ((after.walSyncs - before.walSyncs) / SEQ).toFixed(2));
    row('WAL records per 3-step workflow (sequential)', ((after.walRecords - before.walRecords) / SEQ).toFixed(1));
    row('idle worker background commits/s', idle.toFixed(2));
  } finally {
    await statsPool.end();
    await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
}

await main();
