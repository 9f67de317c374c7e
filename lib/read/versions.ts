import type { ReadDb } from './db.js';

/** Runs not finished that are pinned to one version other than the viewer's, of one workflow. */
export interface PinnedGroup {
  version: string;
  workflow: string;
  runs: number;
}

/**
 * The runs not finished pinned to a version other than `version` (the viewer process's flow version),
 * by version and workflow: what waits for a worker of another version (the Workflows page offers to
 * move them, flow.repin). Read from the partial index durable_flow_runs_pinned_live (its predicate
 * spelled out: the terminal statuses).
 */
export async function pinnedElsewhere(db: ReadDb, version: string, limit = 100): Promise<PinnedGroup[]> {
  const rows = await db.select<{ pinned_version: string; workflow_name: string; runs: number }>(
    `SELECT pinned_version, workflow_name, count(*)::int AS runs FROM ${db.tables.runs}
     WHERE pinned_version IS NOT NULL AND pinned_version <> $1 AND status NOT IN ('completed', 'failed', 'cancelled')
     GROUP BY pinned_version, workflow_name ORDER BY pinned_version, workflow_name LIMIT $2`,
    [version, limit],
  );
  return rows.map((row) => ({ version: row.pinned_version, workflow: row.workflow_name, runs: row.runs }));
}
