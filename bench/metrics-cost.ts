/**
 * What the metrics triggers (migration 016, lib/db/functions/metrics.sql) cost the hot path: the same
 * flow, database and process with the five triggers enabled and disabled, alternating in rounds so a
 * noisy machine affects both sides alike. Per round: a burst of 3-step workflows started at once
 * (throughput) and a series one at a time (start → result), the WAL bytes per workflow (pg_current_wal_lsn
 * around the series: the whole server's, so the least round is given) and the metrics rows written per
 * workflow (exact). Printed, never asserted.
 *
 *   npx tsx bench/metrics-cost.ts [--rounds=6] [--burst=300] [--seq=60]
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import { createDb, median, round } from './anchors/common.js';

const arg = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const ROUNDS = arg('rounds', 6);
const BURST = arg('burst', 300);
const SEQ = arg('seq', 60);
const TRIGGERS = [
  ['durable_flow_workflow_runs', 'durable_flow_runs_metrics_insert'],
  ['durable_flow_workflow_runs', 'durable_flow_runs_metrics_update'],
  ['durable_flow_workflow_runs', 'durable_flow_runs_metrics_delete'],
  ['durable_flow_workflow_steps', 'durable_flow_steps_metrics_insert'],
  ['durable_flow_workflow_steps', 'durable_flow_steps_metrics_end'],
];

const db = await createDb('df_mcost');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20 });
try {
  await flow.migrate();
  const three = flow.workflow('three', async ({ step, input }: { step: any; input: { n: number } }) => {
    const a = await step.run('a', () => input.n + 1);
    const b = await step.run('b', () => a + 1);
    return step.run('c', () => b + 1);
  });
  const worker = flow.worker({ concurrency: 20 });
  await worker.start();
  const set = async (on: boolean) => {
    for (const [table, trigger] of TRIGGERS) await flow.pool.query(`ALTER TABLE ${table} ${on ? 'ENABLE' : 'DISABLE'} TRIGGER ${trigger}`);
  };
  const figures = {
    on: { wfs: [] as number[], latency: [] as number[], wal: [] as number[], rows: [] as number[] },
    off: { wfs: [] as number[], latency: [] as number[], wal: [] as number[], rows: [] as number[] },
  };
  // Row writes (inserts + updates) to the metrics tables while `fn` runs: this database's own counters,
  // so the figure is exact whatever else the server does (statistics reach the view within a second or so).
  const writes = async () =>
    Number((await flow.pool.query<{ n: string }>(
      `SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::text AS n FROM pg_stat_user_tables
       WHERE relname IN ('durable_flow_run_counts', 'durable_flow_metric_minutes', 'durable_flow_metric_samples')`,
    )).rows[0]!.n);
  const settle = () => new Promise((resolve) => setTimeout(resolve, 1500));
  const rowWrites = async (fn: () => Promise<void>) => {
    await settle();
    const before = await writes();
    await fn();
    await settle();
    return [(await writes()) - before];
  };
  // A warm-up of each.
  for (const on of [true, false]) {
    await set(on);
    await Promise.all(Array.from({ length: 50 }, (_, n) => three.start({ n }).then((r) => r.result())));
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
      await set(on);
      const side = on ? figures.on : figures.off;
      const started = performance.now();
      const handles = await Promise.all(Array.from({ length: BURST }, (_, n) => three.start({ n })));
      await Promise.all(handles.map((h) => h.result()));
      side.wfs.push(BURST / ((performance.now() - started) / 1000));
      const lsn = async () => (await flow.pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
      const before = await lsn();
      for (let i = 0; i < SEQ; i++) {
        const t = performance.now();
        await (await three.start({ n: i })).result();
        side.latency.push(performance.now() - t);
      }
      const { rows } = await flow.pool.query<{ b: string }>('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text AS b', [await lsn(), before]);
      side.wal.push(Number(rows[0]!.b) / SEQ);
      if (on) side.rows.push(...(await rowWrites(async () => {
        for (let i = 0; i < SEQ; i++) await (await three.start({ n: i })).result();
      })).map((n) => n / SEQ));
    }
  }
  await worker.stop();
  const line = (label: string, on: number[], off: number[], digits = 2) =>
    `| ${label} | ${round(median(off), digits)} | ${round(median(on), digits)} | ${round(median(on) / median(off), 2)}× |`;
  process.stdout.write(
    [
      `metrics triggers, ${ROUNDS} rounds of each (medians of the rounds; latency: median of every run)`,
      '| figure | triggers off | triggers on | on / off |',
      '|---|---:|---:|---:|',
      line(`3-step workflows/s, ${BURST} started at once`, figures.on.wfs, figures.off.wfs, 0),
      line('start → result, one at a time (ms)', figures.on.latency, figures.off.latency),
      // Other databases' WAL only ever adds to a round's figure: the least round is the closest to this one's own.
      `| WAL bytes per sequential workflow (least round: the server's other WAL only adds) | ${round(Math.min(...figures.off.wal), 0)} | ${round(Math.min(...figures.on.wal), 0)} | ${round(Math.min(...figures.on.wal) / Math.min(...figures.off.wal), 2)}× |`,
      `| metrics rows written (inserted or updated) per sequential 3-step workflow, triggers on | | ${round(median(figures.on.rows), 2)} | |`,
      '',
    ].join('\n'),
  );
} finally {
  await flow.close();
  await db.drop();
}
