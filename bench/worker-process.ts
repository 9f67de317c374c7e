/**
 * A durable-flow worker in a child process, for the multi-process throughput figures. Registers the
 * benchmark workflow, starts a worker and prints READY; exits on SIGTERM after stopping it.
 * Environment: DATABASE_URL, CONCURRENCY.
 */
import { DurableFlow } from '../lib/index.js';
import { defineBenchWorkflows } from './workflows.js';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL!, logger: false, poolSize: 20 });
defineBenchWorkflows(flow);
const worker = flow.worker({ concurrency: Number(process.env.CONCURRENCY ?? 20), pollInterval: '1 second' });
await worker.start();
process.stdout.write('READY\n');
process.on('SIGTERM', () => {
  void worker
    .stop({ timeout: '5 seconds' })
    .then(() => flow.close())
    .then(() => process.exit(0));
});
