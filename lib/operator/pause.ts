import type { Transaction } from 'sequelize';
import { invalidOption } from '../config.js';
import { quoteIdent } from '../db/tables.js';
import { DurableFlowError } from '../errors.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { RunStatus } from '../types.js';
import { MAX_ID } from '../workflow/ids.js';
import { recordAudit } from './audit.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';

interface LockedRun {
  id: string;
  workflow_name: string;
  status: RunStatus;
  pause_requested: boolean;
  live_lease: boolean;
  concurrency_key: string | null;
  wake_at: Date | null;
}

/** The run, locked FOR UPDATE (an action, a worker's commit and a claim take turns on it); RUN_NOT_FOUND if none. */
async function lockRun(ctx: OperatorContext, transaction: Transaction, runId: string): Promise<LockedRun> {
  if (typeof runId !== 'string' || runId.length === 0) throw invalidOption('runId', runId, 'a run id');
  const [run] = await ctx.db.select<LockedRun>(
    `SELECT id, workflow_name, status, pause_requested, concurrency_key, wake_at,
            lease_owner IS NOT NULL AND lease_expires_at > ${nowOf(ctx)} AS live_lease
     FROM ${ctx.db.tables.runs} WHERE run_id = $1 FOR UPDATE`,
    [runId],
    transaction,
  );
  if (!run) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
  return run;
}

/**
 * flow.pause(): a run no worker holds becomes 'paused' at once (no wake_at: never claimed; its lease
 * epoch bumped, fencing a worker whose lease ran out). A run a worker holds gets `pause_requested`:
 * its execution starts no step after its next write, and the write that ends it (a hand-back, a
 * suspension) leaves it 'paused' (commitBatch, suspendRunSql, releaseRunsSql). Events that match its
 * waits meanwhile are recorded (the wait is matched) but do not wake it. Returns false when there was
 * nothing to pause (finished, paused, or its pause already asked for).
 */
export async function pauseRun(ctx: OperatorContext, runId: string, who: Who): Promise<boolean> {
  return transaction(ctx, async (t) => {
    const run = await lockRun(ctx, t, runId);
    if (TERMINAL_STATUSES.includes(run.status) || run.status === 'paused' || run.pause_requested) return false;
    const runs = ctx.db.tables.runs;
    if (run.live_lease) {
      await ctx.db.select(`UPDATE ${runs} SET pause_requested = true, updated_at = clock_timestamp() WHERE id = $1 RETURNING id`, [run.id], t);
    } else {
      await ctx.db.select(
        `UPDATE ${runs} SET status = 'paused', wake_at = NULL, concurrency_waiting = false, pause_requested = false,
                lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = clock_timestamp()
         WHERE id = $1 RETURNING id`,
        [run.id],
        t,
      );
      // A keyed run woken for a free slot passes the wake-up on to the next in line (as a cancel does).
      if (run.concurrency_key !== null && run.wake_at !== null && run.status !== 'running') {
        await ctx.db.select(`SELECT ${quoteIdent(ctx.db.tables.schema)}.durable_flow_wake_next($1)`, [run.concurrency_key], t);
      }
    }
    await recordAudit(ctx, t, [
      { ...who, action: 'pause', workflow: run.workflow_name, runId, details: { status: run.status, ...(run.live_lease ? { atNextStep: true } : {}) } },
    ]);
    return true;
  });
}

/**
 * flow.resume(): a paused run is due now (its replay finds where it was: a sleep not over suspends it
 * again, a wait matched meanwhile returns its event); a pause asked for and not yet taken is withdrawn.
 * Returns false when the run was neither.
 */
export async function resumeRun(ctx: OperatorContext, runId: string, who: Who): Promise<boolean> {
  return transaction(ctx, async (t) => {
    const run = await lockRun(ctx, t, runId);
    if (run.status !== 'paused' && !run.pause_requested) return false;
    await ctx.db.select(
      run.status === 'paused'
        ? `UPDATE ${ctx.db.tables.runs} SET status = 'ready', wake_at = ${nowOf(ctx)}, pause_requested = false, updated_at = clock_timestamp() WHERE id = $1 RETURNING id`
        : `UPDATE ${ctx.db.tables.runs} SET pause_requested = false, updated_at = clock_timestamp() WHERE id = $1 RETURNING id`,
      [run.id],
      t,
    );
    await recordAudit(ctx, t, [
      { ...who, action: 'resume', workflow: run.workflow_name, runId, details: run.status === 'paused' ? {} : { withdrawn: true } },
    ]);
    return true;
  });
}

function checkWorkflowName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_ID) throw invalidOption('workflow', name, 'the name of a workflow');
  return name;
}

/**
 * flow.pauseWorkflow(): a row in durable_flow_workflow_pauses. Every claim reads that small table: it
 * claims no run of a paused workflow and sets its due runs aside (held_wake_at, wake_at NULL, so later
 * claims never scan them); a start or an event never leases one to a local worker either.
 */
export async function pauseWorkflow(ctx: OperatorContext, name: string, who: Who): Promise<boolean> {
  const workflow = checkWorkflowName(name);
  return transaction(ctx, async (t) => {
    const rows = await ctx.db.select(
      `INSERT INTO ${ctx.db.tables.workflowPauses} (workflow_name, actor, reason, paused_at) VALUES ($1, $2, $3, ${nowOf(ctx)})
       ON CONFLICT (workflow_name) DO NOTHING RETURNING workflow_name`,
      [workflow, who.actor, who.reason],
      t,
    );
    if (rows.length === 0) return false;
    await recordAudit(ctx, t, [{ ...who, action: 'pause_workflow', workflow }]);
    return true;
  });
}

/** How many set-aside runs resumeWorkflow() puts back itself (claims put back the rest, batch by batch). */
const RESUME_BATCH = 10_000;

/**
 * flow.resumeWorkflow(): deletes the pause and puts its set-aside runs back (wake_at from held_wake_at),
 * the first RESUME_BATCH here, the rest by the claims that find them (so a crash half-way strands none).
 */
export async function resumeWorkflow(ctx: OperatorContext, name: string, who: Who): Promise<boolean> {
  const workflow = checkWorkflowName(name);
  return transaction(ctx, async (t) => {
    const rows = await ctx.db.select(`DELETE FROM ${ctx.db.tables.workflowPauses} WHERE workflow_name = $1 RETURNING workflow_name`, [workflow], t);
    if (rows.length === 0) return false;
    const [restored] = await ctx.db.select<{ n: number }>(
      `WITH held AS (
         SELECT id FROM ${ctx.db.tables.runs} WHERE workflow_name = $1 AND held_wake_at IS NOT NULL ORDER BY id LIMIT ${RESUME_BATCH} FOR UPDATE
       ), back AS (
         UPDATE ${ctx.db.tables.runs} r SET wake_at = r.held_wake_at, held_wake_at = NULL, updated_at = clock_timestamp()
         FROM held WHERE r.id = held.id RETURNING r.id
       )
       SELECT count(*)::int AS n FROM back`,
      [workflow],
      t,
    );
    await recordAudit(ctx, t, [{ ...who, action: 'resume_workflow', workflow, details: { restored: restored?.n ?? 0 } }]);
    return true;
  });
}
