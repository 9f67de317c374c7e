import type { Transaction } from 'sequelize';
import { invalidOption } from '../config.js';
import { DurableFlowError } from '../errors.js';
import type { ReplayOptions } from '../types.js';
import { recordAudit } from './audit.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';

/** What a replay takes from the run it replays. */
interface Original {
  id: string;
  workflow: string;
  /** JSON text, or null for a run started without input. */
  input: string | null;
  queue: string;
  priority: number;
}

async function findOriginal(ctx: OperatorContext, runId: unknown, transaction: Transaction): Promise<Original> {
  if (typeof runId !== 'string' || runId.length === 0) throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`runId\` to be a non-empty string, got ${typeof runId}`);
  const [run] = await ctx.db.select<Original>(
    `SELECT id::text, workflow_name AS workflow, input::text AS input, queue_name AS queue, priority
     FROM ${ctx.db.tables.runs} WHERE run_id = $1`,
    [runId],
    transaction,
  );
  if (!run) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
  return run;
}

/**
 * Starts the new run inside `transaction` (so it is not dispatched to a worker before it commits):
 * same workflow, queue and priority, `options.input` if the key is present (even `undefined`), else
 * the original's input; no idempotency key. start() checks and encodes the input (maxPayloadSize).
 */
function startReplay(ctx: OperatorContext, original: Original, runId: string, options: ReplayOptions, transaction: Transaction): Promise<string> {
  const input = 'input' in options ? options.input : original.input === null ? undefined : JSON.parse(original.input);
  return ctx.startRun(original.workflow, input, { transaction, replayOf: runId, queue: original.queue, priority: original.priority });
}

function checkOptions(options: unknown): ReplayOptions {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', options, 'an object { input?, actor?, reason? }');
  return options as ReplayOptions;
}

/** flow.replay (see facade.ts): a new run of the same workflow that runs every step again; returns its id. */
export async function replayRun(ctx: OperatorContext, runId: string, options: ReplayOptions, who: Who): Promise<string> {
  checkOptions(options);
  return transaction(ctx, async (transaction) => {
    const original = await findOriginal(ctx, runId, transaction);
    const newRunId = await startReplay(ctx, original, runId, options, transaction);
    await recordAudit(ctx, transaction, [{ ...who, action: 'replay', workflow: original.workflow, runId, details: { newRunId } }]);
    return newRunId;
  });
}

/**
 * Copies the steps of run `$1` that come before step `$3` (by position; by id for a step stored
 * without one) and finished, succeeded or failed (a failure the workflow caught: its replay rethrows
 * it, so the run takes the same branch; leaving it out would make the copies after it look like
 * changed code), to run `$2`. Their mark (`exec_snapshot`) is this statement's snapshot, not the
 * original's: a wait right after a copy matches only events not visible now, never one the original
 * already took (docs/ARCHITECTURE.md, "No lost wake-up"). Wait rows are not copied: a finished wait
 * step replays from its step's result. A run with copies gets its `started_at` now (the claim loads
 * the history of a run once it has started, or when it replays another: durable_flow_lease's `replay`),
 * unless it is throttled: its begin is the throttle's to admit (claim.sql), and `started_at` set here
 * would let it begin at once past the limit and take a place in the window.
 */
const copyStepsSql = (ctx: OperatorContext): string => `
WITH copied AS (
INSERT INTO ${ctx.db.tables.steps}
  (workflow_run_id, name, kind, status, attempts, position, result, error, cursor, metadata, exec_snapshot, started_at, completed_at)
SELECT $2::bigint, s.name, s.kind, s.status, s.attempts, s.position, s.result, s.error, s.cursor, s.metadata,
       pg_current_snapshot()::text, s.started_at, s.completed_at
FROM ${ctx.db.tables.steps} s, ${ctx.db.tables.steps} target
WHERE target.workflow_run_id = $1::bigint AND target.name = $3
  AND s.workflow_run_id = $1::bigint AND s.status IN ('succeeded', 'failed')
  AND CASE WHEN target.position IS NULL OR s.position IS NULL THEN s.id < target.id ELSE s.position < target.position END
ORDER BY s.id
RETURNING name
), started AS (
  UPDATE ${ctx.db.tables.runs} SET started_at = ${nowOf(ctx)} WHERE id = $2::bigint AND throttle_key IS NULL AND EXISTS (SELECT 1 FROM copied)
)
SELECT name FROM copied`;

/**
 * flow.rerunFrom (see facade.ts): a new run whose steps before `stepName` are copies of the original's
 * finished ones (they replay without running); `stepName` and every step after it run anew. The run and
 * its copied steps are inserted in one transaction, so no worker can claim the run before its steps exist.
 */
export async function rerunFrom(ctx: OperatorContext, runId: string, stepName: string, options: ReplayOptions, who: Who): Promise<string> {
  checkOptions(options);
  if (typeof stepName !== 'string' || stepName.length === 0) throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`stepName\` to be a non-empty string, got ${typeof stepName}`);
  const { db } = ctx;
  return transaction(ctx, async (transaction) => {
    const original = await findOriginal(ctx, runId, transaction);
    const steps = await db.select<{ name: string }>(
      `SELECT name FROM ${db.tables.steps} WHERE workflow_run_id = $1 ORDER BY position NULLS LAST, id`,
      [original.id],
      transaction,
    );
    if (!steps.some((step) => step.name === stepName)) {
      const names = steps.map((step) => JSON.stringify(step.name)).join(', ');
      throw new DurableFlowError('STEP_NOT_FOUND', `Run ${runId} has no step "${stepName}"; its steps are: ${names || '(none)'}`);
    }
    const newRunId = await startReplay(ctx, original, runId, options, transaction);
    const [created] = await db.select<{ id: string }>(`SELECT id::text FROM ${db.tables.runs} WHERE run_id = $1`, [newRunId], transaction);
    const copied = await db.select<{ name: string }>(copyStepsSql(ctx), [original.id, created!.id, stepName], transaction);
    await recordAudit(ctx, transaction, [
      { ...who, action: 'rerun_from', workflow: original.workflow, runId, stepName, details: { newRunId, copiedSteps: copied.length } },
    ]);
    return newRunId;
  });
}
