import type { StoredError } from '../../errors.js';
import type { WaitStatus } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql, quoteIdent } from '../tables.js';
import type { Statement } from './statement.js';

/**
 * The state of the given waits of run `$1`, each with the event that settles it: the one a `notify`
 * already matched, or else the first stored event that matches it now (same name, payload containing
 * `match`, recorded after the wait's low-water mark unless it allows past events, and before its timeout).
 *
 * A mark is `<pg_snapshot>[|<txid>|<event id>]`: events not yet visible in the snapshot are "after"
 * it, except, when the mark comes from a `notify` that claimed the run, that notify's own event (and
 * any it stored before it in the same transaction). The mark of a wait is the snapshot of the
 * execution that created it, so the wait after it sees every event since, except those this run's
 * earlier waits took.
 *
 * Lock: `FOR UPDATE OF w`, so a timeout decided here cannot race a `notify` matching the same wait
 * (the caller also holds the event-name locks).
 */
export const resolveWaitsSql = (t: Tables): string => `
SELECT w.id, s.name AS step_name, w.status, w.event_name,
       (w.timeout_at IS NOT NULL AND w.timeout_at <= ${nowSql('$3')}) AS expired,
       coalesce(me.id, fe.id) AS event_id,
       extract(epoch FROM coalesce(me.occurred_at, fe.occurred_at)) * 1000 AS event_at,
       -- A matched wait with no event is a finished watched run or flow.resolveWait: its step holds the result.
       coalesce(me.payload, fe.payload, CASE WHEN w.status = 'matched' AND (w.watched_run_id IS NOT NULL OR w.workflow_event_id IS NULL) THEN s.result END)::text AS payload,
       w.watched_run_id, w.signal_name,
       -- A branch of step.waitAny / waitAll: its key, mode, value once matched, and its step's state.
       w.branch, w.group_mode, w.is_sleep, w.result::text AS branch_result,
       extract(epoch FROM w.timeout_at) * 1000 AS timeout_ms, s.id AS step_id, s.status AS step_status,
       s.result::text AS step_result, s.error AS step_error
FROM ${t.waits} w
JOIN ${t.steps} s ON s.id = w.workflow_step_id
LEFT JOIN ${t.events} me ON me.id = w.workflow_event_id
LEFT JOIN LATERAL (
  SELECT e.id, e.payload, e.occurred_at
  FROM ${t.events} e
  WHERE w.status = 'pending'
    AND w.watched_run_id IS NULL
    AND w.signal_name IS NULL
    AND NOT w.is_sleep
    AND e.name = w.event_name
    AND e.payload @> w.match
    -- An event stored after the wait's deadline (on the flow's clock) is too late, stored or not.
    AND (w.timeout_at IS NULL OR e.occurred_at < w.timeout_at)
    AND (w.allow_past_events OR (
      e.txid >= pg_snapshot_xmin(split_part(w.since_snapshot, '|', 1)::pg_snapshot)
      AND NOT pg_visible_in_snapshot(e.txid, split_part(w.since_snapshot, '|', 1)::pg_snapshot)
      AND NOT coalesce(e.txid = nullif(split_part(w.since_snapshot, '|', 2), '')::xid8
                       AND e.id <= nullif(split_part(w.since_snapshot, '|', 3), '')::bigint, false)
      -- Not an event an earlier wait of this run took (waits created in one transaction are parallel:
      -- they may share an event).
      AND NOT EXISTS (SELECT 1 FROM ${t.waits} c
                      WHERE c.workflow_event_id = e.id AND c.workflow_run_id = w.workflow_run_id
                        AND c.created_at < w.created_at)))
  ORDER BY e.id
  LIMIT 1
) fe ON true
WHERE w.workflow_run_id = $1 AND s.name = ANY($2::text[])
ORDER BY w.id
FOR UPDATE OF w`;

/**
 * Settles waits during a suspension, in one statement: a wait matched by a stored event (its step
 * holds the event's payload), a wait on a run that finished before its finish trigger could match it
 * (its step holds the outcome), and a wait whose timeout passed (its step stores the WaitTimeoutError
 * that every replay rethrows).
 * A branch of a waitAny / waitAll step only has its row settled (and its value kept): settleGroups writes
 * the step, except a timed-out branch, which fails the step here (settleGroups then cancels the others).
 * The step keeps the mark it was created with. $1: [{ wait_id, status: 'matched' | 'timed_out', event_id?,
 * outcome?, error? }], $2 clock offset.
 */
export const settleWaitsSql = (t: Tables): string => `
WITH x AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(wait_id bigint, status text, event_id bigint, outcome jsonb, error jsonb)
), w AS (
  UPDATE ${t.waits} w SET status = x.status, workflow_event_id = coalesce(x.event_id, w.workflow_event_id),
         -- A branch of a waitAny / waitAll step keeps its value; durable_flow_settle_groups writes the step.
         result = CASE WHEN w.group_mode IS NOT NULL AND x.status = 'matched'
                       THEN coalesce((SELECT e.payload FROM ${t.events} e WHERE e.id = x.event_id), x.outcome) END,
         updated_at = clock_timestamp()
  FROM x WHERE w.id = x.wait_id
  RETURNING w.workflow_step_id, x.status, x.event_id, x.outcome, x.error, w.group_mode
)
UPDATE ${t.steps} s SET
  status = CASE WHEN w.status = 'timed_out' THEN 'failed' ELSE 'succeeded' END,
  result = CASE WHEN w.status = 'timed_out' THEN s.result ELSE coalesce(e.payload, w.outcome) END,
  error = CASE WHEN w.status = 'timed_out' THEN w.error ELSE s.error END,
  metadata = CASE WHEN w.status = 'timed_out' THEN s.metadata || '{"timedOut": true}'::jsonb ELSE s.metadata END,
  completed_at = ${nowSql('$2')}, attempts = s.attempts + 1, updated_at = clock_timestamp()
FROM w LEFT JOIN ${t.events} e ON e.id = w.event_id
WHERE s.id = w.workflow_step_id AND (w.group_mode IS NULL OR w.status = 'timed_out')`;

