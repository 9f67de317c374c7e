/**
 * `npx tsx bench/statements.ts`: what sending the hot path's statements unnamed costs, on a direct
 * connection. A flow with `directUrl` (other than `databaseUrl`) takes `databaseUrl` to be PgBouncer in
 * transaction mode and sends every statement unnamed (parsed and planned on each execution); without
 * it, statements are prepared by name once per connection. Both flows here reach the same Postgres
 * directly (`directUrl` differs only by a no-op parameter), in rounds that alternate, so that load from
 * elsewhere on the machine falls on both alike. Prints the medians of each.
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import type { DurableFlowOptions } from '../lib/index.js';
import { createDb, percentile } from './anchors/common.js';

const ROUNDS = 6;
const SEQUENTIAL = 60;
const AT_ONCE = 300;

const db = await createDb('bench_statements');
const modes: Record<'named' | 'unnamed', DurableFlowOptions> = {
  named: { databaseUrl: db.url },
  unnamed: { databaseUrl: db.url, directUrl: `${db.url}?sslmode=disable` },
};
const latency = { named: [] as number[], unnamed: [] as number[] };
const throughput = { named: [] as number[], unnamed: [] as number[] };
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['named', 'unnamed'] as const) {
      const flow = new DurableFlow({ ...modes[mode], logger: false, poolSize: 10, retention: false });
      if (round === 0 && mode === 'named') await flow.migrate();
      const workflow = flow.workflow('statements', async ({ step }) => {
        for (const name of ['a', 'b', 'c']) await step.run(name, () => name);
        return 'ok';
      });
      const worker = flow.worker({ concurrency: 10 });
      await worker.start();
      for (let i = 0; i < SEQUENTIAL; i++) {
        const start = performance.now();
        await (await workflow.start({})).result();
        latency[mode].push(performance.now() - start);
      }
      const start = performance.now();
      const handles = await Promise.all(Array.from({ length: AT_ONCE }, () => workflow.start({})));
      await Promise.all(handles.map((handle) => handle.result()));
      throughput[mode].push(AT_ONCE / ((performance.now() - start) / 1000));
      await flow.close();
    }
  }
} finally {
  await db.drop();
}
for (const mode of ['named', 'unnamed'] as const) {
  const rounds = throughput[mode].map((x) => x.toFixed(0)).join(', ');
  console.log(`${mode}: start → result median ${percentile(latency[mode], 50).toFixed(2)} ms; 3-step workflows/s median ${percentile(throughput[mode], 50).toFixed(0)} (rounds: ${rounds})`);
}
