import { randomUUID } from 'node:crypto';
import type { StoredError } from '../errors.js';
import type { BulkAction, BulkFilter, OperationInfo, OperationStatus } from '../types.js';
import { recordAudit } from './audit.js';
import { checkAction, checkFilter, selectionSql } from './bulk-filter.js';
import { BulkRunner } from './bulk-runner.js';
import type { Queryable } from './bulk-runner.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';

/** The runner of each flow (one per flow: its operator context), made at first use. */
const runners = new WeakMap<OperatorContext, BulkRunner>();

function runnerFor(ctx: OperatorContext): BulkRunner {
  let runner = runners.get(ctx);
  if (!runner) runners.set(ctx, (runner = new BulkRunner(ctx)));
  return runner;
}

/** The flow's running workers changed in number: while there is one, it takes over abandoned operations (polling through `pool`). */
export function bulkWorkers(ctx: OperatorContext, count: number, pool: Queryable): void {
  runnerFor(ctx).workers(count, pool);
}

/** flow.close(): stops after the batch in flight (the operation goes on in another process). */
export async function stopBulk(ctx: OperatorContext | undefined): Promise<void> {
  if (ctx) await runners.get(ctx)?.stop();
}

/**
 * flow.bulk (see facade.ts): stores the operation (its selection counted up to the newest run now,
 * so runs created later are never included) with its audit entry, in one transaction, then works on
 * it in this process in the background.
 */
export async function startBulk(
  ctx: OperatorContext,
  action: BulkAction,
  filter: BulkFilter,
  who: Who,
): Promise<{ operationId: string; total: number }> {
  const checkedAction = checkAction(action);
  const stored = checkFilter(filter);
  const operationId = `op_${randomUUID()}`;
  const { db } = ctx;
  const now = nowOf(ctx);
  const total = await transaction(ctx, async (tx) => {
    const bind: unknown[] = [operationId, checkedAction, JSON.stringify(stored), who.actor, who.reason];
    const selection = selectionSql(checkedAction, stored, bind);
    const [row] = await db.select<{ total: number }>(
      `WITH m AS (SELECT coalesce(max(id), 0) AS max_id FROM ${db.tables.runs})
       INSERT INTO ${db.tables.operations} (id, action, filter, total, max_run_id, actor, reason, created_at, updated_at)
       SELECT $1, $2, $3::jsonb, (SELECT count(*) FROM ${db.tables.runs} r WHERE r.id <= m.max_id AND ${selection}), m.max_id, $4, $5, ${now}, ${now}
       FROM m RETURNING total`,
      bind,
      tx,
    );
    await recordAudit(ctx, tx, [
      { ...who, action: 'bulk', operationId, details: { bulkAction: checkedAction, filter: stored, total: row!.total } },
    ]);
    return row!.total;
  });
  runnerFor(ctx).work();
  return { operationId, total };
}

interface OperationRow {
  id: string;
  action: BulkAction;
  status: OperationStatus;
  total: number;
  done: number;
  failed: number;
  filter: Record<string, unknown>;
  actor: string | null;
  reason: string | null;
  error: StoredError | null;
  created_at: string | Date;
  updated_at: string | Date;
  completed_at: string | Date | null;
}

/** flow.operation (see facade.ts): null when there is none. One primary-key read. */
export async function getOperation(ctx: OperatorContext, operationId: string): Promise<OperationInfo | null> {
  if (typeof operationId !== 'string') return null;
  const [row] = await ctx.db.select<OperationRow>(
    `SELECT id, action, status, total, done, failed, filter, actor, reason, error, created_at, updated_at, completed_at
     FROM ${ctx.db.tables.operations} WHERE id = $1`,
    [operationId],
  );
  if (!row) return null;
  return {
    id: row.id,
    action: row.action,
    status: row.status,
    total: row.total,
    done: row.done,
    failed: row.failed,
    filter: row.filter,
    actor: row.actor,
    reason: row.reason,
    error: row.error,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    completedAt: row.completed_at === null ? null : new Date(row.completed_at),
  };
}
