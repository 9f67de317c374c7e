/**
 * Retention under load: prune N finished runs (3 steps and a log each) and measure rows per second, and
 * the start → result latency of one workflow at a time while pruning against without (same process,
 * same database, one run). Figures are printed, never asserted.
 *
 *   npx tsx bench/prune.ts                 # 1,000,000 runs (several minutes to fill and prune)
 *   npx tsx bench/prune.ts --runs=100000
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import { createDb, median, percentile, round } from './anchors/common.js';

const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const N = runsArg ? Number(runsArg.slice('--runs='.length)) : 1_000_000;
if (!Number.isInteger(N) || N < 1000) throw new Error('--runs: an integer of at least 1000');
const SAMPLES = 300;

const db = await createDb('df_prune');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20 });
try {
  await flow.migrate();
  const three = flow.workflow('three', async ({ step, input }: { step: any; input: { n: number } }) => {
    const a = await step.run('a', () => input.n + 1);
    const b = await step.run('b', () => a + 1);
    return step.run('c', () => b + 1);
  });
  // Old finished runs, filled in chunks (one statement each: runs, their 3 steps and a log).
  const fillStarted = performance.now();
  for (let from = 1; from <= N; from += 50_000) {
    const to = Math.min(N, from + 49_999);
    await flow.pool.query(
      `WITH r AS (
         INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, output, created_at, started_at, completed_at)
         SELECT 'old-' || g, 'old', 'completed', '{"n":1}', '4', now() - interval '60 days', now() - interval '60 days', now() - interval '59 days'
         FROM generate_series($1::int, $2::int) g RETURNING id),
       s AS (INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, position, result, started_at, completed_at)
             SELECT r.id, 's' || i, 'succeeded', i, to_jsonb(i), now() - interval '60 days', now() - interval '60 days'
             FROM r CROSS JOIN generate_series(1, 3) i)
       INSERT INTO durable_flow_workflow_logs (workflow_run_id, key, level, message) SELECT r.id, '@#1', 'info', 'done' FROM r`,
      [from, to],
    );
  }
  await flow.pool.query('VACUUM ANALYZE');
  const fillSeconds = (performance.now() - fillStarted) / 1000;

  const worker = flow.worker({ concurrency: 20 });
  await worker.start();
  const sample = async (count: number): Promise<number[]> => {
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      await (await three.start({ n: i })).result();
      latencies.push(performance.now() - t);
    }
    return latencies;
  };
  await sample(50); // warm-up
  const quiet = await sample(SAMPLES);

  // The prune, from a second flow (another process would do the same), while latencies are sampled.
  const pruner = new DurableFlow({ databaseUrl: db.url, logger: false });
  const pruneStarted = performance.now();
  let pruneSeconds = 0;
  let pruned = 0;
  const pruning = pruner.prune().then((result) => {
    pruneSeconds = (performance.now() - pruneStarted) / 1000;
    pruned = result.runs;
  });
  const during: number[] = [];
  while (pruneSeconds === 0) during.push(...(await sample(20)));
  await pruning;
  await pruner.close();
  await worker.stop();

  const rows = pruned * 5; // a run, its 3 steps and its log
  const line = (name: string, value: string) => console.log(`| ${name} | ${value} |`);
  console.log(`\nRetention: ${N.toLocaleString('en')} finished runs (3 steps and a log each), filled in ${round(fillSeconds, 1)} s\n`);
  console.log('| figure | durable-flow |');
  console.log('|---|---:|');
  line('runs pruned', pruned.toLocaleString('en'));
  line('prune time (s)', String(round(pruneSeconds, 1)));
  line('runs pruned per second', Math.round(pruned / pruneSeconds).toLocaleString('en'));
  line('rows deleted per second (run + 3 steps + log)', Math.round(rows / pruneSeconds).toLocaleString('en'));
  line('start → result median, not pruning (ms)', String(round(median(quiet))));
  line('start → result median, while pruning (ms)', `${round(median(during))} (${round(median(during) / median(quiet))}×)`);
  line('start → result p99, not pruning (ms)', String(round(percentile(quiet, 99))));
  line('start → result p99, while pruning (ms)', `${round(percentile(during, 99))} (${round(percentile(during, 99) / percentile(quiet, 99))}×)`);
  console.log(`\n(${during.length} samples while pruning, ${quiet.length} without; goal: ≤ 1.2× while pruning)`);
} finally {
  await flow.close();
  await db.drop();
}
