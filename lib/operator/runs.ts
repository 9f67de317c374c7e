import { Op, literal } from 'sequelize';
import type { Transaction } from 'sequelize';
import { cancelRunSql } from '../db/sql/runTransitions.js';
import { nowSql } from '../db/tables.js';
import type { StoredError } from '../errors.js';
import type { ReadDb } from '../read/db.js';
import type { RunStatus } from '../types.js';

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
  readonly #db: ReadDb;
  readonly #clockOffsetMs: () => number;

  constructor(db: ReadDb, clockOffsetMs: () => number) {
    this.#db = db;
    this.#clockOffsetMs = clockOffsetMs;
  }

  /** The database's clock as the flow sees it (shifted by the test harness's offset), as SQL. */
  #now(): string {
    return nowSql(String(Number(this.#clockOffsetMs())));
  }

  #transaction<T>(fn: (transaction: Transaction) => Promise<T>): Promise<T> {
    return this.#db.sequelize.transaction(fn);
  }

  /**
   * Cancels a run that has not finished and every unfinished run it started (durable_flow_cancel,
   * lib/db/functions/cancel.sql, takes their locks children first); `reason` is stored as its error.
   */
  cancel(runId: string, reason: string): Promise<ActionResult> {
    const { WorkflowRun } = this.#db.models;
    return this.#transaction(async (transaction) => {
      const run = await WorkflowRun.findOne({ attributes: ['id', 'status'], where: { runId }, transaction });
      if (!run) return { status: null, done: false };
      const [answer] = await this.#db.select<{ cancelled: number }>(
        cancelRunSql(this.#db.tables),
        [run.get('id'), reason, this.#clockOffsetMs()],
        transaction,
      );
      return { status: run.get('status') as RunStatus, done: answer!.cancelled > 0 };
    });
  }

  /**
   * Puts a failed run back in the queue. The step whose error failed the run is reset (and its waits
   * removed, so a timed-out wait waits again); every completed step stays memoized. The lease epoch
   * is bumped: nothing a worker of the failed attempt might still write lands.
   */
  retry(runId: string): Promise<ActionResult> {
    const { WorkflowRun, WorkflowStep, WorkflowWait } = this.#db.models;
    return this.#transaction(async (transaction) => {
      const run = await WorkflowRun.findOne({ attributes: ['id', 'status', 'error'], where: { runId }, lock: transaction.LOCK.UPDATE, transaction });
      if (!run) return { status: null, done: false };
      const status = run.get('status') as RunStatus;
      if (status !== 'failed') return { status, done: false };
      const id = run.get('id');
      const at = literal('clock_timestamp()');
      await WorkflowRun.update(
        { status: 'ready', wakeAt: literal(this.#now()), failedAt: null, claimCount: 0, leaseEpoch: literal('lease_epoch + 1'), updatedAt: at },
        { where: { id }, silent: true, transaction },
      );
      const failedStep = (run.get('error') as StoredError | null)?.step;
      if (typeof failedStep === 'string') {
        const [, steps] = await WorkflowStep.update(
          { status: 'pending', attempts: 0, result: null, completedAt: null, metadata: literal(`metadata - 'timedOut' - 'retryAt'`), updatedAt: at },
          { where: { workflowRunId: id, name: failedStep, status: 'failed' }, returning: ['id'], silent: true, transaction },
        );
        const stepIds = steps.map((step) => step.get('id'));
        if (stepIds.length > 0) await WorkflowWait.destroy({ where: { workflowStepId: { [Op.in]: stepIds } }, transaction });
      }
      return { status, done: true };
    });
  }
}
