import pg from 'pg';
import type { DurableFlowOptions } from '../../lib/index.js';
import { spawnFixture } from '../helpers/child.js';
import type { ChildWorker } from '../helpers/child.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
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

/**
 * Holds advisory lock `key` (the barrier of ops-worker's BARRIER and HEARTBEAT_BARRIER, and of
 * migrate-process): whatever waits for it is held until release(), then released all at one moment.
 */
export async function holdBarrier(databaseUrl: string, key: number) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query('SELECT pg_advisory_lock($1)', [key]);
  let released = false;
  return {
    /** Resolves once `n` sessions wait for the barrier. */
    async waiting(n: number, timeoutMs = 30_000) {
      await eventually(async () => {
        const { rows } = await client.query(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          [key],
        );
        return rows[0].n >= n;
      }, timeoutMs);
    },
    /** Lets everything through (and ends the holding session). Safe to call twice. */
    async release() {
      if (released) return;
      released = true;
      await client.end();
    },
  };
}