/**
 * After settleWaits matched branches of waitAny / waitAll steps: writes those steps from their rows and
 * cancels the losers (durable_flow_settle_groups). $1 the step ids, $2 clock offset. Returns the steps
 * it completed, with their results.
 */
export const settleGroupsSql = (t: Tables): string => `
SELECT g.step_pk::text AS step_id, g.step_result::text AS result
FROM ${quoteIdent(t.schema)}.durable_flow_settle_groups($1::bigint[], ${nowSql('$2')}) g`;

/** A wait of the suspending run with the event that settles it, if any (see resolveWaitsSql). */
export interface WaitState {
  id: string;
  stepName: string;
  status: WaitStatus;
  event: string;
  /** Its timeout has passed on the flow's clock. */
  expired: boolean;
  /** The event that settles it: the one a notify matched, or a stored one that matches it now. */
  eventId: string | null;
  /** That event's occurred_at (the flow's clock), ms. */
  eventAt: number | null;
  /** JSON text: that event's payload, or the outcome a finished watched run left on its step. */
  payload: string | null;
  watchedRunId: string | null;
  /** A wait of step.waitForSignal: the signal's name (no event settles it; see lib/signals/consume.ts). */
  signalName: string | null;
  /** A branch of step.waitAny / waitAll: its key ('' for a plain wait), its step's mode, whether it is a sleep. */
  branch: string;
  groupMode: 'any' | 'all' | null;
  isSleep: boolean;
  /** JSON text: a matched branch's value. */
  branchResult: string | null;
  /** Its timeout (a sleep branch's wake time), database-clock ms. */
  timeoutMs: number | null;
  stepId: string;
  stepStatus: string;
  /** JSON text: the step's result (a group step a notify or a finishing run completed). */
  stepResult: string | null;
  stepError: StoredError | null;
}

/** The state of the waits of run `run` (database id) on the steps `stepNames`, locked (FOR UPDATE). */
export async function resolveWaits(db: Queryable, statement: Statement, p: { run: string; stepNames: string[]; offsetMs: number }): Promise<WaitState[]> {
  const rows = await db.query<{
    id: string;
    step_name: string;
    status: WaitStatus;
    event_name: string;
    expired: boolean;
    event_id: string | null;
    event_at: string | number | null;
    payload: string | null;
    watched_run_id: string | null;
    signal_name: string | null;
    branch: string;
    group_mode: 'any' | 'all' | null;
    is_sleep: boolean;
    branch_result: string | null;
    timeout_ms: string | number | null;
    step_id: string;
    step_status: string;
    step_result: string | null;
    step_error: StoredError | null;
  }>(statement, [p.run, p.stepNames, p.offsetMs]);
  return rows.map((row) => ({
    id: row.id,
    stepName: row.step_name,
    status: row.status,
    event: row.event_name,
    expired: row.expired,
    eventId: row.event_id,
    eventAt: row.event_at === null ? null : Number(row.event_at),
    payload: row.payload,
    watchedRunId: row.watched_run_id,
    signalName: row.signal_name,
    branch: row.branch,
    groupMode: row.group_mode,
    isSleep: row.is_sleep,
    branchResult: row.branch_result,
    timeoutMs: row.timeout_ms === null ? null : Number(row.timeout_ms),
    stepId: String(row.step_id),
    stepStatus: row.step_status,
    stepResult: row.step_result,
    stepError: row.step_error,
  }));
}

/** How a suspension settles a wait: matched (by a stored event, or a finished run's outcome) or timed out. */
export type Settlement =
  | { waitId: string; status: 'matched'; eventId: string }
  | { waitId: string; status: 'matched'; outcome: Record<string, unknown> | null }
  | { waitId: string; status: 'timed_out'; error: StoredError };

/** Settles waits and their steps in one statement (see settleWaitsSql). */
export async function settleWaits(db: Queryable, statement: Statement, p: { settlements: Settlement[]; offsetMs: number }): Promise<void> {
  await db.query(statement, [
    JSON.stringify(
      p.settlements.map((s) => ({
        wait_id: s.waitId,
        status: s.status,
        ...('eventId' in s ? { event_id: s.eventId } : {}),
        ...('outcome' in s ? { outcome: s.outcome } : {}),
        ...('error' in s ? { error: s.error } : {}),
      })),
    ),
    p.offsetMs,
  ]);
}

/** Writes the waitAny / waitAll steps `stepIds` from their rows (see settleGroupsSql): the ones completed, with their results (JSON text). */
export async function settleGroups(db: Queryable, statement: Statement, p: { stepIds: string[]; offsetMs: number }): Promise<Map<string, string>> {
  const rows = await db.query<{ step_id: string; result: string }>(statement, [p.stepIds, p.offsetMs]);
  return new Map(rows.map((row) => [row.step_id, row.result]));
}
