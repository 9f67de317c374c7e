/**
 * durable-flow's side of the benchmark. Every figure uses a fresh database; see bench/README.md.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { DurableFlow } from '../lib/index.js';
import { createDb, measureSequential, percentile } from './anchors/common.js';
import type { AnchorResult } from './anchors/common.js';
import { defineBenchWorkflows, resumedAt } from './workflows.js';

const SYSTEM = 'durable-flow';
const VERSION = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(path.join(import.meta.dirname, '../package.json'), 'utf8'))).version as string;

export type OurFigure =
  | 'throughput_1' | 'throughput_2' | 'throughput_4'
  | 'latency_median' | 'latency_p99'
  | 'event_resume_median' | 'event_resume_p99'
  | 'commits_per_wf' | 'wal_flushes_per_wf' | 'wal_records_per_wf' | 'statements_per_wf'
  | `latency_backlog_${number}`;

export interface OurResult {
  system: string;
  version: string;
  figure: OurFigure;
  value: number;
  unit: string;
  notes?: string;
}

function result(figure: OurFigure, value: number, unit: string, notes?: string): OurResult {
  return { system: SYSTEM, version: VERSION, figure, value, unit, ...(notes ? { notes } : {}) };
}

async function openFlow(url: string, concurrency = 20) {
  const flow = new DurableFlow({ databaseUrl: url, logger: false, poolSize: 20 });
  await flow.migrate();
  const workflows = defineBenchWorkflows(flow);
  const worker = flow.worker({ concurrency, pollInterval: '1 second' });
  await worker.start();
  return { flow, worker, ...workflows };
}

function startWorkers(url: string, count: number): Promise<ChildProcess[]> {
  return Promise.all(
    Array.from({ length: count }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'worker-process.ts')], {
        env: { ...process.env, DATABASE_URL: url, CONCURRENCY: '20' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      return new Promise<ChildProcess>((resolve, reject) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('READY')) resolve(child);
        });
        child.on('exit', (code) => reject(new Error(`worker process exited (${code})`)));
      });
    }),
  );
}

/** Throughput: `n` 3-step workflows started at once, executed by `processes` worker processes. */
export async function throughput(n: number, processes: number): Promise<number> {
  const db = await createDb('df_tp');
  const children: ChildProcess[] = [];
  try {
    const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 10 });
    await flow.migrate();
    const { three } = defineBenchWorkflows(flow);
    children.push(...(await startWorkers(db.url, processes)));
    await Promise.all(Array.from({ length: 100 }, (_, i) => three.start({ n: i }).then((r) => r.result()))); // warm-up
    const t0 = performance.now();
    const runs = await Promise.all(Array.from({ length: n }, (_, i) => three.start({ n: i })));
    await Promise.all(runs.map((run) => run.result()));
    const rate = n / ((performance.now() - t0) / 1000);
    await flow.close();
    return rate;
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))));
    await db.drop();
  }
}

/**
 * Sequential start → result latencies (one worker in this process) and the database cost per
 * workflow, measured like every anchor's (common.ts measureSequential: measured phases minus idle
 * control phases of the same shape), plus the SQL statements the client sent per workflow.
 */
async function latencyAndCost(seq: number): Promise<{ latencies: number[]; cost: AnchorResult[]; statements: number }> {
  const db = await createDb('df_lat');
  // The library's own `pg` (the repository's node_modules), not bench/node_modules' copy: patching that
  // one counted nothing (the figure read 0.00).
  const libraryPg = createRequire(path.resolve(import.meta.dirname, '..', 'package.json'))('pg') as typeof pg;
  const proto = libraryPg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  let statements = 0;
  let counting = false;
  proto.query = function (this: unknown, ...args: unknown[]) {
    if (counting) statements++;
    return original.apply(this, args);
  };
  let phase: Awaited<ReturnType<typeof openFlow>> | undefined;
  let measured = 0;
  try {
    const sequential = await measureSequential(
      {
        start: async () => {
          phase = await openFlow(db.url);
          for (let i = 0; i < 20; i++) await (await phase.three.start({ n: i })).result();
        },
        run: async (count) => {
          const latencies: number[] = [];
          counting = true;
          for (let i = 0; i < count; i++) {
            const t = performance.now();
            const out = await (await phase!.three.start({ n: i })).result();
            latencies.push(performance.now() - t);
            if (out !== i + 3) throw new Error(`durable-flow bench: wrong result ${String(out)}`);
          }
          counting = false;
          measured += count;
          return latencies;
        },
        stop: async () => {
          await phase?.flow.close();
          phase = undefined;
        },
      },
      { system: SYSTEM, version: VERSION, dbName: db.name, seq, unit: 'wf' },
    );
    return { latencies: sequential.latencies, cost: sequential.results, statements: statements / measured };
  } finally {
    proto.query = original;
    await phase?.flow.close();
    await db.drop();
  }
}

