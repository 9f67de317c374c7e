import { literal } from 'sequelize';
import type { ReadDb } from './db.js';

/** The records a change notification names, by the letter of their table: r(uns), s(teps), w(aits), e(vents), l(ogs). */
export type RecordLetter = 'r' | 's' | 'w' | 'e' | 'l';
export type RecordIds = Record<RecordLetter, string[]>;

/**
 * The live feed's read-backs: the changed records as subscribers see them (camelCase fields, ids as
 * text), keyed `<letter>:<id>`, each with `__run_id` and `__workflow` of its run. A record deleted
 * since its notification is absent.
 */
export async function changedRecords(
  db: ReadDb,
  ids: Record<RecordLetter, string[]>,
): Promise<Map<string, Record<string, unknown>>> {
  const t = db.tables;
  const queries: Record<RecordLetter, string> = {
    r: `SELECT r.id, r.run_id AS "runId", r.workflow_name AS workflow, r.status, r.queue_name AS queue, r.priority,
                 r.parent_run_id AS "parentRunId", r.attempts, r.error, r.wake_at AS "wakeAt",
                 r.lease_owner IS NOT NULL AND r.lease_expires_at > now() AS "leaseHeld",
                 r.lease_expires_at AS "leaseExpiresAt", r.started_at AS "startedAt",
                 r.interrupted_at AS "interruptedAt", r.completed_at AS "completedAt", r.failed_at AS "failedAt",
                 r.cancelled_at AS "cancelledAt", r.created_at AS "createdAt", r.updated_at AS "updatedAt", r.tags,
                 r.run_id AS __run_id, r.workflow_name AS __workflow
          FROM ${t.runs} r WHERE r.id = ANY($1::bigint[])`,
    s: `SELECT s.id, s.workflow_run_id AS "workflowRunId", s.name, s.kind, s.status, s.attempts, s.position,
                 s.result, s.error, s.cursor, s.metadata, s.started_at AS "startedAt", s.completed_at AS "completedAt",
                 s.created_at AS "createdAt", s.updated_at AS "updatedAt",
                 r.run_id AS __run_id, r.workflow_name AS __workflow
          FROM ${t.steps} s JOIN ${t.runs} r ON r.id = s.workflow_run_id WHERE s.id = ANY($1::bigint[])`,
    w: `SELECT w.id, w.workflow_run_id AS "workflowRunId", w.workflow_step_id AS "workflowStepId",
                 w.workflow_event_id AS "workflowEventId", w.event_name AS "eventName", w.status, w.match,
                 w.timeout_at AS "timeoutAt", w.created_at AS "createdAt", w.updated_at AS "updatedAt",
                 r.run_id AS __run_id, r.workflow_name AS __workflow
          FROM ${t.waits} w JOIN ${t.runs} r ON r.id = w.workflow_run_id WHERE w.id = ANY($1::bigint[])`,
    e: `SELECT e.id, e.event_id AS "eventId", e.name, e.payload, e.source, e.occurred_at AS "occurredAt",
                 e.created_at AS "createdAt", e.updated_at AS "updatedAt"
          FROM ${t.events} e WHERE e.id = ANY($1::bigint[])`,
    l: `SELECT l.id, l.workflow_run_id AS "workflowRunId", l.workflow_step_id AS "workflowStepId", l.level,
                 l.message, l.data, l.created_at AS "createdAt", l.updated_at AS "updatedAt",
                 r.run_id AS __run_id, r.workflow_name AS __workflow
          FROM ${t.logs} l JOIN ${t.runs} r ON r.id = l.workflow_run_id WHERE l.id = ANY($1::bigint[])`,
  };
  const records = new Map<string, Record<string, unknown>>();
  await Promise.all(
    (Object.keys(ids) as RecordLetter[])
      .filter((letter) => ids[letter].length > 0)
      .map(async (letter) => {
        const rows = await db.select<{ id: string | number }>(queries[letter], [[...new Set(ids[letter])]]);
        for (const row of rows) records.set(`${letter}:${row.id}`, { ...row, id: String(row.id) });
      }),
  );
  return records;
}

/**
 * The feed's one write: live mode on (the triggers NOTIFY changes only while `live_until` is ahead)
 * for at least `windowMs` more, never shortening what another process asked for.
 */
export async function keepLive(db: ReadDb, windowMs: number): Promise<void> {
  await db.models.Live.update(
    { liveUntil: literal(`greatest(coalesce(live_until, now()), now() + ${Number(windowMs)} * interval '1 millisecond')`) },
    { where: { id: 1 } },
  );
}
