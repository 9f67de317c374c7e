import type { Queryable } from '../db/queryable.js';
import type { Tables } from '../db/tables.js';
import { nowSql, quoteIdent } from '../db/tables.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { RunStatus, ScheduleCatchUp, ScheduleInfo, ScheduleOrigin, ScheduleOverlap, SkippedSlot } from '../types.js';
import { cancelRunSql } from '../db/sql/runTransitions.js';
import type { ScheduleSpec } from './options.js';

/**
 * The statements of durable_flow_schedules (migration 004), their parameters and row mapping. `$n`
 * offsets are the flow's clock offset (ms): every time here is on the database clock plus it.
 */

export const schedulesTable = (t: Tables): string => `${quoteIdent(t.schema)}.durable_flow_schedules`;

/** A schedule row as the firing reads it, with its previous run's state. */
export interface DueSchedule {
  name: string;
  workflow: string;
  cron: string;
  timezone: string;
  input: string | null;
  overlap: ScheduleOverlap;
  catchUp: ScheduleCatchUp;
  nextAt: Date | null;
  bufferedSlot: Date | null;
  lastRunId: string | null;
  /** The previous run's row id and whether it has not finished (null: none, or pruned). */
  lastRun: { id: string; active: boolean } | null;
  skipped: SkippedSlot[];
}

/** The database clock plus the offset. */
export async function dbNow(db: Queryable, offsetMs: number): Promise<Date> {
  const [row] = await db.query<{ now: Date }>(`SELECT ${nowSql('$1')} AS now`, [offsetMs]);
  return row!.now;
}

/**
 * A schedule is due when its next slot has passed, or when a buffered slot waits (buffer_one). The
 * two are asked apart, never with OR, so the first uses the next_at index (durable_flow_schedules_due).
 */
const dueNext = (now: string) => `NOT s.paused AND s.workflow_name = ANY($1::text[]) AND s.next_at <= ${now}`;
const dueBuffered = `NOT s.paused AND s.workflow_name = ANY($1::text[]) AND s.buffered_slot IS NOT NULL`;

/** Whether any schedule of `workflows` is due (one read, outside a transaction: most polls find none). */
export async function anyDue(db: Queryable, t: Tables, p: { workflows: string[]; offsetMs: number }): Promise<boolean> {
  const rows = await db.query(
    `(SELECT 1 FROM ${schedulesTable(t)} s WHERE ${dueNext(nowSql('$2'))} LIMIT 1)
     UNION ALL (SELECT 1 FROM ${schedulesTable(t)} s WHERE ${dueBuffered} LIMIT 1) LIMIT 1`,
    [p.workflows, p.offsetMs],
  );
  return rows.length > 0;
}

type DueRow = {
  name: string; workflow_name: string; cron: string; timezone: string; input: string | null; overlap: ScheduleOverlap;
  catch_up: ScheduleCatchUp; next_at: Date | null; buffered_slot: Date | null; last_run_id: string | null;
  skipped: SkippedSlot[]; run_pk: string | null; run_status: string | null; now: Date;
};

/**
 * Locks the due schedules of `workflows` (next slot passed, or a buffered slot waiting) that no other
 * process is firing: FOR UPDATE SKIP LOCKED, so each schedule's slots are decided by one process at a
 * time and the others move on to other schedules instead of waiting. Held until the firing commits.
 * Those whose next slot passed come first (oldest first); buffered ones fill the rest of `limit`.
 */
export async function lockDueSchedules(db: Queryable, t: Tables, p: { workflows: string[]; offsetMs: number; limit: number }): Promise<{ now: Date | null; schedules: DueSchedule[] }> {
  const select = (where: string, order: string) => `
     SELECT s.name, s.workflow_name, s.cron, s.timezone, s.input::text AS input, s.overlap, s.catch_up, s.next_at,
            s.buffered_slot, s.last_run_id, s.skipped, r.id AS run_pk, r.status AS run_status, ${nowSql('$2')} AS now
     FROM ${schedulesTable(t)} s LEFT JOIN ${t.runs} r ON r.run_id = s.last_run_id
     WHERE ${where}
     ORDER BY ${order} LIMIT $3
     FOR UPDATE OF s SKIP LOCKED`;
  const rows = await db.query<DueRow>(select(dueNext(nowSql('$2')), 's.next_at'), [p.workflows, p.offsetMs, p.limit]);
  if (rows.length < p.limit) {
    // A row this transaction has just locked is not skipped: leave out those it has.
    const buffered = await db.query<DueRow>(select(`${dueBuffered} AND s.name <> ALL($4::text[])`, 's.next_at NULLS LAST'), [
      p.workflows,
      p.offsetMs,
      p.limit - rows.length,
      rows.map((row) => row.name),
    ]);
    rows.push(...buffered);
  }
  return {
    now: rows[0]?.now ?? null,
    schedules: rows.map((row) => ({
      name: row.name,
      workflow: row.workflow_name,
      cron: row.cron,
      timezone: row.timezone,
      input: row.input,
      overlap: row.overlap,
      catchUp: row.catch_up,
      nextAt: row.next_at,
      bufferedSlot: row.buffered_slot,
      lastRunId: row.last_run_id,
      lastRun: row.run_pk === null ? null : { id: row.run_pk, active: !TERMINAL_STATUSES.includes(row.run_status as RunStatus) },
      skipped: row.skipped,
    })),
  };
}

