import type { StoredError } from '../../errors.js';
import type { RunStatus } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql, quoteIdent } from '../tables.js';
import type { LeasedRun } from './heartbeat.js';
import type { Statement } from './statement.js';

/**
 * Suspends run `$1` (still fenced by its lease epoch `$2`): sets its status and the time it is next
 * due (`$4`, or NULL when only an event can wake it) and releases the lease. The claim counter goes
 * back to 0: the run stopped cleanly. A run whose pause was asked for (flow.pause) is left 'paused'
 * instead, never due until flow.resume().
 */
export const suspendRunSql = (t: Tables): string => `
UPDATE ${t.runs} SET
  status = CASE WHEN pause_requested THEN 'paused' ELSE $3 END,
  wake_at = CASE WHEN pause_requested THEN NULL ELSE $4::timestamptz END,
  pause_requested = false,
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
 * way still ends up failed ('paused' instead when its pause was asked for). Fenced by each run's epoch.
 */
export const releaseRunsSql = (t: Tables): string => `
UPDATE ${t.runs} r SET
  status = CASE WHEN r.pause_requested THEN 'paused' ELSE 'ready' END,
  wake_at = CASE WHEN r.pause_requested THEN NULL ELSE ${nowSql('$2')} + x.delay_ms * interval '1 millisecond' END,
  pause_requested = false,
  lease_owner = NULL,
  lease_expires_at = NULL,
  claim_count = CASE WHEN x.clean THEN 0 ELSE r.claim_count END,
  updated_at = clock_timestamp()
FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, epoch bigint, delay_ms float8, clean boolean)
WHERE r.id = x.id AND r.lease_epoch = x.epoch AND r.lease_owner IS NOT NULL
RETURNING r.id`;

/** Suspends a run (see suspendRunSql); false when its lease was lost (nothing was written). */
export async function suspendRun(
  db: Queryable,
  statement: Statement,
  p: { run: string; epoch: string; status: RunStatus; wakeAt: string | null; error: StoredError | undefined; offsetMs: number },
): Promise<boolean> {
  const rows = await db.query(statement, [p.run, p.epoch, p.status, p.wakeAt, p.error ? JSON.stringify(p.error) : null, p.offsetMs]);
  return rows.length > 0;
}

/** A run to hand back: due after `delayMs`; `clean` resets its claim counter (a clean stop). */
export interface ReleasedRun extends LeasedRun {
  delayMs: number;
  clean: boolean;
}

/** Hands `runs` back to the queue (see releaseRunsSql), each fenced by its epoch; returns how many it released. */
export async function releaseRuns(db: Queryable, statement: Statement, p: { runs: ReleasedRun[]; offsetMs: number }): Promise<number> {
  const rows = await db.query(statement, [
    JSON.stringify(p.runs.map((run) => ({ id: run.id, epoch: run.epoch, delay_ms: run.delayMs, clean: run.clean }))),
    p.offsetMs,
  ]);
  return rows.length;
}

/**
 * Cancels run `$1` (its database id) and every unfinished run it started: durable_flow_cancel
 * (lib/db/functions/cancel.sql, which takes their locks children first). `$2` the reason stored as
 * its error, `$3` the clock offset (ms). Answers `cancelled`, how many runs it cancelled (0: the run
 * had finished). flow.cancel and a schedule's `cancel_other` both run it.
 */
export const cancelRunSql = (t: Tables): string =>
  `SELECT ${quoteIdent(t.schema)}.durable_flow_cancel(ARRAY[$1::bigint], $2, $3) AS cancelled`;
