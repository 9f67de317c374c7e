/**
 * Schedule firing at scale: N schedules every minute (default 10,000), one worker process; for the slots
 * of the next two minute boundaries, the delay from each slot to its run's creation and to its run's
 * start (median, p99), and how long firing a whole minute's slots took. Figures are printed, never
 * asserted.
 *
 *   npx tsx bench/schedules.ts                 # 10,000 schedules (a few minutes)
 *   npx tsx bench/schedules.ts --schedules=1000
 */
import { DurableFlow } from '../lib/index.js';
import { createDb, median, percentile, round } from './anchors/common.js';

const arg = process.argv.find((a) => a.startsWith('--schedules='));
const N = arg ? Number(arg.slice('--schedules='.length)) : 10_000;
if (!Number.isInteger(N) || N < 1) throw new Error('--schedules: a positive integer');
const MINUTES = 1;

const db = await createDb('df_sched');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20 });
try {
  await flow.migrate();
  flow.workflow('tick', async ({ step }: { step: any }) => step.run('work', () => 1));
  for (let i = 0; i < N; i++) await flow.schedules.create(`s${i}`, { workflow: 'tick', cron: '* * * * *', timezone: 'UTC' });
  const worker = flow.worker({ concurrency: 50 });
  await worker.start();
  const { rows: nowRows } = await flow.pool.query<{ boundary: Date }>(`SELECT date_trunc('minute', now()) + interval '1 minute' AS boundary`);
  const first = nowRows[0]!.boundary;
  const last = new Date(first.getTime() + (MINUTES - 1) * 60_000);
  // Wait until every slot of the measured minutes has a run that started (at most 4 minutes past the last slot, on the database clock).
  for (;;) {
    const { rows } = await flow.pool.query<{ n: number; late: boolean }>(
      `SELECT count(*)::int AS n, now() > $2::timestamptz + interval '4 minutes' AS late
       FROM durable_flow_workflow_runs WHERE scheduled_for BETWEEN $1 AND $2 AND started_at IS NOT NULL`,
      [first, last],
    );
    if (rows[0]!.n >= N * MINUTES || rows[0]!.late) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await worker.stop();
  const { rows } = await flow.pool.query<{ created_ms: number; started_ms: number; slot: Date }>(
    `SELECT extract(epoch FROM created_at - scheduled_for) * 1000 AS created_ms, extract(epoch FROM started_at - scheduled_for) * 1000 AS started_ms, scheduled_for AS slot
     FROM durable_flow_workflow_runs WHERE scheduled_for BETWEEN $1 AND $2`,
    [first, last],
  );
  const { rows: dupes } = await flow.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT scheduled_for, idempotency_key FROM durable_flow_workflow_runs WHERE scheduled_for IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x`,
  );
  const created = rows.map((r) => Number(r.created_ms));
  const started = rows.map((r) => Number(r.started_ms));
  const line = (name: string, value: string) => console.log(`| ${name} | ${value} |`);
  console.log(`\nSchedules: ${N.toLocaleString('en')} schedules firing every minute, one worker process (concurrency 50), ${MINUTES} minutes measured\n`);
  console.log('| figure | durable-flow |');
  console.log('|---|---:|');
  line('slots that started a run (of the slots measured)', `${rows.length.toLocaleString('en')} of ${(N * MINUTES).toLocaleString('en')}`);
  line('slot → run created, median (ms)', String(round(median(created))));
  line('slot → run created, p99 (ms)', String(round(percentile(created, 99))));
  line('slot → run created, max (ms): a whole minute fired', String(round(Math.max(...created))));
  line('slot → run started, median (ms)', String(round(median(started))));
  line('slot → run started, p99 (ms)', String(round(percentile(started, 99))));
  line('slots with more than one run', String(dupes[0]!.n));
} finally {
  await flow.close();
  await db.drop();
}
