/**
 * flow.check() (issue 15): the dry replay of every run in flight, on N runs of a 3-step workflow, each
 * with its first two steps stored (the third not yet run), in runs per second: once against the code
 * they ran (every run ok) and once against code that renamed the second step (every run diverges).
 * Figures are printed, never asserted.
 *
 *   npx tsx bench/check.ts                 # 10,000 runs
 *   npx tsx bench/check.ts --runs=50000
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import type { WorkflowContext } from '../lib/index.js';
import { createDb, round } from './anchors/common.js';

const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const N = runsArg ? Number(runsArg.slice('--runs='.length)) : 10_000;
if (!Number.isInteger(N) || N < 100) throw new Error('--runs: an integer of at least 100');

const threeSteps = (second: string) => async ({ step, input }: WorkflowContext<{ n: number }>) => {
  const a = await step.run('a', () => input.n + 1);
  const b = await step.run(second, () => a * 2);
  return step.run('c', () => b + 1);
};

const db = await createDb('df_check');
const flow = new DurableFlow({ databaseUrl: db.url, logger: false });
const changed = new DurableFlow({ databaseUrl: db.url, logger: false });
try {
  await flow.migrate();
  flow.workflow('three', threeSteps('b'));
  changed.workflow('three', threeSteps('b_renamed'));
  const fillStarted = performance.now();
  await flow.pool.query(
    `WITH r AS (
       INSERT INTO durable_flow_workflow_runs (run_id, workflow_name, status, input, wake_at, started_at)
       SELECT 'r-' || g, 'three', 'sleeping', jsonb_build_object('n', g), now() + interval '1 year', now()
       FROM generate_series(1, $1::int) g RETURNING id, (input->>'n')::int AS n)
     INSERT INTO durable_flow_workflow_steps (workflow_run_id, name, status, position, attempts, result, started_at, completed_at)
     SELECT r.id, s.name, 'succeeded', s.position, 1, to_jsonb(CASE s.position WHEN 0 THEN r.n + 1 ELSE (r.n + 1) * 2 END), now(), now()
     FROM r CROSS JOIN (VALUES ('a', 0), ('b', 1)) AS s(name, position)`,
    [N],
  );
  await flow.pool.query('VACUUM ANALYZE');
  const fillSeconds = (performance.now() - fillStarted) / 1000;

  const measure = async (target: DurableFlow) => {
    await target.check({ batchSize: 100 }); // warm-up (JIT, connections)
    const started = performance.now();
    const results = await target.check();
    return { results, seconds: (performance.now() - started) / 1000 };
  };
  const same = await measure(flow);
  const renamed = await measure(changed);
  const okCount = same.results.filter((r) => r.ok).length;
  const diverging = renamed.results.filter((r) => !r.ok && r.divergence?.stored === 'b' && r.divergence.requested === 'b_renamed').length;
  if (okCount !== N || diverging !== N) throw new Error(`Expected ${N} ok and ${N} diverging runs, got ${okCount} and ${diverging}`);

  const line = (name: string, value: string) => console.log(`| ${name} | ${value} |`);
  console.log(`\nflow.check(): ${N.toLocaleString('en')} runs in flight of a 3-step workflow (2 steps stored), filled in ${round(fillSeconds, 1)} s\n`);
  console.log('| figure | durable-flow |');
  console.log('|---|---:|');
  line('same code: runs checked (all ok)', `${N.toLocaleString('en')} in ${round(same.seconds, 2)} s`);
  line('same code: runs per second', Math.round(N / same.seconds).toLocaleString('en'));
  line('a step renamed: runs checked (all diverge)', `${N.toLocaleString('en')} in ${round(renamed.seconds, 2)} s`);
  line('a step renamed: runs per second', Math.round(N / renamed.seconds).toLocaleString('en'));
} finally {
  await changed.close();
  await flow.close();
  await db.drop();
}
