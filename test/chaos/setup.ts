import type { DurableFlowOptions } from '../../lib/index.js';
import { spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { setupDatabase } from '../helpers/flow.js';
import { installHistory } from './history.js';
import { registerOpsWorkflows } from './ops-workflows.js';
import { registerChaosWorkflows } from './workflows.js';

/** A test database with the history checker installed and the chaos workflows on a flow (lease 2 s). */
export async function chaosSetup(prefix: string) {
  const ctx = await setupDatabase(prefix);
  const flow = ctx.flow({ leaseTtl: '2 seconds' });
  const workflows = registerChaosWorkflows(flow);
  await installHistory(flow.pool);
  return { ctx, flow, workflows };
}

/** The same for the lease and operations scenarios: the ops workflows (test/chaos/ops-workflows.ts). */
export async function opsSetup(prefix: string, options: DurableFlowOptions = {}) {
  const ctx = await setupDatabase(prefix);
  const flow = ctx.flow({ leaseTtl: '2 seconds', ...options });
  const workflows = registerOpsWorkflows(flow);
  await installHistory(flow.pool);
  return { ctx, flow, workflows };
}

/** A worker child process running the ops workflows (test/fixtures/ops-worker.ts). */
export function opsWorker(databaseUrl: string, env: Record<string, string> = {}): ChildWorker {
  return spawnFixture('ops-worker.ts', { DATABASE_URL: databaseUrl, LEASE_TTL_MS: '2000', ...env });
}