/**
 * Schedules not paused whose next slot passed over `graceMs` ago, of workflows other than
 * `workflows` (those this process does not fire), leaving out `except`; the longest overdue first.
 */
export async function overdueSchedules(
  db: Queryable,
  t: Tables,
  p: { workflows: string[]; except: string[]; offsetMs: number; graceMs: number; limit: number },
): Promise<{ name: string; workflow: string; overdueMs: number }[]> {
  const now = nowSql('$2');
  const rows = await db.query<{ name: string; workflow_name: string; overdue_ms: number }>(
    `SELECT s.name, s.workflow_name, extract(epoch FROM ${now} - s.next_at) * 1000 AS overdue_ms
     FROM ${schedulesTable(t)} s
     WHERE NOT s.paused AND s.next_at < ${now} - $3::float8 * interval '1 millisecond'
       AND s.workflow_name <> ALL($1::text[]) AND s.name <> ALL($4::text[])
     ORDER BY s.next_at LIMIT $5`,
    [p.workflows, p.offsetMs, p.graceMs, p.except, p.limit],
  );
  return rows.map((row) => ({ name: row.name, workflow: row.workflow_name, overdueMs: Number(row.overdue_ms) }));
}

/** What a firing writes back to a schedule it locked (null lastSlot, lastRunId: unchanged). */
export interface FiredUpdate {
  name: string;
  nextAt: Date | null;
  lastSlot: Date | null;
  lastRunId: string | null;
  bufferedSlot: Date | null;
  skipped: SkippedSlot[];
}

/** Writes back the schedules a firing locked, in one statement. */
export async function updateFired(db: Queryable, t: Tables, updates: FiredUpdate[]): Promise<void> {
  if (updates.length === 0) return;
  await db.query(
    `UPDATE ${schedulesTable(t)} s SET next_at = x.next_at, last_slot = coalesce(x.last_slot, s.last_slot),
            last_run_id = coalesce(x.last_run_id, s.last_run_id), buffered_slot = x.buffered_slot, skipped = x.skipped::jsonb, updated_at = now()
     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::text[])
          AS x(name, next_at, last_slot, last_run_id, buffered_slot, skipped)
     WHERE s.name = x.name`,
    [
      updates.map((u) => u.name),
      updates.map((u) => u.nextAt),
      updates.map((u) => u.lastSlot),
      updates.map((u) => u.lastRunId),
      updates.map((u) => u.bufferedSlot),
      updates.map((u) => JSON.stringify(u.skipped)),
    ],
  );
}

/** Marks runs with the slot they were started for (a run an earlier start made for the slot has it already). */
export async function markScheduled(db: Queryable, t: Tables, runs: { runId: string; slot: Date }[]): Promise<void> {
  if (runs.length === 0) return;
  await db.query(
    `UPDATE ${t.runs} r SET scheduled_for = x.slot
     FROM unnest($1::text[], $2::timestamptz[]) AS x(run_id, slot)
     WHERE r.run_id = x.run_id AND r.scheduled_for IS NULL`,
    [runs.map((r) => r.runId), runs.map((r) => r.slot)],
  );
}

/** cancel_other: cancels the previous run (and its children), as flow.cancel does, inside the firing. */
export async function cancelRun(db: Queryable, t: Tables, p: { id: string; reason: string; offsetMs: number }): Promise<void> {
  await db.query(cancelRunSql(t), [p.id, p.reason, p.offsetMs]);
}

/**
 * Creates a schedule, or updates the one of that name: its next slot is recomputed (`nextAt`) only
 * when its cron or time zone changed; `paused` is set only on creation.
 */
export async function upsertSchedule(db: Queryable, t: Tables, spec: ScheduleSpec, nextAt: Date | null): Promise<void> {
  await db.query(
    `INSERT INTO ${schedulesTable(t)} AS s (name, workflow_name, cron, timezone, input, overlap, catch_up, paused, next_at, origin)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)
     ON CONFLICT (name) DO UPDATE SET
       workflow_name = EXCLUDED.workflow_name, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, input = EXCLUDED.input,
       overlap = EXCLUDED.overlap, catch_up = EXCLUDED.catch_up, origin = EXCLUDED.origin,
       next_at = CASE WHEN (s.cron, s.timezone) IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone) THEN EXCLUDED.next_at ELSE s.next_at END,
       updated_at = now()
     WHERE (s.workflow_name, s.cron, s.timezone, s.input, s.overlap, s.catch_up, s.origin)
       IS DISTINCT FROM (EXCLUDED.workflow_name, EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.input, EXCLUDED.overlap, EXCLUDED.catch_up, EXCLUDED.origin)`,
    [spec.name, spec.workflow, spec.cron.expression, spec.cron.timezone, spec.input, spec.overlap, spec.catchUp, spec.paused, nextAt, spec.origin],
  );
}

