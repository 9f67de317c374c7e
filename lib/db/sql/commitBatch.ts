import type { StoredError } from '../../errors.js';
import type { LogLevel, RunStatus, StepStatus } from '../../types.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';
import type { Statement } from './statement.js';

/** A step write waiting for the next commit (the JSON commitBatch reads). */
export interface PendingStep {
  name: string;
  kind: string;
  status: StepStatus;
  attempts: number;
  position: number | null;
  /** JSON text; absent for a step that stored `undefined`. */
  result?: string | undefined;
  error?: StoredError | null;
  cursor?: unknown;
  metadata?: Record<string, unknown>;
  started_at?: string | undefined;
  completed_at?: string | null;
}

/** A log line waiting for the next commit. */
export interface PendingLog {
  step_name: string | null;
  step_id: string | null;
  key: string;
  level: LogLevel;
  message: string;
  data: unknown;
  at: string;
}

/** The run's new state, when a commit also moves it (complete, fail, suspend, hand back). */
export interface Transition {
  status: RunStatus;
  output?: string | undefined;
  error?: StoredError | undefined;
  wakeAt?: string | null;
  wakeNow?: boolean;
}

/** The writes of one execution, fenced by the epoch of its lease. */
export interface CommitRequest {
  run: string;
  epoch: string;
  snapshot: string;
  steps: PendingStep[];
  logs: PendingLog[];
  transition?: Transition;
}

/** [step id, step name] of a step written. */
export type StepId = [id: string, name: string];

export interface CommitResult {
  /** Whether the run was still leased with the request's epoch (if not, nothing of it was written). */
  held: boolean;
  steps: StepId[];
  /**
   * flow.pause() was asked for the run (a commit without a transition): the execution starts no further
   * step and ends by handing the run back, which leaves it 'paused'.
   */
  pauseRequested: boolean;
}

/** The statuses a pause takes the place of: those of a run that stops executing without finishing. */
export const PAUSABLE = `('ready', 'sleeping', 'waiting', 'retrying')`;

/**
 * The writes of many executions in one statement: one round trip and one commit for all of them
 * (application-level group commit). Each execution's writes are fenced by its own lease: its run
 * matches only while `lease_epoch` is the one it claimed, and its steps and logs are inserted only for
 * runs that matched. `held` lists the runs that did; the others lost their lease and wrote nothing.
 *
 * Every run of the batch is locked `FOR NO KEY UPDATE` first, in id-descending order (a claim cannot
 * take it over mid-commit); requests with a transition (complete, fail, suspend, hand back) then
 * update their locked rows.
 *
 * $1 requests: [{ run, epoch, snapshot, status?, output?, error?, wake_at?, wake_now? }]
 * $2 steps:    [{ run, name, kind, status, attempts, position, result, error, cursor, metadata, started_at, completed_at }]
 * $3 logs:     [{ run, step_name, step_id, key, level, message, data, at }]
 * $4 clock offset (ms)
 */
