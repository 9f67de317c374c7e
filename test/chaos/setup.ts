import { setupDatabase } from '../helpers/flow.js';
import { installHistory } from './history.js';
import { registerChaosWorkflows } from './workflows.js';

/** A test database with the history checker installed and the chaos workflows on a flow (lease 2 s). */
export async function chaosSetup(prefix: string) {
  const ctx = await setupDatabase(prefix);
  const flow = ctx.flow({ leaseTtl: '2 seconds' });
  const workflows = registerChaosWorkflows(flow);
  await installHistory(flow.pool);
  return { ctx, flow, workflows };
}
