import { Op, literal } from 'sequelize';
import { cancelRunSql } from '../db/sql/runTransitions.js';
import type { StoredError } from '../errors.js';
import type { RunStatus } from '../types.js';
import { recordAudit } from './audit.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';

/** Who acts and why (checked): what the audit entry of an action records. */
export interface Who {
  actor: string | null;
  reason: string | null;
}

/** What an operator's action found: the run's status before it (null: no such run) and whether it acted. */
export interface ActionResult {
  status: RunStatus | null;
  done: boolean;
}

/**
 * The cold path's writes: an operator's actions on runs (cancel and retry; the operator tools of
 * issue #14 join them), each one transaction on the viewer's connections through the models. Each
 * locks the run it changes first, so two actions on one run (or an action and a worker's commit) take
 * turns; a worker holding the run finds its lease epoch bumped and stops at its next write.
 */
export class Operator {
  readonly #ctx: OperatorContext;

  constructor(ctx: OperatorContext) {
    this.#ctx = ctx;
  }

  /**
   * Cancels a run that has not finished and every unfinished run it started (durable_flow_cancel,
   * lib/db/functions/cancel.sql, takes their locks children first); `errorMessage` is stored as its
   * error. Audited when it cancelled something.
   */
  cancel(runId: string, errorMessage: string, who: Who): Promise<ActionResult> {
    const { db } = this.#ctx;
    const { WorkflowRun } = db.models;
    return transaction(this.#ctx, async (transaction) => {
      const run = await WorkflowRun.findOne({ attributes: ['id', 'status', 'workflowName'], where: { runId }, transaction });
      if (!run) return { status: null, done: false };
      const [answer] = await db.select<{ cancelled: number }>(cancelRunSql(db.tables), [run.get('id'), errorMessage, this.#ctx.clockOffsetMs()], transaction);
      const status = run.get('status') as RunStatus;
      const done = answer!.cancelled > 0;
      if (done) {
        await recordAudit(this.#ctx, transaction, [
          // (Not the status read above: it is read before durable_flow_cancel takes the locks, children first.)
          { ...who, action: 'cancel', workflow: run.get('workflowName') as string, runId, details: { cancelled: answer!.cancelled } },
        ]);
      }
      return { status, done };
    });
  }

  /**
   * Puts a failed run back in the queue. The step whose error failed the run is reset (and its waits
   * removed, so a timed-out wait waits again); every completed step stays memoized. The lease epoch
   * is bumped: nothing a worker of the failed attempt might still write lands.
   */
  retry(runId: string, who: Who): Promise<ActionResult> {
    const { WorkflowRun, WorkflowStep, WorkflowWait } = this.#ctx.db.models;
    return transaction(this.#ctx, async (transaction) => {
      const run = await WorkflowRun.findOne({ attributes: ['id', 'status', 'error', 'workflowName'], where: { runId }, lock: transaction.LOCK.UPDATE, transaction });
      if (!run) return { status: null, done: false };
      const status = run.get('status') as RunStatus;
      if (status !== 'failed') return { status, done: false };
      const id = run.get('id');
      const at = literal('clock_timestamp()');
      // A run that timed out (RUN_TIMEOUT) is retried without a deadline: its timeout was spent. The
      // steps its timeout cancelled are reset with the failed one.
      const timedOut = (run.get('error') as StoredError | null)?.code === 'RUN_TIMEOUT';
      await WorkflowRun.update(
        {
          status: 'ready', wakeAt: literal(nowOf(this.#ctx)), failedAt: null, claimCount: 0, leaseEpoch: literal('lease_epoch + 1'), updatedAt: at,
          ...(timedOut ? { deadlineAt: null } : {}),
        },
        { where: { id }, silent: true, transaction },
      );
      const failedStep = (run.get('error') as StoredError | null)?.step;
      if (typeof failedStep === 'string' || timedOut) {
        const [, steps] = await WorkflowStep.update(
          { status: 'pending', attempts: 0, result: null, completedAt: null, metadata: literal(`metadata - 'timedOut' - 'retryAt'`), updatedAt: at },
          {
            where: timedOut ? { workflowRunId: id, status: 'cancelled' } : { workflowRunId: id, name: failedStep, status: 'failed' },
            returning: ['id'], silent: true, transaction,
          },
        );
        const stepIds = steps.map((step) => step.get('id'));
        if (stepIds.length > 0) await WorkflowWait.destroy({ where: { workflowStepId: { [Op.in]: stepIds } }, transaction });
      }
      await recordAudit(this.#ctx, transaction, [
        { ...who, action: 'retry', workflow: run.get('workflowName') as string, runId, stepName: typeof failedStep === 'string' ? failedStep : null },
      ]);
      return { status, done: true };
    });
  }
}