export const commitBatchSql = (t: Tables): string => {
  const now = nowSql('$4');
  return `
WITH req AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(
    run bigint, epoch bigint, snapshot text, status text, output text, error jsonb, wake_at timestamptz, wake_now boolean)
), locked AS (
  -- Every run of the batch still leased with the claimed epoch, locked in the one order every
  -- multi-run statement uses (id descending), so that this batch, a heartbeat of the same worker and
  -- a cancel or notify of another process never wait on each other in a cycle.
  SELECT r.id, req.snapshot, req.status, req.output, req.error, req.wake_at, req.wake_now, r.pause_requested FROM ${t.runs} r
  JOIN req ON r.id = req.run AND r.lease_epoch = req.epoch AND r.lease_owner IS NOT NULL
  -- Past its deadline (timeout, migration 011) a run stores nothing more: durable_flow_expire fails it.
  WHERE r.deadline_at IS NULL OR r.deadline_at > ${now}
  ORDER BY r.id DESC
  FOR NO KEY UPDATE OF r
), moved AS (
  -- A run whose pause was asked for (flow.pause) is left 'paused', never due, where it would have
  -- been suspended or handed back; completed and failed stay so.
  UPDATE ${t.runs} r SET
    status = CASE WHEN l.pause_requested AND l.status IN ${PAUSABLE} THEN 'paused' ELSE l.status END,
    output = CASE WHEN l.status = 'completed' THEN l.output::jsonb ELSE r.output END,
    error = CASE WHEN l.status = 'completed' THEN NULL ELSE coalesce(l.error, r.error) END,
    wake_at = CASE WHEN l.pause_requested AND l.status IN ${PAUSABLE} THEN NULL WHEN l.wake_now THEN ${now} ELSE l.wake_at END,
    pause_requested = false,
    lease_owner = NULL,
    lease_expires_at = NULL,
    claim_count = 0,
    completed_at = CASE WHEN l.status = 'completed' THEN ${now} ELSE r.completed_at END,
    failed_at = CASE WHEN l.status = 'failed' THEN ${now} ELSE r.failed_at END,
    interrupted_at = CASE WHEN l.status IN ('sleeping', 'waiting', 'retrying', 'ready') THEN ${now} ELSE r.interrupted_at END,
    updated_at = clock_timestamp()
  FROM locked l
  WHERE r.id = l.id AND l.status IS NOT NULL
  RETURNING r.id, l.snapshot
), held AS (
  SELECT id, snapshot FROM locked WHERE status IS NULL UNION ALL SELECT id, snapshot FROM moved
), sx AS (
  -- The steps of the runs that matched, and whether each row is stored already (a step's 'running' row,
  -- a retry, a sleep or wait written by an earlier suspension). This statement's snapshot is exact for
  -- that: a run's step rows are only inserted by commits of the execution holding its lease (fenced by
  -- the lock above, one commit at a time on its chain: its earlier ones committed before this began) or
  -- with the run itself (rerun's copies, before any claim), so none can appear between the snapshot and
  -- the lock. A new row is therefore a plain INSERT, with no ON CONFLICT: a speculative insert costs a
  -- confirmation record per row (WAL), and a conflict here would be a broken fence, better an error
  -- than a silent merge.
  SELECT held.id AS run_pk, held.snapshot, x.*,
         EXISTS (SELECT 1 FROM ${t.steps} e WHERE e.workflow_run_id = held.id AND e.name = x.name) AS stored
  FROM jsonb_to_recordset($2::jsonb) AS x(
    run bigint, name text, kind text, status text, attempts integer, position integer, result text, error jsonb,
    cursor jsonb, metadata jsonb, started_at timestamptz, completed_at timestamptz)
  JOIN held ON held.id = x.run
), st_new AS (
  INSERT INTO ${t.steps} AS s
    (workflow_run_id, name, kind, status, attempts, position, result, error, cursor, metadata,
     exec_snapshot, started_at, completed_at, updated_at)
  SELECT x.run_pk, x.name, coalesce(x.kind, 'run'), x.status, coalesce(x.attempts, 0), x.position,
         x.result::jsonb, x.error, x.cursor, coalesce(x.metadata, '{}'::jsonb), x.snapshot, x.started_at,
         x.completed_at, clock_timestamp()
  FROM sx x WHERE NOT x.stored
  RETURNING s.id, s.workflow_run_id, s.name
), st_stored AS (
  UPDATE ${t.steps} s SET
    status = x.status,
    attempts = greatest(s.attempts, coalesce(x.attempts, 0)),
    result = x.result::jsonb,
    error = x.error,
    cursor = coalesce(x.cursor, s.cursor),
    metadata = s.metadata || coalesce(x.metadata, '{}'::jsonb),
    -- A step body's mark is the one of the execution that first began it (a retry, or a replay after a
    -- crash, must not move it past an event the first attempt caused); a sleep's is its waking one.
    exec_snapshot = CASE WHEN s.kind = 'run' THEN coalesce(s.exec_snapshot, x.snapshot) ELSE x.snapshot END,
    started_at = coalesce(s.started_at, x.started_at),
    completed_at = x.completed_at,
    updated_at = clock_timestamp()
  FROM sx x
  WHERE x.stored AND s.workflow_run_id = x.run_pk AND s.name = x.name
  RETURNING s.id, s.workflow_run_id, s.name
), st AS (
  SELECT * FROM st_new UNION ALL SELECT * FROM st_stored
), lg AS (
  INSERT INTO ${t.logs} (workflow_run_id, workflow_step_id, key, level, message, data, created_at, updated_at)
  SELECT held.id, coalesce(st.id, x.step_id), x.key, x.level, x.message, coalesce(x.data, '{}'::jsonb), x.at, x.at
  FROM jsonb_to_recordset($3::jsonb) AS x(
    run bigint, step_name text, step_id bigint, key text, level text, message text, data jsonb, at timestamptz)
  JOIN held ON held.id = x.run
  LEFT JOIN st ON st.workflow_run_id = x.run AND st.name = x.step_name
  ON CONFLICT (workflow_run_id, key) DO NOTHING
)
SELECT coalesce((SELECT json_agg(id) FROM held), '[]') AS held,
       coalesce((SELECT json_agg(json_build_array(st.workflow_run_id, st.id, st.name)) FROM st), '[]') AS steps,
       coalesce((SELECT json_agg(id) FROM locked WHERE pause_requested AND status IS NULL), '[]') AS pause`;
};

/** Runs commitBatch for `requests` (on the pool, or on a transaction's client); one result per request, in order. */
export async function commitBatch(db: Queryable, statement: Statement, p: { requests: CommitRequest[]; offsetMs: number }): Promise<CommitResult[]> {
  const requests = [];
  const steps = [];
  const logs = [];
  for (const request of p.requests) {
    const t = request.transition;
    requests.push({
      run: request.run,
      epoch: request.epoch,
      snapshot: request.snapshot,
      ...(t
        ? { status: t.status, output: t.output ?? null, error: t.error ?? null, wake_at: t.wakeAt ?? null, wake_now: t.wakeNow === true }
        : {}),
    });
    for (const step of request.steps) steps.push({ run: request.run, ...step });
    for (const log of request.logs) logs.push({ run: request.run, ...log });
  }
  const [answer] = await db.query<{ held: (string | number)[]; steps: [string | number, string | number, string][]; pause: (string | number)[] }>(statement, [
    JSON.stringify(requests),
    JSON.stringify(steps),
    JSON.stringify(logs),
    p.offsetMs,
  ]);
  const held = new Set(answer!.held.map(String));
  const pause = new Set(answer!.pause.map(String));
  const written = new Map<string, StepId[]>();
  for (const [run, id, name] of answer!.steps) {
    const list = written.get(String(run)) ?? [];
    list.push([String(id), name]);
    written.set(String(run), list);
  }
  return p.requests.map((request) => ({ held: held.has(request.run), steps: written.get(request.run) ?? [], pauseRequested: pause.has(request.run) }));
}
