import type { Transaction } from 'sequelize';
import { quoteIdent } from '../db/tables.js';
import type { BulkAction } from '../types.js';
import { recordAudit } from './audit.js';
import type { NewAuditEntry } from './audit.js';
import { checkFilter, selectionSql } from './bulk-filter.js';
import type { StoredFilter } from './bulk-filter.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';

/** Runs acted on per batch (one transaction each). */
export const BATCH_SIZE = 500;
/** Run ids a batch looks through at most, from the cursor on. */
const WINDOW = 20_000n;

/** What a batch did: moved the cursor on (`more`), found it at the end (`completed`), or found the operation no longer its own (`lost`). */
export type BatchOutcome = 'more' | 'completed' | 'lost';

interface OperationRow {
  action: BulkAction;
  filter: unknown;
  status: string;
  max_run_id: string;
  cursor: string;
  actor: string | null;
  reason: string | null;
  lease_owner: string | null;
}

interface RunRow {
  id: string;
  run_id: string;
  workflow_name: string;
  input: unknown;
  failed_step: string | null;
}

/**
 * One batch of operation `operationId`, in one transaction: the next runs of its selection after its
 * cursor (by id, up to its max_run_id), the action applied to them as set statements, one audit entry
 * per run acted on, and the cursor, the counts and `owner`'s lease moved on. The cursor moves in the
 * transaction that acts, so whatever crashes, no run is acted on twice and none is passed over.
 */
export function runBatch(ctx: OperatorContext, operationId: string, owner: string, leaseMs: number): Promise<BatchOutcome> {
  const { db } = ctx;
  const t = db.tables;
  const now = nowOf(ctx);
  return transaction(ctx, async (tx) => {
    // The operation row's lock: a batch and a takeover (bulk-runner.ts) take turns on it, so the owner
    // read here stays the owner until this commits, and two processes never act on it at once.
    const [op] = await db.select<OperationRow>(
      `SELECT action, filter, status, max_run_id::text, cursor::text, actor, reason, lease_owner FROM ${t.operations} WHERE id = $1 FOR UPDATE`,
      [operationId],
      tx,
    );
    if (!op || op.status !== 'running' || op.lease_owner !== owner) return 'lost';
    const cursor = BigInt(op.cursor);
    const max = BigInt(op.max_run_id);
    if (cursor >= max) {
      // Runs that left the selection before their batch (finished, cancelled with a parent) count as
      // done but not acted on, so a completed operation always has done >= total.
      await db.select(
        `UPDATE ${t.operations} SET status = 'completed', completed_at = ${now}, updated_at = ${now}, lease_owner = NULL, lease_expires_at = NULL,
           total = greatest(total, done), done = greatest(done, total), failed = failed + greatest(total - done, 0)
         WHERE id = $1 RETURNING id`,
        [operationId],
        tx,
      );
      return 'completed';
    }
    // The next runs of the selection in a window of ids: walking the primary key, a batch reads at
    // most WINDOW rows however few runs the filter selects (an index on the filter's columns would
    // read every selected run, each batch, to sort them by id).
    const windowEnd = cursor + WINDOW < max ? cursor + WINDOW : max;
    const filter = checkFilter(op.filter);
    const bind: unknown[] = [String(cursor), String(windowEnd)];
    const candidates = await db.select<{ id: string }>(
      `SELECT r.id::text FROM ${t.runs} r WHERE r.id > $1::bigint AND r.id <= $2::bigint AND ${selectionSql(op.action, filter, bind)}
       ORDER BY r.id LIMIT ${BATCH_SIZE}`,
      bind,
      tx,
    );
    const ids = candidates.map((row) => row.id);
    const acted = ids.length === 0 ? [] : await act(ctx, tx, op, operationId, ids, filter);
    await recordAudit(ctx, tx, acted);
    await db.select(
      `UPDATE ${t.operations} SET cursor = $2::bigint, done = done + $3, failed = failed + $4, lease_expires_at = ${now} + $5 * interval '1 millisecond', updated_at = ${now}
       WHERE id = $1 RETURNING id`,
      [
        operationId,
        ids.length === BATCH_SIZE ? ids[ids.length - 1] : String(windowEnd),
        ids.length,
        ids.length - acted.length,
        leaseMs,
      ],
      tx,
    );
    return 'more';
  });
}

