import type { Transaction } from 'sequelize';
import { DurableFlowError } from '../errors.js';
import { LOCK_NAMESPACE, quoteIdent } from '../db/tables.js';
import { encodeJson } from '../json.js';
import type { RunStatus, StepStatus, WaitStatus } from '../types.js';
import { recordAudit } from './audit.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';

/** `value` as JSON text (undefined: none); one that cannot be stored is INVALID_ARGUMENT naming it. */
function encode(ctx: OperatorContext, value: unknown, what: string): string | undefined {
  try {
    return encodeJson(value, what, ctx.maxPayloadSize);
  } catch (error) {
    throw new DurableFlowError('INVALID_ARGUMENT', (error as Error).message, { cause: error });
  }
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`${what}\` to be a non-empty string, got ${typeof name}`);
  return name;
}

interface RunRow {
  id: string;
  status: RunStatus;
  workflow: string;
  leased: boolean;
}

/** The run `runId`, locked FOR UPDATE (the lock every operator action on a run takes). */
async function lockRun(ctx: OperatorContext, runId: string, transaction: Transaction): Promise<RunRow> {
  const [run] = await ctx.db.select<RunRow>(
    `SELECT id::text, status, workflow_name AS workflow, lease_owner IS NOT NULL AS leased FROM ${ctx.db.tables.runs} WHERE run_id = $1 FOR UPDATE`,
    [runId],
    transaction,
  );
  if (!run) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
  return run;
}

function refuseFinished(runId: string, run: RunRow, allowed: RunStatus[] = []): void {
  if (['completed', 'failed', 'cancelled'].includes(run.status) && !allowed.includes(run.status)) {
    throw new DurableFlowError('INVALID_STATE', `Run ${runId} is ${run.status}`);
  }
}

/** Makes a suspended run due now, as notify does: a leased run finds its step settled when it next suspends; a paused one stays paused. */
const wakeSuspendedSql = (ctx: OperatorContext): string => `
UPDATE ${ctx.db.tables.runs} SET status = 'ready', wake_at = ${nowOf(ctx)}, updated_at = clock_timestamp()
WHERE id = $1 AND lease_owner IS NULL AND status IN ('waiting', 'sleeping', 'retrying')
RETURNING id`;

interface WaitRow {
  id: string;
  status: WaitStatus;
  event_name: string;
  watched_run_id: string | null;
  expired: boolean;
}

/**
 * flow.resolveWait (see facade.ts): the run's pending wait of step `stepName` is matched and its step
 * succeeds with `payload` (an event wait), or with the outcome of its watched run completed with
 * `payload` as result (step.invoke, step.waitForWorkflow), as notify and a finishing run write them.
 *
 * Locks, in notify's order, so that resolveWait and a notify (or a finishing watched run) of this wait
 * take turns and only the first matches it: the event name's advisory lock (or the watched run's row),
 * then the run (FOR UPDATE), then the wait rows (FOR UPDATE).
 */
export async function resolveWait(ctx: OperatorContext, runId: string, stepName: string, payload: unknown, who: Who): Promise<void> {
  checkName(runId, 'runId');
  checkName(stepName, 'stepName');
  const payloadText = encode(ctx, payload === undefined ? {} : payload, `The payload for wait "${stepName.slice(0, 80)}"`)!;
  const { db } = ctx;
  const t = db.tables;
  await transaction(ctx, async (transaction) => {
    // Unlocked first: which lock to take (a wait's event name and watched run never change).
    const found = await db.select<{ run_id: string; step_id: string | null; event_name: string | null; watched_run_id: string | null; group_mode: string | null }>(
      `SELECT r.id::text AS run_id, s.id::text AS step_id, w.event_name, w.watched_run_id, w.group_mode
       FROM ${t.runs} r
       LEFT JOIN ${t.steps} s ON s.workflow_run_id = r.id AND s.name = $2
       LEFT JOIN ${t.waits} w ON w.workflow_step_id = s.id
       WHERE r.run_id = $1 ORDER BY w.id DESC LIMIT 1`,
      [runId, stepName],
      transaction,
    );
    const first = found[0];
    if (!first) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
    if (first.step_id === null) throw new DurableFlowError('WAIT_NOT_FOUND', `Run ${runId} has no step "${stepName}"`);
    if (first.event_name === null) throw new DurableFlowError('WAIT_NOT_FOUND', `Step "${stepName}" of run ${runId} has no wait`);
    if (first.group_mode !== null) {
      throw new DurableFlowError(
        'INVALID_ARGUMENT',
        `Step "${stepName}" of run ${runId} is a step.wait${first.group_mode === 'any' ? 'Any' : 'All'} with several branches: resolveWait does not choose a branch; send the event a branch waits for (flow.notify), or cancel or rerun the run`,
      );
    }
    if (first.watched_run_id === null) {
      await db.select(`SELECT ${quoteIdent(t.schema)}.durable_flow_lock_events($1, ARRAY[$2::text])`, [LOCK_NAMESPACE, first.event_name], transaction);
    } else {
      // The watched run cannot finish (its trigger matching this wait) while we hold its row.
      await db.select(`SELECT 1 FROM ${t.runs} WHERE run_id = $1 FOR SHARE`, [first.watched_run_id], transaction);
    }
    const run = await lockRun(ctx, runId, transaction);
    const waits = await db.select<WaitRow>(
      `SELECT w.id::text, w.status, w.event_name, w.watched_run_id,
              (w.timeout_at IS NOT NULL AND w.timeout_at <= ${nowOf(ctx)}) AS expired
       FROM ${t.waits} w WHERE w.workflow_step_id = $1 ORDER BY w.id DESC FOR UPDATE`,
      [first.step_id],
      transaction,
    );
    const wait = waits.find((w) => w.status === 'pending');
    if (!wait) {
      const statuses = waits.map((w) => (w.status === 'timed_out' ? 'timed out' : w.status));
      throw new DurableFlowError('WAIT_NOT_FOUND', `Step "${stepName}" of run ${runId} has no pending wait: its wait is ${statuses.join(', ') || 'gone'}`);
    }
    if (wait.expired) throw new DurableFlowError('WAIT_NOT_FOUND', `Step "${stepName}" of run ${runId} has no pending wait: its wait timed out`);
    refuseFinished(runId, run);
    let result = payloadText;
    if (wait.watched_run_id !== null) {
      const [watched] = await db.select<{ workflow: string }>(`SELECT workflow_name AS workflow FROM ${t.runs} WHERE run_id = $1`, [wait.watched_run_id], transaction);
      const outcome = { runId: wait.watched_run_id, workflow: watched?.workflow ?? null, status: 'completed', ...(payload === undefined ? {} : { result: JSON.parse(payloadText) }) };
      result = JSON.stringify(outcome);
    }
    await db.select(
      `WITH w AS (UPDATE ${t.waits} SET status = 'matched', updated_at = clock_timestamp() WHERE id = $1 RETURNING workflow_step_id)
       UPDATE ${t.steps} s SET status = 'succeeded', result = $2::jsonb, error = NULL, completed_at = ${nowOf(ctx)},
              attempts = s.attempts + 1, updated_at = clock_timestamp()
       FROM w WHERE s.id = w.workflow_step_id RETURNING s.id`,
      [wait.id, result],
      transaction,
    );
    const woken = await db.select(wakeSuspendedSql(ctx), [run.id], transaction);
    await recordAudit(ctx, transaction, [
      { ...who, action: 'resolve_wait', workflow: run.workflow, runId, stepName, details: { runStatus: run.status, woken: woken.length > 0 } },
    ]);
  });
}

