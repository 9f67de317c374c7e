import type { RunStatus, ScheduleCatchUp, ScheduleInfo, ScheduleOrigin, ScheduleOverlap, SkippedSlot } from '../types.js';
import type { ReadDb } from './db.js';

/** A run a schedule started, for the viewer. */
export interface ScheduledRun {
  runId: string;
  status: RunStatus;
  scheduledFor: Date | null;
}

/** A schedule as the viewer's Schedules page reads it: the row, and its newest runs by slot. */
export interface ScheduleView extends ScheduleInfo {
  runs: ScheduledRun[];
}

/**
 * Every schedule by name (the Schedule model), each with its `recent` newest runs by slot: those whose
 * idempotency key names it (fired and backfilled slots) and its last run (a trigger's has no key). The
 * runs in one statement for every schedule, SQL since the models cannot say a lateral join.
 */
export async function listScheduleViews(db: ReadDb, recent: number): Promise<ScheduleView[]> {
  const rows = await db.models.Schedule.findAll({ order: [['name', 'ASC']] });
  const schedules: ScheduleView[] = rows.map((row) => ({
    name: row.get('name') as string,
    workflow: row.get('workflowName') as string,
    cron: row.get('cron') as string,
    timezone: row.get('timezone') as string,
    input: row.get('input') ?? undefined,
    overlap: row.get('overlap') as ScheduleOverlap,
    catchUp: row.get('catchUp') as ScheduleCatchUp,
    paused: row.get('paused') as boolean,
    nextAt: (row.get('nextAt') as Date | null) ?? null,
    lastSlot: (row.get('lastSlot') as Date | null) ?? null,
    lastRunId: (row.get('lastRunId') as string | null) ?? null,
    skipped: (row.get('skipped') as SkippedSlot[] | null) ?? [],
    origin: row.get('origin') as ScheduleOrigin,
    createdAt: row.get('createdAt') as Date,
    updatedAt: row.get('updatedAt') as Date,
    runs: [],
  }));
  if (schedules.length === 0 || recent <= 0) return schedules;
  const runs = await db.select<{ name: string; run_id: string; status: RunStatus; scheduled_for: Date | null }>(
    `SELECT s.name, r.run_id, r.status, r.scheduled_for
     FROM unnest($1::text[], $2::text[], $3::text[]) AS s(name, workflow, last_run_id)
     CROSS JOIN LATERAL (
       SELECT id, run_id, status, scheduled_for FROM ${db.tables.runs}
       WHERE workflow_name = s.workflow AND scheduled_for IS NOT NULL
         AND (starts_with(idempotency_key, 'schedule:' || s.name || ':') OR run_id = s.last_run_id)
       ORDER BY scheduled_for DESC, id DESC LIMIT $4
     ) r
     ORDER BY s.name, r.scheduled_for DESC, r.id DESC`,
    [schedules.map((s) => s.name), schedules.map((s) => s.workflow), schedules.map((s) => s.lastRunId), recent],
  );
  const byName = new Map(schedules.map((s) => [s.name, s]));
  for (const run of runs) byName.get(run.name)?.runs.push({ runId: run.run_id, status: run.status, scheduledFor: run.scheduled_for });
  return schedules;
}
