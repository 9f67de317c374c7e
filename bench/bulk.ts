/**
 * Bulk operations (issue 14): a bulk cancel of N runs and a bulk retry of N failed runs (each failed
 * at a step), in runs per second from flow.bulk() to the operation completed, and the start → result
 * latency of an unrelated trivial workflow, one at a time, while each bulk works against without
 * (same process, same database, one run). Figures are printed, never asserted.
 *
 *   npx tsx bench/bulk.ts                  # 100,000 runs each
 *   npx tsx bench/bulk.ts --runs=20000
 *   npx tsx bench/bulk.ts --pause=0        # pause after a batch: this share of its time (default 1)
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import { setBulkTiming } from '../lib/operator/bulk-runner.js';
import { createDb, median, percentile, round } from './anchors/common.js';

const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const N = runsArg ? Number(runsArg.slice('--runs='.length)) : 100_000;
if (!Number.isInteger(N) || N < 1000) throw new Error('--runs: an integer of at least 1000');
const SAMPLES = 300;
const pauseArg = process.argv.find((a) => a.startsWith('--pause='));
if (pauseArg) setBulkTiming({ pauseRatio: Number(pauseArg.slice('--pause='.length)) });

const db = await createDb('df_bulk');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20 });
try {
  await flow.migrate();
  const trivial = flow.workflow('trivial', async ({ step, input }: { step: any; input: { n: number } }) =>
    step.run('a', () => input.n + 1),
  );
  // N runs waiting on a sleep (what a bulk cancel finds after a bad deploy), and N failed runs, each
  // failed at its step 'charge' with a coded error: one statement per 50,000 runs.
  const fillStarted = performance.now();
  for (let from = 1; from <= N; from += 50_000) {
    const to = Math.min(N, from + 49_999);
    await flow.pool.query(
      `INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, wake_at, started_at)
       SELECT 'sleep-' || g, 'sleeper', 'sleeping', jsonb_build_object('n', g), now() + interval '1 year', now() FROM generate_series($1::int, $2::int) g`,
      [from, to],
    );
    await flow.pool.query(
      `WITH r AS (
         INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, error, started_at, failed_at)
         SELECT 'failed-' || g, 'payer', 'failed', jsonb_build_object('n', g),
           '{"class": "Error", "message": "card declined", "code": "E_CARD", "step": "charge"}', now(), now()
         FROM generate_series($1::int, $2::int) g RETURNING id)
       INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, position, attempts, error, started_at, completed_at)
       SELECT r.id, 'charge', 'failed', 0, 1, '{"class": "Error", "message": "card declined", "code": "E_CARD"}', now(), now() FROM r`,
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
      await (await trivial.start({ n: i })).result();
      latencies.push(performance.now() - t);
    }
    return latencies;
  };
  await sample(50); // warm-up
  const quiet = await sample(SAMPLES);

  // Each bulk from a second flow (an API process would do the same), sampling latencies meanwhile.
  const operator = new DurableFlow({ databaseUrl: db.url, logger: false });
  const measure = async (...[action, filter]: Parameters<DurableFlow['bulk']>) => {
    const started = performance.now();
    const { operationId, total } = await operator.bulk(action, filter, { actor: 'bench' });
    let seconds = 0;
    const watching = (async () => {
      for (;;) {
        const op = await operator.operation(operationId);
        if (op.status !== 'running') {
          seconds = (performance.now() - started) / 1000;
          return op;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const during: number[] = [];
    while (seconds === 0) during.push(...(await sample(10)));
    const op = await watching;
    if (op.status !== 'completed' || op.done !== total)
      throw new Error(`The bulk ${action} ended ${op.status} with ${op.done}/${total}`);
    return { total, seconds, during };
  };
  const cancel = await measure('cancel', { workflow: 'sleeper' });
  const retry = await measure('retry', { workflow: 'payer', errorCode: 'E_CARD' });
  // The retried runs are due now, and this worker does not run 'payer': its claims pass over them.
  const afterRetry = await sample(SAMPLES);
  await operator.close();
  await worker.stop();
  const [check] = (
    await flow.pool.query(
      `SELECT count(*) FILTER (WHERE workflow_name = 'sleeper' AND status = 'cancelled')::int AS cancelled,
              count(*) FILTER (WHERE workflow_name = 'payer' AND status = 'ready')::int AS retried
       FROM durable_flow_workflow_runs`,
    )
  ).rows;

  const line = (name: string, value: string) => console.log(`| ${name} | ${value} |`);
  const ratio = (during: number[], f: (xs: number[]) => number) => `${round(f(during))} (${round(f(during) / f(quiet))}×)`;
  const p99 = (xs: number[]) => percentile(xs, 99);
  console.log(
    `\nBulk operations: ${N.toLocaleString('en')} sleeping runs and ${N.toLocaleString('en')} failed runs, filled in ${round(fillSeconds, 1)} s\n`,
  );
  console.log('| figure | durable-flow |');
  console.log('|---|---:|');
  line(
    'bulk cancel: runs',
    `${cancel.total.toLocaleString('en')} in ${round(cancel.seconds, 1)} s (${check.cancelled.toLocaleString('en')} cancelled)`,
  );
  line('bulk cancel: runs per second', Math.round(cancel.total / cancel.seconds).toLocaleString('en'));
  line(
    'bulk retry: runs',
    `${retry.total.toLocaleString('en')} in ${round(retry.seconds, 1)} s (${check.retried.toLocaleString('en')} back in the queue)`,
  );
  line('bulk retry: runs per second', Math.round(retry.total / retry.seconds).toLocaleString('en'));
  line('start → result median, no bulk (ms)', String(round(median(quiet))));
  line('start → result median, during the bulk cancel (ms)', ratio(cancel.during, median));
  line('start → result median, during the bulk retry (ms)', ratio(retry.during, median));
  line('start → result median, after the bulk retry (ms)', ratio(afterRetry, median));
  line('start → result p99, no bulk (ms)', String(round(p99(quiet))));
  line('start → result p99, during the bulk cancel (ms)', ratio(cancel.during, p99));
  line('start → result p99, during the bulk retry (ms)', ratio(retry.during, p99));
  line('start → result p99, after the bulk retry (ms)', ratio(afterRetry, p99));
  console.log(`\n(${cancel.during.length} + ${retry.during.length} samples during the bulks, ${quiet.length} without)`);
} finally {
  await flow.close();
  await db.drop();
}