/** Applies the action to the runs `ids` that still match the selection; returns an audit entry for each. */
async function act(
  ctx: OperatorContext,
  tx: Transaction,
  op: OperationRow,
  operationId: string,
  ids: string[],
  filter: StoredFilter,
): Promise<NewAuditEntry[]> {
  const { db } = ctx;
  const t = db.tables;
  // Re-checked under the runs' locks (Postgres re-evaluates the condition on a row changed since the
  // candidates were read): a run that finished meanwhile is left alone and counted as failed. Locked
  // children first (descending id), the order durable_flow_cancel and a finishing child take them in.
  // A replay changes nothing in the run it copies: no lock.
  const bind: unknown[] = [ids];
  const runs = await db.select<RunRow>(
    `SELECT r.id::text, r.run_id, r.workflow_name, r.input, r.error->>'step' AS failed_step FROM ${t.runs} r
     WHERE r.id = ANY($1::bigint[]) AND ${selectionSql(op.action, filter, bind)} ORDER BY r.id DESC ${op.action === 'replay' ? '' : 'FOR NO KEY UPDATE OF r'}`,
    bind,
    tx,
  );
  runs.reverse();
  const who = { actor: op.actor, reason: op.reason, operationId };
  const entry = (run: RunRow, extra: Partial<NewAuditEntry> = {}): NewAuditEntry => ({
    ...who,
    action: op.action,
    workflow: run.workflow_name,
    runId: run.run_id,
    ...extra,
  });
  const runIds = runs.map((run) => run.id);
  if (runs.length === 0) return [];
  if (op.action === 'cancel') {
    await db.select(
      `SELECT ${quoteIdent(t.schema)}.durable_flow_cancel($1::bigint[], $2, $3) AS cancelled`,
      [runIds, op.reason ?? `Cancelled by bulk operation ${operationId}`, ctx.clockOffsetMs()],
      tx,
    );
    return runs.map((run) => entry(run));
  }
  if (op.action === 'retry') {
    await retryRuns(ctx, tx, runIds);
    return runs.map((run) => entry(run, { stepName: run.failed_step }));
  }
  const entries: NewAuditEntry[] = [];
  for (const run of runs) {
    const newRunId = await ctx.startRun(run.workflow_name, run.input ?? undefined, { transaction: tx, replayOf: run.run_id });
    entries.push(entry(run, { details: { newRunId } }));
  }
  return entries;
}

/**
 * flow.retry (runs.ts) for a set of failed runs in three statements: each back in the queue with its
 * lease epoch bumped, the step whose error failed it reset, that step's waits removed.
 */
async function retryRuns(ctx: OperatorContext, tx: Transaction, runIds: string[]): Promise<void> {
  const t = ctx.db.tables;
  await ctx.db.select(
    `WITH r AS (
       UPDATE ${t.runs} SET status = 'ready', wake_at = ${nowOf(ctx)}, failed_at = NULL, claim_count = 0, lease_epoch = lease_epoch + 1, updated_at = clock_timestamp()
       WHERE id = ANY($1::bigint[]) AND status = 'failed'
       RETURNING id, error->>'step' AS step),
     s AS (
       UPDATE ${t.steps} st SET status = 'pending', attempts = 0, result = NULL, completed_at = NULL,
         metadata = st.metadata - 'timedOut' - 'retryAt', updated_at = clock_timestamp()
       FROM r WHERE st.workflow_run_id = r.id AND st.name = r.step AND st.status = 'failed'
       RETURNING st.id, st.workflow_run_id),
     w AS (DELETE FROM ${t.waits} w USING s WHERE w.workflow_run_id = s.workflow_run_id AND w.workflow_step_id = s.id RETURNING 1)
     SELECT (SELECT count(*) FROM r)::int AS runs, (SELECT count(*) FROM w)::int AS waits`,
    [runIds],
    tx,
  );
}
