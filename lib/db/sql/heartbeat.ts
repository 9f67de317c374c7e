import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';
import type { Statement } from './statement.js';

/** A run a worker holds, fenced by the epoch of its lease. */
export interface LeasedRun {
  id: string;
  epoch: string;
}

/**
 * Extends the leases this worker still holds and returns them; a run missing from the answer was lost
 * (taken over after expiry, or cancelled). It leaves updated_at alone, so it sends no live change.
 * Lock: the row locks of the UPDATE, taken in id-descending order, the order of every
 * multi-run lock (see migrations/001_initial.sql), so a heartbeat never deadlocks with its worker's commits.
 */
export const heartbeatSql = (t: Tables): string => `
WITH mine AS (
  SELECT r.id FROM ${t.runs} r
  JOIN jsonb_to_recordset($1::jsonb) AS x(id bigint, epoch bigint) ON r.id = x.id AND r.lease_epoch = x.epoch
  WHERE r.lease_owner = $2
  ORDER BY r.id DESC
  FOR NO KEY UPDATE OF r
)
UPDATE ${t.runs} r SET
  lease_expires_at = ${nowSql('$4')} + $3::float8 * interval '1 millisecond',
  wake_at = ${nowSql('$4')} + $3::float8 * interval '1 millisecond'
FROM mine WHERE r.id = mine.id
RETURNING r.id`;

/** Extends the leases `owner` still holds of `runs` by `leaseMs`; returns the ids of those it holds (the others are lost). */
export async function heartbeat(
  db: Queryable,
  statement: Statement,
  p: { runs: LeasedRun[]; owner: string; leaseMs: number; offsetMs: number },
): Promise<Set<string>> {
  const rows = await db.query<{ id: string | number }>(statement, [
    JSON.stringify(p.runs.map((run) => ({ id: run.id, epoch: run.epoch }))),
    p.owner,
    p.leaseMs,
    p.offsetMs,
  ]);
  return new Set(rows.map((row) => String(row.id)));
}
