import type { Transaction } from 'sequelize';
import { checkInteger, invalidOption } from '../config.js';
import type { AuditAction, AuditEntry, AuditQuery } from '../types.js';
import { fromSequelizeTransaction } from '../db/queryable.js';
import type { Queryable, SequelizeTransactionLike } from '../db/queryable.js';
import { nowSql } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import type { OperatorContext } from './context.js';
import { AUDIT_ACTIONS } from '../read/audit.js';

/** An entry to append: who did what, on which run and step, and why. */
export interface NewAuditEntry {
  actor: string | null;
  action: AuditAction;
  workflow?: string | null;
  runId?: string | null;
  stepName?: string | null;
  operationId?: string | null;
  reason: string | null;
  details?: Record<string, unknown>;
}

/**
 * Appends entries to the audit trail in `transaction`, the one of the action they record: an action
 * that rolls back leaves no entry, and one that commits always has its entry. `at` is the flow's clock.
 */
export async function recordAudit(ctx: OperatorContext, transaction: Transaction, entries: NewAuditEntry[]): Promise<void> {
  await insertAudit(fromSequelizeTransaction(transaction as unknown as SequelizeTransactionLike), ctx.db.tables, ctx.clockOffsetMs(), entries);
}

/** recordAudit on any connection inside the action's transaction (the schedules' pg clients). */
export async function insertAudit(db: Queryable, tables: Tables, offsetMs: number, entries: NewAuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.query(
    `INSERT INTO ${tables.audit} (at, actor, action, workflow_name, run_id, step_name, operation_id, reason, details)
     SELECT ${nowSql(String(Number(offsetMs)))}, x.actor, x.action, x.workflow_name, x.run_id, x.step_name, x.operation_id, x.reason,
            coalesce(x.details, '{}')
     FROM jsonb_to_recordset($1::jsonb) AS x(actor text, action text, workflow_name text, run_id text, step_name text,
       operation_id text, reason text, details jsonb)
     RETURNING id`,
    [
      JSON.stringify(
        entries.map((e) => ({
          actor: e.actor,
          action: e.action,
          workflow_name: e.workflow ?? null,
          run_id: e.runId ?? null,
          step_name: e.stepName ?? null,
          operation_id: e.operationId ?? null,
          reason: e.reason,
          details: e.details ?? {},
        })),
      ),
    ],
  );
}


/** flow.audit(): the entries matching `query`, newest first (page with `before`). */
export async function listAudit(ctx: OperatorContext, query: AuditQuery = {}): Promise<AuditEntry[]> {
  if (typeof query !== 'object' || query === null) throw invalidOption('audit query', query, 'an object { runId?, workflow?, operationId?, action?, actor?, before?, limit? }');
  const where: string[] = [];
  const bind: unknown[] = [];
  const add = (column: string, value: unknown, name: string) => {
    if (value === undefined) return;
    if (typeof value !== 'string' || value.length === 0) throw invalidOption(name, value, 'a non-empty string');
    bind.push(value);
    where.push(`${column} = $${bind.length}`);
  };
  add('run_id', query.runId, 'runId');
  add('workflow_name', query.workflow, 'workflow');
  add('operation_id', query.operationId, 'operationId');
  add('actor', query.actor, 'actor');
  if (query.action !== undefined && !AUDIT_ACTIONS.includes(query.action)) throw invalidOption('action', query.action, `one of ${AUDIT_ACTIONS.join(', ')}`);
  add('action', query.action, 'action');
  if (query.before !== undefined) {
    if (typeof query.before !== 'string' || !/^\d{1,19}$/.test(query.before)) throw invalidOption('before', query.before, 'the id of an audit entry');
    bind.push(query.before);
    where.push(`a.id < $${bind.length}::bigint`);
  }
  const limit = query.limit === undefined ? 100 : checkInteger('limit', query.limit, 1, 1000);
  bind.push(limit);
  const rows = await ctx.db.select<Record<string, unknown>>(
    // ORDER BY the table's bigint id (a.id), not the text column of the same name the list answers.
    `SELECT a.id::text AS id, at, actor, action, workflow_name, run_id, step_name, operation_id, reason, details
     FROM ${ctx.db.tables.audit} a ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY a.id DESC LIMIT $${bind.length}`,
    bind,
  );
  return rows.map((row) => ({
    id: row.id as string,
    at: new Date(row.at as string | Date),
    actor: (row.actor as string | null) ?? null,
    action: row.action as AuditAction,
    workflow: (row.workflow_name as string | null) ?? null,
    runId: (row.run_id as string | null) ?? null,
    stepName: (row.step_name as string | null) ?? null,
    operationId: (row.operation_id as string | null) ?? null,
    reason: (row.reason as string | null) ?? null,
    details: (row.details as Record<string, unknown>) ?? {},
  }));
}
