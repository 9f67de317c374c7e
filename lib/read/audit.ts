import { Op } from 'sequelize';
import type { WhereOptions } from 'sequelize';
import type { AuditAction, AuditEntry } from '../types.js';
import type { ReadDb } from './db.js';

/** Every action the audit trail records, each once (a Record, so a new action cannot be left out). */
const ACTIONS: Record<AuditAction, true> = {
  cancel: true, retry: true, replay: true, rerun_from: true, pause: true, resume: true, pause_workflow: true, resume_workflow: true,
  resolve_wait: true, complete_step: true, bulk: true,
  schedule_pause: true, schedule_resume: true, schedule_trigger: true, schedule_backfill: true, schedule_delete: true,
  repin: true,
};
/** The Audit page's action filter offers these. */
export const AUDIT_ACTIONS = Object.keys(ACTIONS) as AuditAction[];

/** Which entries the viewer reads: every given field must match; `before` pages by id. */
export interface AuditFilter {
  runId?: string | null;
  workflow?: string | null;
  actor?: string | null;
  action?: AuditAction | null;
  operationId?: string | null;
  /** Entries with a smaller id than this (the last id of the previous page). */
  before?: string | null;
  limit: number;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** The `before` of the next (older) page, or null on the last one. */
  next: string | null;
}

/**
 * The audit trail for the viewer, newest first, through the AuditEntry model on the viewer's
 * connections: a run's entries use its index (run_id, id), an operation's (operation_id, id), the
 * rest walk the primary key down from `before`.
 */
export async function listAuditEntries(db: ReadDb, filter: AuditFilter): Promise<AuditPage> {
  const where: Record<string, unknown> = {};
  if (filter.runId) where.runId = filter.runId;
  if (filter.workflow) where.workflowName = filter.workflow;
  if (filter.actor) where.actor = filter.actor;
  if (filter.action) where.action = filter.action;
  if (filter.operationId) where.operationId = filter.operationId;
  if (filter.before) where.id = { [Op.lt]: filter.before };
  const rows = await db.models.AuditEntry.findAll({ where: where as WhereOptions, order: [['id', 'DESC']], limit: filter.limit + 1 });
  const entries = rows.slice(0, filter.limit).map((row) => ({
    id: String(row.get('id')),
    at: new Date(row.get('at') as Date),
    actor: (row.get('actor') as string | null) ?? null,
    action: row.get('action') as AuditAction,
    workflow: (row.get('workflowName') as string | null) ?? null,
    runId: (row.get('runId') as string | null) ?? null,
    stepName: (row.get('stepName') as string | null) ?? null,
    operationId: (row.get('operationId') as string | null) ?? null,
    reason: (row.get('reason') as string | null) ?? null,
    details: (row.get('details') as Record<string, unknown> | null) ?? {},
  }));
  return { entries, next: rows.length > filter.limit ? entries[entries.length - 1]!.id : null };
}

/** Paused workflows by name (the WorkflowPause model): who paused each, when and why. */
export async function listWorkflowPauses(db: ReadDb): Promise<Map<string, { actor: string | null; reason: string | null; pausedAt: Date }>> {
  const rows = await db.models.WorkflowPause.findAll({ order: [['workflowName', 'ASC']] });
  return new Map(
    rows.map((row) => [
      String(row.get('workflowName')),
      { actor: (row.get('actor') as string | null) ?? null, reason: (row.get('reason') as string | null) ?? null, pausedAt: new Date(row.get('pausedAt') as Date) },
    ]),
  );
}
