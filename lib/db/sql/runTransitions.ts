import type { StoredError } from '../../errors.js';
import type { RunStatus } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql, quoteIdent } from '../tables.js';
import type { Statement } from './statement.js';

/**
 * Suspends run `$1` (still fenced by its lease epoch `$2`): sets its status and the time it is next
 * due (`$4`, or NULL when only an event can wake it) and releases the lease. The claim counter goes
 * back to 0: the run stopped cleanly.
 */
export const suspendRunSql = (t: Tables): string => `
UPDATE ${t.runs} SET
  status = $3,
  wake_at = $4::timestamptz,
  error = coalesce($5::jsonb, error),
  lease_owner = NULL,
  lease_expires_at = NULL,
  claim_count = 0,
  interrupted_at = ${nowSql('$6')},
  updated_at = clock_timestamp()
WHERE id = $1 AND lease_epoch = $2 AND lease_owner IS NOT NULL
RETURNING id`;

/**
 * Hands runs back to the queue at once (a worker stopping, or an execution that hit an infrastructure
 * error): due now, lease released, the claim counter left as it is so a run that keeps failing this
 * way still ends up failed. Fenced by each run's epoch.
 */
export const releaseRunsSql = (t: Tables): string => `
UPDATE ${t.runs} r SET
  status = 'ready',
  wake_at = ${nowSql('$2')} + x.delay_ms * interval '1 millisecond',
  lease_owner = NULL,
  lease_expires_at = NULL,
  claim_count = CASE WHEN x.clean THEN 0 ELSE r.claim_count END,
  updated_at = clock_timestamp()
FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, epoch bigint, delay_ms float8, clean boolean)
WHERE r.id = x.id AND r.lease_epoch = x.epoch AND r.lease_owner IS NOT NULL
RETURNING r.id`;

/**
 * Cancels a run that has not finished, and the runs it started (durable_flow_cancel in
 * migrations/001_initial.sql, where its locks are explained). $3 is the reason stored as its error.
 */
export const cancelRunSql = (t: Tables): string => `
SELECT ${quoteIdent(t.schema)}.durable_flow_cancel(ARRAY(SELECT id FROM ${t.runs} WHERE run_id = $1), $3, $2) AS cancelled`;

/**
 * Puts a failed run back in the queue. The step whose error failed the run is reset (and its wait
 * removed, so a timed-out wait waits again); every completed step stays memoized.
 */
export const retryRunSql = (t: Tables): string => `
WITH r AS (
  UPDATE ${t.runs} SET
    status = 'ready',
    wake_at = ${nowSql('$2')},
    failed_at = NULL,
    claim_count = 0,
    lease_epoch = lease_epoch + 1,
    updated_at = clock_timestamp()
  WHERE run_id = $1 AND status = 'failed'
  RETURNING id, error->>'step' AS step
), s AS (
  UPDATE ${t.steps} s SET status = 'pending', attempts = 0, result = NULL, completed_at = NULL,
         metadata = s.metadata - 'timedOut' - 'retryAt', updated_at = clock_timestamp()
  FROM r
  WHERE s.workflow_run_id = r.id AND s.name = r.step AND s.status = 'failed'
  RETURNING s.id
), w AS (
  DELETE FROM ${t.waits} WHERE workflow_step_id IN (SELECT id FROM s)
)
SELECT (SELECT count(*) FROM r)::int AS retried`;

/** Suspends a run (see suspendRunSql); false when its lease was lost (nothing was written). */
export async function suspendRun(
  db: Queryable,
  statement: Statement,
  p: { run: string; epoch: string; status: RunStatus; wakeAt: string | null; error: StoredError | undefined; offsetMs: number },
): Promise<boolean> {
  const rows = await db.query(statement, [p.run, p.epoch, p.status, p.wakeAt, p.error ? JSON.stringify(p.error) : null, p.offsetMs]);
  return rows.length > 0;
}