/**
 * Deletes the schedules that came from the `schedule` option of these workflows (registered here
 * without one now: the option was removed from the code). API schedules are never touched.
 * Returns the names deleted.
 */
export async function deleteWorkflowSchedules(db: Queryable, t: Tables, workflows: string[]): Promise<string[]> {
  if (workflows.length === 0) return [];
  const rows = await db.query(
    `DELETE FROM ${schedulesTable(t)} WHERE origin = 'workflow' AND name = ANY($1::text[]) AND workflow_name = name RETURNING name`,
    [workflows],
  );
  return rows.map((row) => row.name as string);
}

const infoColumns = `name, workflow_name, cron, timezone, input, overlap, catch_up, paused, next_at, last_slot, last_run_id, skipped, origin, created_at, updated_at`;

function toInfo(row: Record<string, unknown>): ScheduleInfo {
  return {
    name: row.name as string,
    workflow: row.workflow_name as string,
    cron: row.cron as string,
    timezone: row.timezone as string,
    input: row.input ?? undefined,
    overlap: row.overlap as ScheduleOverlap,
    catchUp: row.catch_up as ScheduleCatchUp,
    paused: row.paused as boolean,
    nextAt: (row.next_at as Date | null) ?? null,
    lastSlot: (row.last_slot as Date | null) ?? null,
    lastRunId: (row.last_run_id as string | null) ?? null,
    skipped: row.skipped as SkippedSlot[],
    origin: row.origin as ScheduleOrigin,
    createdAt: row.created_at as Date,
    updatedAt: row.updated_at as Date,
  };
}

export async function listSchedules(db: Queryable, t: Tables, name?: string): Promise<ScheduleInfo[]> {
  const rows = await db.query(
    `SELECT ${infoColumns} FROM ${schedulesTable(t)} ${name === undefined ? '' : 'WHERE name = $1'} ORDER BY name`,
    name === undefined ? [] : [name],
  );
  return rows.map(toInfo);
}

/** Locks one schedule (waiting for a firing that holds it) and returns it, or null. */
export async function lockSchedule(db: Queryable, t: Tables, name: string): Promise<ScheduleInfo | null> {
  const [row] = await db.query(`SELECT ${infoColumns} FROM ${schedulesTable(t)} WHERE name = $1 FOR UPDATE`, [name]);
  return row ? toInfo(row) : null;
}

/** pause/resume: sets `paused`, and on resume the next slot after now (slots passed while paused never fire). */
export async function setPaused(db: Queryable, t: Tables, p: { name: string; paused: boolean; nextAt?: Date | null }): Promise<void> {
  await db.query(
    `UPDATE ${schedulesTable(t)} SET paused = $2, next_at = CASE WHEN $3::boolean THEN $4::timestamptz ELSE next_at END, updated_at = now() WHERE name = $1`,
    [p.name, p.paused, p.nextAt !== undefined, p.nextAt ?? null],
  );
}

export async function deleteSchedule(db: Queryable, t: Tables, name: string): Promise<boolean> {
  const rows = await db.query(`DELETE FROM ${schedulesTable(t)} WHERE name = $1 RETURNING name`, [name]);
  return rows.length > 0;
}

/** trigger: the run it started becomes the schedule's last run (which `overlap` looks at). */
export async function setLastRun(db: Queryable, t: Tables, p: { name: string; runId: string }): Promise<void> {
  await db.query(`UPDATE ${schedulesTable(t)} SET last_run_id = $2, updated_at = now() WHERE name = $1`, [p.name, p.runId]);
}

/** A run a schedule started, for the viewer. */
export interface ScheduledRun {
  runId: string;
  status: string;
  scheduledFor: Date | null;
}

/**
 * The newest runs of each schedule (by slot, `limit` each): those whose idempotency key names it,
 * and its last run (a trigger's has no key).
 */
export async function recentRuns(db: Queryable, t: Tables, schedules: { name: string; workflow: string; lastRunId: string | null }[], limit: number): Promise<Map<string, ScheduledRun[]>> {
  const found = new Map<string, ScheduledRun[]>(schedules.map((s) => [s.name, []]));
  if (schedules.length === 0) return found;
  const rows = await db.query<{ name: string; run_id: string; status: string; scheduled_for: Date | null }>(
    `SELECT s.name, r.run_id, r.status, r.scheduled_for
     FROM unnest($1::text[], $2::text[], $3::text[]) AS s(name, workflow, last_run_id)
     CROSS JOIN LATERAL (
       SELECT run_id, status, scheduled_for FROM ${t.runs}
       WHERE workflow_name = s.workflow AND scheduled_for IS NOT NULL
         AND (starts_with(idempotency_key, 'schedule:' || s.name || ':') OR run_id = s.last_run_id)
       ORDER BY scheduled_for DESC, id DESC LIMIT $4
     ) r`,
    [schedules.map((s) => s.name), schedules.map((s) => s.workflow), schedules.map((s) => s.lastRunId), limit],
  );
  for (const row of rows) found.get(row.name)?.push({ runId: row.run_id, status: row.status, scheduledFor: row.scheduled_for });
  return found;
}