/** Event → resume: notify until the waiting run's next step starts (one worker in this process). */
async function eventResume(events: number): Promise<number[]> {
  const db = await createDb('df_evt');
  const { flow, waiter } = await openFlow(db.url);
  try {
    const samples: number[] = [];
    for (let k = 0; k < events + 10; k++) {
      const run = await waiter.start({ k });
      while ((await flow.getRun(run.runId))!.status !== 'waiting') await new Promise((resolve) => setTimeout(resolve, 2));
      const sent = performance.now();
      await flow.notify('go', { k });
      await run.result();
      if (k >= 10) samples.push(resumedAt.get(k)! - sent);
    }
    return samples;
  } finally {
    await flow.close();
    await db.drop();
  }
}

/** Sequential latency with `idle` sleeping runs and `idle` waiting runs already in the tables. */
async function latencyWithBacklog(idle: number, seq: number): Promise<number> {
  const db = await createDb('df_backlog');
  try {
    const setup = new DurableFlow({ databaseUrl: db.url, logger: false });
    await setup.migrate();
    if (idle > 0) {
      const t = setup.tables;
      await setup.pool.query(
        `INSERT INTO ${t.runs} (run_id, workflow_name, status, input, wake_at, started_at)
         SELECT 'sleeper-' || g, 'three', 'sleeping', '{"n":0}', now() + interval '30 days', now() FROM generate_series(1, $1) g`,
        [idle],
      );
      await setup.pool.query(
        `INSERT INTO ${t.runs} (run_id, workflow_name, status, input, wake_at, started_at)
         SELECT 'waiter-' || g, 'waiter', 'waiting', '{"k":-1}', NULL, now() FROM generate_series(1, $1) g`,
        [idle],
      );
      await setup.pool.query(
        `INSERT INTO ${t.steps} (workflow_run_id, name, kind, status) SELECT id, 'go', 'wait', 'waiting' FROM ${t.runs} WHERE run_id LIKE 'waiter-%'`,
      );
      await setup.pool.query(
        `INSERT INTO ${t.waits} (workflow_run_id, workflow_step_id, event_name, match)
         SELECT s.workflow_run_id, s.id, 'go', jsonb_build_object('k', s.workflow_run_id) FROM ${t.steps} s`,
      );
      await setup.pool.query(`VACUUM ANALYZE ${t.runs}, ${t.steps}, ${t.waits}`);
    }
    await setup.close();
    const phase = await openFlow(db.url);
    await Promise.all(Array.from({ length: 50 }, (_, i) => phase.three.start({ n: i }).then((r) => r.result())));
    const latencies: number[] = [];
    for (let i = 0; i < seq; i++) {
      const start = performance.now();
      await (await phase.three.start({ n: i })).result();
      latencies.push(performance.now() - start);
    }
    await phase.flow.close();
    return percentile(latencies, 50);
  } finally {
    await db.drop();
  }
}

export interface OurOptions {
  n: number;
  seq: number;
  events: number;
  processes: number[];
  backlogs: number[];
}

export async function runOurs(options: OurOptions, log: (line: string) => void = () => undefined): Promise<OurResult[]> {
  const results: OurResult[] = [];
  for (const processes of options.processes) {
    log(`durable-flow: throughput with ${processes} worker process(es)…`);
    const rate = await throughput(options.n, processes);
    results.push(result(`throughput_${processes}` as OurFigure, rate, 'wf/s', `${options.n} started at once; ${processes} worker process(es) × concurrency 20`));
  }
  log('durable-flow: sequential latency and database cost…');
  const cost = await latencyAndCost(options.seq);
  results.push(result('latency_median', percentile(cost.latencies, 50), 'ms'));
  results.push(result('latency_p99', percentile(cost.latencies, 99), 'ms'));
  for (const figure of cost.cost) results.push({ ...figure, system: SYSTEM, version: VERSION } as OurResult);
  results.push(result('statements_per_wf', cost.statements, 'statements', 'client-side: SQL statements sent per workflow'));
  log('durable-flow: event → resume…');
  const resume = await eventResume(options.events);
  results.push(result('event_resume_median', percentile(resume, 50), 'ms'));
  results.push(result('event_resume_p99', percentile(resume, 99), 'ms'));
  for (const idle of options.backlogs) {
    log(`durable-flow: latency with ${idle} sleeping + ${idle} waiting runs in the tables…`);
    const median = await latencyWithBacklog(idle, Math.min(options.seq, 100));
    results.push(result(`latency_backlog_${idle}`, median, 'ms', `${idle} sleeping and ${idle} waiting runs present`));
  }
  return results;
}
