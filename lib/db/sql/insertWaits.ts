import type { StoredError } from '../../errors.js';
import type { RunStatus } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import type { Statement } from './statement.js';

/**
 * Records new waits of run `$1` (their step rows were stored just before, in the same transaction).
 * `since_snapshot` is the low-water mark: events not yet visible in it count as "after the wait began".
 * `watched_run_id` makes it a wait for that run to finish instead of for an event; `signal_name` a wait
 * for a signal sent to this run (step.waitForSignal, see lib/signals/). A waitAny / waitAll step has one
 * row per branch (`branch`, `group_mode`, `is_sleep`), inserted in the order declared (ids follow it).
 */
export const insertWaitsSql = (t: Tables): string => `
INSERT INTO ${t.waits}
  (workflow_run_id, workflow_step_id, event_name, match, allow_past_events, watched_run_id, signal_name, since_snapshot, timeout_at,
   branch, group_mode, is_sleep)
SELECT $1, s.id, x.event_name, x.match, x.allow_past_events, x.watched_run_id, x.signal_name, x.since_snapshot, x.timeout_at,
       coalesce(x.branch, ''), x.group_mode, coalesce(x.is_sleep, false)
FROM ROWS FROM (jsonb_to_recordset($2::jsonb) AS (
  step_name text, event_name text, match jsonb, allow_past_events boolean, watched_run_id text, signal_name text,
  since_snapshot text, timeout_at timestamptz, branch text, group_mode text, is_sleep boolean)) WITH ORDINALITY AS x(
  step_name, event_name, match, allow_past_events, watched_run_id, signal_name, since_snapshot, timeout_at, branch, group_mode,
  is_sleep, n)
JOIN ${t.steps} s ON s.workflow_run_id = $1 AND s.name = x.step_name
ORDER BY x.n
ON CONFLICT (workflow_run_id, workflow_step_id, branch) DO NOTHING`;

/**
 * Marks the runs some waits of this suspension watch (so their finish trigger matches the waits) and
 * reads their state. The UPDATE takes their row locks before the waiting run's own (the order in which a
 * finishing run locks its parent): a run that has not finished cannot finish before the new waits
 * commit, and then its trigger sees them; one that has finished is read here.
 */
export const lockWatchedRunsSql = (t: Tables): string => `
WITH marked AS (
  UPDATE ${t.runs} SET watched = true
  WHERE id IN (SELECT id FROM ${t.runs} WHERE run_id = ANY($1::text[]) ORDER BY id DESC FOR NO KEY UPDATE)
  RETURNING run_id, workflow_name, status, output::text AS output, error,
            coalesce(completed_at, failed_at, cancelled_at) AS finished_at
)
SELECT * FROM marked`;

/** A wait to record on the step of the same name. */
export interface NewWait {
  stepName: string;
  event: string;
  match: unknown;
  allowPastEvents: boolean;
  /** Set for a wait on a run to finish: that run's id. */
  watchedRunId: string | null;
  /** Set for step.waitForSignal: the signal's name. */
  signalName: string | null;
  /** The low-water mark (see resolveWaits). */
  sinceSnapshot: string;
  timeoutAt: string | null;
  /** A branch of step.waitAny / waitAll: its key and its step's mode; `sleep` for a sleep branch. */
  branch?: { key: string; mode: 'any' | 'all'; sleep: boolean } | undefined;
}

/** Records `waits` of run `run` (its database id), inside the suspension's transaction. */
export async function insertWaits(db: Queryable, statement: Statement, p: { run: string; waits: NewWait[] }): Promise<void> {
  await db.query(statement, [
    p.run,
    JSON.stringify(
      p.waits.map((w) => ({
        step_name: w.stepName,
        event_name: w.event,
        match: w.match,
        allow_past_events: w.allowPastEvents,
        watched_run_id: w.watchedRunId,
        signal_name: w.signalName,
        since_snapshot: w.sinceSnapshot,
        timeout_at: w.timeoutAt,
        ...(w.branch ? { branch: w.branch.key, group_mode: w.branch.mode, is_sleep: w.branch.sleep } : {}),
      })),
    ),
  ]);
}

/** A run some wait watches, as lockWatchedRuns reads it. */
export interface WatchedRun {
  runId: string;
  workflow: string;
  status: RunStatus;
  output: string | null;
  error: StoredError | null;
  finishedAt: Date | null;
}

/** Marks and locks the runs `runIds` (see lockWatchedRunsSql) and reads their state. */
export async function lockWatchedRuns(db: Queryable, statement: Statement, p: { runIds: string[] }): Promise<WatchedRun[]> {
  const rows = await db.query<{ run_id: string; workflow_name: string; status: RunStatus; output: string | null; error: StoredError | null; finished_at: Date | null }>(
    statement,
    [p.runIds],
  );
  return rows.map((row) => ({
    runId: row.run_id,
    workflow: row.workflow_name,
    status: row.status,
    output: row.output,
    error: row.error,
    finishedAt: row.finished_at,
  }));
}
