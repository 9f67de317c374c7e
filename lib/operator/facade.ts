import { DurableFlowError } from '../errors.js';
import type { ViewerSide } from '../read/side.js';
import type {
  AuditEntry,
  AuditQuery,
  BulkAction,
  BulkFilter,
  OperationInfo,
  OperatorOptions,
  RepinOptions,
  ReplayOptions,
  RunHandle,
} from '../types.js';
import { listAudit } from './audit.js';
import { startBulk, getOperation } from './bulk.js';
import { checkOperatorOptions } from './context.js';
import { pauseRun, pauseWorkflow, resumeRun, resumeWorkflow } from './pause.js';
import { completeStep, resolveWait } from './repair.js';
import { repinRuns } from './repin.js';
import { replayRun, rerunFrom } from './rerun.js';

/** What the operator methods need of their flow. */
export interface OperatorHost {
  /** Throws CLOSED once the flow is closed. */
  assertOpen(): void;
  /** The viewer side: its Operator (cancel, retry) and the context every other tool works with. */
  side(): ViewerSide;
  handle(runId: string): RunHandle;
  /** The flow's version (flow.version). */
  version(): string;
}

/**
 * The operator tools of a DurableFlow (it extends this class): cancel and retry, replay and rerun
 * from a step, pause and resume of a run or a workflow, repairs of a wait or a step, bulk operations,
 * and the audit trail every one of them appends to (in the transaction of the action). They work from
 * any process, on the viewer's connections; a worker holding a run learns of an action at its next
 * write (its lease epoch is bumped, or its pause is asked for).
 */
export abstract class OperatorMethods {
  /** @internal */
  protected abstract operatorHost(): OperatorHost;

  #ready(options: unknown): { host: OperatorHost; who: { actor: string | null; reason: string | null } } {
    const host = this.operatorHost();
    host.assertOpen();
    return { host, who: checkOperatorOptions(options) };
  }

  /**
   * Cancels a run that has not finished, and every run it started that has not either: it runs no
   * further step (a step already running finishes, but its result is not stored). `reason` is stored
   * as its error. Returns false if the run had already finished.
   */
  async cancel(runId: string, options: OperatorOptions = {}): Promise<boolean> {
    const { host, who } = this.#ready(options);
    const { status, done } = await host.side().operator.cancel(runId, who.reason ?? 'Cancelled with flow.cancel()', who);
    if (status === null) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
    return done;
  }

  /** Resumes a failed run from the step that failed it; completed steps are not run again. */
  async retry(runId: string, options: OperatorOptions = {}): Promise<void> {
    const { host, who } = this.#ready(options);
    const { status, done } = await host.side().operator.retry(runId, who);
    if (done) return;
    if (status === null) throw new DurableFlowError('RUN_NOT_FOUND', `No run with id "${runId}"`);
    throw new DurableFlowError('INVALID_STATE', `Run ${runId} is ${status}; only failed runs can be retried`);
  }

  /** Starts a new run of the same workflow with the run's input (or `input`): every step runs again. `getRun().replayOf` is `runId`. */
  async replay(runId: string, options: ReplayOptions = {}): Promise<RunHandle> {
    const { host, who } = this.#ready(options);
    return host.handle(await replayRun(host.side().operatorContext, runId, options, who));
  }

  /**
   * Starts a new run of the same workflow whose steps before `stepName` keep the stored results of
   * `runId` (they do not run again); `stepName` and every step after it run anew, with `input` if given.
   */
  async rerunFrom(runId: string, stepName: string, options: ReplayOptions = {}): Promise<RunHandle> {
    const { host, who } = this.#ready(options);
    return host.handle(await rerunFrom(host.side().operatorContext, runId, stepName, options, who));
  }

  /**
   * Pauses a run that has not finished: status `paused`, never claimed until `resume()`. A run a worker
   * holds pauses once its running step ends (nothing after it runs). Returns false if it had finished
   * or was paused already.
   */
  async pause(runId: string, options: OperatorOptions = {}): Promise<boolean> {
    const { host, who } = this.#ready(options);
    return pauseRun(host.side().operatorContext, runId, who);
  }

  /** Makes a paused run due again (or withdraws a pause not yet taken). Returns false if it was not paused. */
  async resume(runId: string, options: OperatorOptions = {}): Promise<boolean> {
    const { host, who } = this.#ready(options);
    return resumeRun(host.side().operatorContext, runId, who);
  }

  /**
   * No run of the workflow is claimed until resumeWorkflow(): its runs keep their status, new ones
   * queue. A run executing now goes on until it sleeps, waits or ends. Returns false if already paused.
   */
  async pauseWorkflow(name: string, options: OperatorOptions = {}): Promise<boolean> {
    const { host, who } = this.#ready(options);
    return pauseWorkflow(host.side().operatorContext, name, who);
  }

  /** Its runs are claimed again, each due when it would have been. Returns false if it was not paused. */
  async resumeWorkflow(name: string, options: OperatorOptions = {}): Promise<boolean> {
    const { host, who } = this.#ready(options);
    return resumeWorkflow(host.side().operatorContext, name, who);
  }

  /** Completes the run's pending wait `stepName` with `payload`, as if its event had come (once: a later event does not match it). */
  async resolveWait(runId: string, stepName: string, payload?: unknown, options: OperatorOptions = {}): Promise<void> {
    const { host, who } = this.#ready(options);
    await resolveWait(host.side().operatorContext, runId, stepName, payload, who);
  }

  /** A failed or retrying step takes `result` as its stored result (no more attempts) and the run goes on from it. */
  async completeStep(runId: string, stepName: string, result?: unknown, options: OperatorOptions = {}): Promise<void> {
    const { host, who } = this.#ready(options);
    await completeStep(host.side().operatorContext, runId, stepName, result, who);
  }

  /**
   * Cancels, retries or replays every run `filter` selects now, durably: in batches, each run once,
   * surviving a crash of the process working on it. Returns at once with the operation's id.
   */
  async bulk(action: BulkAction, filter: BulkFilter, options: OperatorOptions = {}): Promise<{ operationId: string; total: number }> {
    const { host, who } = this.#ready(options);
    return startBulk(host.side().operatorContext, action, filter, who);
  }

  /**
   * Moves the runs pinned to `fromVersion` that have not finished (of `options.workflow` only, when
   * given) to this flow's version: workers of this version claim them from now on. For runs of a
   * `versioning: 'pinned'` workflow that no live worker can take (their version is no longer deployed).
   * Each run moved is audited (action 'repin'). Returns how many moved.
   */
  async repin(fromVersion: string, options: RepinOptions = {}): Promise<number> {
    const { host, who } = this.#ready(options);
    return repinRuns(host.side().operatorContext, fromVersion, host.version(), options, who);
  }

  /** A bulk operation's progress. */
  async operation(operationId: string): Promise<OperationInfo> {
    const { host } = this.#ready(undefined);
    const info = await getOperation(host.side().operatorContext, operationId);
    if (!info) throw new DurableFlowError('OPERATION_NOT_FOUND', `No bulk operation with id "${operationId}"`);
    return info;
  }

  /** The audit trail, newest first: every operator action, who did it, when, on which run and step, and why. */
  async audit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const { host } = this.#ready(undefined);
    return listAudit(host.side().operatorContext, query);
  }
}
