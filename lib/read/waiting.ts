import type { RunStatus } from '../types.js';
import type { ReadDb } from './db.js';

/**
 * The stored columns that say why a run has not begun, or why it is not executing now (the viewer's
 * "why it waits", lib/http/waiting.ts). Read with the run list's row and the run page's run, never by
 * scanning other runs; the run page adds two counts on the key's partial indexes (runWaitCounts).
 */
export interface RunWaitState {
  status: RunStatus;
  queue: string;
  priority: number;
  startedAt: Date | null;
  wakeAt: Date | null;
  /** A due run of a paused workflow, set aside by a claim (migration 007). */
  heldWakeAt: Date | null;
  scheduledFor: Date | null;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  concurrencyWaiting: boolean;
  debounceKey: string | null;
  debounceDeadline: Date | null;
  pinnedVersion: string | null;
  startBy: Date | null;
  deadlineAt: Date | null;
  /** While the run is held by its throttle (`throttle_waiting`): its throttle key without the workflow's prefix ('' without a key function); else null. */
  throttleKey: string | null;
}

/** The runs table's columns of RunWaitState, for a SELECT on `r` (the runs table's alias). */
export const WAIT_STATE_COLUMNS = `r.queue_name AS w_queue, r.priority AS w_priority, r.wake_at AS w_wake_at,
  r.held_wake_at AS w_held_wake_at, r.scheduled_for AS w_scheduled_for, r.concurrency_key AS w_concurrency_key,
  r.concurrency_limit AS w_concurrency_limit, r.concurrency_waiting AS w_concurrency_waiting, r.debounce_key AS w_debounce_key,
  r.debounce_deadline AS w_debounce_deadline, r.pinned_version AS w_pinned_version, r.start_by AS w_start_by,
  r.deadline_at AS w_deadline_at, CASE WHEN r.throttle_waiting THEN
    CASE WHEN r.throttle_key = r.workflow_name THEN '' ELSE substr(r.throttle_key, length(r.workflow_name) + 2) END END AS w_throttle_key`;

/** A row holding WAIT_STATE_COLUMNS (plus status and started_at, which every run read has). */
export interface WaitStateRow {
  status: RunStatus;
  started_at: Date | null;
  w_queue: string;
  w_priority: number;
  w_wake_at: Date | null;
  w_held_wake_at: Date | null;
  w_scheduled_for: Date | null;
  w_concurrency_key: string | null;
  w_concurrency_limit: number | null;
  w_concurrency_waiting: boolean;
  w_debounce_key: string | null;
  w_debounce_deadline: Date | null;
  w_pinned_version: string | null;
  w_start_by: Date | null;
  w_deadline_at: Date | null;
  w_throttle_key: string | null;
}

const date = (value: Date | string | null): Date | null => (value === null ? null : new Date(value));

export function toWaitState(row: WaitStateRow): RunWaitState {
  return {
    status: row.status,
    queue: row.w_queue,
    priority: row.w_priority,
    startedAt: date(row.started_at),
    wakeAt: date(row.w_wake_at),
    heldWakeAt: date(row.w_held_wake_at),
    scheduledFor: date(row.w_scheduled_for),
    concurrencyKey: row.w_concurrency_key,
    concurrencyLimit: row.w_concurrency_limit,
    concurrencyWaiting: row.w_concurrency_waiting === true,
    debounceKey: row.w_debounce_key,
    debounceDeadline: date(row.w_debounce_deadline),
    pinnedVersion: row.w_pinned_version,
    startBy: date(row.w_start_by),
    deadlineAt: date(row.w_deadline_at),
    throttleKey: row.w_throttle_key,
  };
}

/** The wait state of one run and, for a run parked behind its concurrency limit, its key's counts. */
export interface RunWaitDetail {
  state: RunWaitState;
  /** Runs of its concurrency key executing now (up to COUNT_CAP), when it is parked for a slot. */
  running: number | null;
  /** Runs of its key parked before it (lower priority, then older; up to COUNT_CAP), when it is parked. */
  ahead: number | null;
}

/** The most either count reads: a key with more shows as "1000+". */
export const COUNT_CAP = 1000;

/**
 * One run's wait state (null if there is no such run), with the counts of its concurrency key when it is
 * parked: `durable_flow_runs_key_running (concurrency_key) WHERE status = 'running'` and
 * `durable_flow_runs_key_waiting (concurrency_key, priority, id) WHERE concurrency_waiting`, each read at
 * most COUNT_CAP rows deep. One statement; the counts are NULL (and not computed) for any other run.
 */
export async function runWaitDetail(db: ReadDb, runId: string): Promise<RunWaitDetail | null> {
  const t = db.tables;
  const rows = await db.select<WaitStateRow & { running: number | null; ahead: number | null }>(
    `SELECT r.status, r.started_at, ${WAIT_STATE_COLUMNS},
            CASE WHEN r.concurrency_waiting THEN (SELECT count(*)::int FROM (SELECT 1 FROM ${t.runs} k
              WHERE k.concurrency_key = r.concurrency_key AND k.status = 'running' LIMIT ${COUNT_CAP}) AS running) END AS running,
            CASE WHEN r.concurrency_waiting THEN (SELECT count(*)::int FROM (SELECT 1 FROM ${t.runs} k
              WHERE k.concurrency_waiting AND k.concurrency_key = r.concurrency_key AND (k.priority, k.id) < (r.priority, r.id) LIMIT ${COUNT_CAP}) AS ahead) END AS ahead
     FROM ${t.runs} r WHERE r.run_id = $1`,
    [runId],
  );
  const row = rows[0];
  return row ? { state: toWaitState(row), running: row.running, ahead: row.ahead } : null;
}
