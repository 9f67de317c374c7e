import { createEffectsTable, registerCrashWorkflows } from '../fixtures/crash-workflows.js';
import { spawnFixture } from './child.js';
import type { ChildWorker } from './child.js';
import { setupDatabase } from './flow.js';

/** A test database with the crash workflows registered on a flow (lease 2 s, one recovery) and test_effects. */
export async function crashSetup(prefix: string) {
  const ctx = await setupDatabase(prefix);
  const flow = ctx.flow({ leaseTtl: '2 seconds', maxRecoveries: 1 });
  registerCrashWorkflows(flow);
  await createEffectsTable(flow);
  return { ctx, flow };
}

/** A worker child process (test/fixtures/worker-process.ts) on `databaseUrl`, with the same lease settings. */
export function crashWorker(databaseUrl: string, env: Record<string, string> = {}): ChildWorker {
  return spawnFixture('worker-process.ts', { DATABASE_URL: databaseUrl, LEASE_TTL_MS: '2000', MAX_RECOVERIES: '1', ...env });
}