/**
 * A run back to work after its step was completed. Failed: back in the queue as retry() does it. A
 * worker holds it (running the step's retry attempt right now): its lease is taken back and the epoch
 * bumped, so nothing that execution writes later lands (commitBatch's fence); claim_count is kept, so
 * the next claim resumes under the old execution's mark, as after a crash. A pause asked of that worker
 * is taken here. Suspended and not leased: due now. Paused, or already due: left as it is.
 */
const resumeAfterCompleteSql = (ctx: OperatorContext): string => `
UPDATE ${ctx.db.tables.runs} SET
  status = CASE WHEN status = 'failed' OR NOT pause_requested THEN 'ready' ELSE 'paused' END,
  wake_at = CASE WHEN status <> 'failed' AND pause_requested THEN NULL ELSE ${nowOf(ctx)} END,
  pause_requested = CASE WHEN status = 'failed' THEN pause_requested ELSE false END,
  error = CASE WHEN status = 'failed' THEN NULL ELSE error END,
  failed_at = CASE WHEN status = 'failed' THEN NULL ELSE failed_at END,
  claim_count = CASE WHEN status = 'failed' THEN 0 ELSE claim_count END,
  lease_epoch = CASE WHEN status = 'failed' OR lease_owner IS NOT NULL THEN lease_epoch + 1 ELSE lease_epoch END,
  lease_owner = NULL, lease_expires_at = NULL,
  updated_at = clock_timestamp()
WHERE id = $1 AND (status = 'failed' OR lease_owner IS NOT NULL OR status IN ('waiting', 'sleeping', 'retrying'))
RETURNING status`;

/**
 * flow.completeStep (see facade.ts): a failed or retrying step succeeds with `result` (no attempt
 * after it), and its run goes on from it. Locks the run (FOR UPDATE) first, then the step.
 */
export async function completeStep(ctx: OperatorContext, runId: string, stepName: string, result: unknown, who: Who): Promise<void> {
  checkName(runId, 'runId');
  checkName(stepName, 'stepName');
  const resultText = encode(ctx, result, `The result for step "${stepName.slice(0, 80)}"`) ?? null;
  const { db } = ctx;
  const t = db.tables;
  await transaction(ctx, async (transaction) => {
    const run = await lockRun(ctx, runId, transaction);
    const [step] = await db.select<{ id: string; status: StepStatus }>(
      `SELECT id::text, status FROM ${t.steps} WHERE workflow_run_id = $1 AND name = $2 FOR UPDATE`,
      [run.id, stepName],
      transaction,
    );
    if (!step) throw new DurableFlowError('STEP_NOT_FOUND', `Run ${runId} has no step "${stepName}"`);
    if (step.status !== 'failed' && step.status !== 'retrying') {
      throw new DurableFlowError('INVALID_STATE', `Step "${stepName}" of run ${runId} is ${step.status}; only a failed or retrying step can be completed`);
    }
    refuseFinished(runId, run, ['failed']);
    await db.select(
      `UPDATE ${t.steps} SET status = 'succeeded', result = $2::jsonb, error = NULL, metadata = metadata - 'retryAt',
              completed_at = ${nowOf(ctx)}, updated_at = clock_timestamp()
       WHERE id = $1 RETURNING id`,
      [step.id, resultText],
      transaction,
    );
    const [moved] = await db.select<{ status: RunStatus }>(resumeAfterCompleteSql(ctx), [run.id], transaction);
    await recordAudit(ctx, transaction, [
      {
        ...who,
        action: 'complete_step',
        workflow: run.workflow,
        runId,
        stepName,
        details: { stepStatus: step.status, runStatus: run.status, ...(run.leased ? { leaseTaken: true } : {}), ...(moved ? { newRunStatus: moved.status } : {}) },
      },
    ]);
  });
}
