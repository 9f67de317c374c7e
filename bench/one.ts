/**
 * Runs the benchmark of one system in this process and prints its results as one JSON line
 * (`RESULTS [...]`). bench/run.ts starts one of these per system, so that no system's pools,
 * timers, JIT state or global singletons (DBOS is one) leak into another's figures.
 *
 *   tsx bench/one.ts <durable-flow|dbos|graphile-worker|pg-boss|pgbench> '<options JSON>'
 */
import type { BenchOptions } from './options.js';

const [system, json] = process.argv.slice(2);
const options = JSON.parse(json ?? '{}') as BenchOptions;
const log = (line: string) => process.stderr.write(`  ${line}\n`);

async function measure(): Promise<unknown[]> {
  switch (system) {
    case 'durable-flow':
      return (await import('./ours.js')).runOurs(options, log);
    case 'dbos':
      return (await import('./anchors/dbos.js')).runDbos(options);
    case 'graphile-worker':
      return (await import('./anchors/graphile.js')).runGraphile(options);
    case 'pg-boss':
      return (await import('./anchors/pgboss.js')).runPgBoss(options);
    case 'pgbench':
      return (await import('./anchors/pgbench.js')).runPgbench(options);
    default:
      throw new Error(`bench/one.ts: unknown system ${JSON.stringify(system)}; use durable-flow, dbos, graphile-worker, pg-boss or pgbench`);
  }
}

const results = await measure();
process.stdout.write(`RESULTS ${JSON.stringify(results)}\n`);
process.exit(0);
