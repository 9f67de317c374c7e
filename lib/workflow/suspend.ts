import type { CommitRequest, CommitResult, PendingLog, PendingStep, StepId } from '../db/sql/commitBatch.js';
import type { WatchedRun } from '../db/sql/insertWaits.js';
import type { Settlement } from '../db/sql/resolveWaits.js';
import type { Store } from '../db/store.js';
import { LeaseLostError, WaitTimeoutError, serializeError } from '../errors.js';
import { consumeSignals, signalTimeout } from '../signals/consume.js';
import type { StoredError } from '../errors.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { RunStatus } from '../types.js';

/** The event name recorded on waits for a run to finish (step.invoke, step.waitForWorkflow). */
export const WORKFLOW_FINISHED_EVENT = 'durable_flow.workflow.finished';

/** A wait of the suspending execution, new or stored earlier. */
export interface WaitSpec {
  name: string;
  event: string;
  match: unknown;
  allowPast: boolean;
  /** Low-water mark: the preceding step's snapshot. */
  since: string;
  isNew: boolean;
  timeoutAt: number | null;
  /** Set for a wait on a run to finish: that run's id. */
  watch?: string | undefined;
  /** Set for step.waitForSignal: the signal's name (see lib/signals/). */
  signal?: string | undefined;
}

/** A step that cannot finish in this execution yet: a sleep, a wait, or a retry after backoff. */
export interface Suspension {
  name: string;
  kind: 'sleep' | 'wait' | 'retry';
  /** Database-clock ms at which it is due (a wait's timeout); null for a wait without timeout. */
  wakeAt: number | null;
  position: number | null;
  wait?: Omit<WaitSpec, 'name' | 'timeoutAt'>;
  /** A retry: the error of the attempt that failed. */
  error?: StoredError;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** The statuses of a suspended run. */
export type SuspendedStatus = Extract<RunStatus, 'sleeping' | 'waiting' | 'retrying'>;

/** The run's status and next wake-up while suspended: a retry shows as `retrying` (with its error), then a wait as `waiting`. */
export function suspendStateOf(suspensions: Iterable<Suspension>): { status: SuspendedStatus; wakeAt: number | null; error: StoredError | undefined } {
  let wakeAt: number | null = null;
  let status: SuspendedStatus = 'sleeping';
  let error: StoredError | undefined;
  for (const s of suspensions) {
    if (s.wakeAt !== null) wakeAt = wakeAt === null ? s.wakeAt : Math.min(wakeAt, s.wakeAt);
    if (s.kind === 'retry') {
      status = 'retrying';
      error ??= s.error;
    } else if (s.kind === 'wait' && status !== 'retrying') {
      status = 'waiting';
    }
  }
  return { status, wakeAt, error };
}

export interface SuspendRequest {
  store: Store;
  /** The batched commit, for a suspension without waits (one statement). */
  commit(request: CommitRequest): Promise<CommitResult>;
  pending: { steps: PendingStep[]; logs: PendingLog[] };
  run: { id: string; runId: string; epoch: string };
  snapshot: string;
  waits: WaitSpec[];
  iso(ms: number): string;
  /** Something already settled (a sleep that is over): store everything, but do not suspend. */
  mustContinue: boolean;
  /** The run's status, next wake-up and error if nothing settles (computed only then). */
  suspendState(): { status: SuspendedStatus; wakeAt: number | null; error: StoredError | undefined };
  /** Called inside the transaction, with its locks held and its writes not yet committed (a debug point). */
  inTransaction?(): Promise<void>;
}

export interface Settled {
  name: string;
  ok: boolean;
  value: unknown;
}

export type SuspendResult =
  /** `pauseRequested`: flow.pause() was asked meanwhile (the execution must start no further step). */
  | { kind: 'settled'; settled: Settled[]; stepIds: StepId[]; pauseRequested?: boolean }
  | { kind: 'suspended'; wakeAt: number | null; stepIds: StepId[] };

/** A run that finished after the wait's deadline (on the flow's clock) is too late for it, like a late event. */
function finishedInTime(run: WatchedRun, wait: WaitSpec | undefined): boolean {
  return wait?.timeoutAt === null || wait?.timeoutAt === undefined || run.finishedAt === null || run.finishedAt.getTime() < wait.timeoutAt;
}

/** What a wait on a run returns: the same shape the finish trigger stores. */
function outcomeOf(run: WatchedRun): Record<string, unknown> {
  const outcome: Record<string, unknown> = { runId: run.runId, workflow: run.workflow, status: run.status };
  if (run.status === 'completed') {
    if (run.output !== null) outcome.result = JSON.parse(run.output);
  } else {
    outcome.error = run.error;
  }
  return outcome;
}

/**
 * The suspension transaction: stores the pending writes and new waits, then settles every wait it
 * can right now (a matching stored event, a finished run, a passed timeout). If one settled, the run
 * keeps its lease and the execution continues in memory; otherwise the run is suspended (its status,
 * its next wake-up) and its lease released.
 *
 * Lock order, as everywhere: event-name advisory locks (sorted) → watched runs (marked `watched`, by id; a
 * child before its parent) → this run (the fence of commitBatch) → its waits (FOR UPDATE in resolveWaits)
 * → the signals its signal waits take (consumeSignals; flow.signal takes only the run's lock).
 */
export async function suspendTransaction(request: SuspendRequest): Promise<SuspendResult> {
  const { store, run, waits } = request;
  if (waits.length === 0 && !request.mustContinue) {
    // Only sleeps and retries: one (batched) statement stores the writes and suspends the run.
    const { status, wakeAt, error } = request.suspendState();
    const result = await request.commit({
      run: run.id,
      epoch: run.epoch,
      snapshot: request.snapshot,
      ...request.pending,
      transition: { status, error, wakeAt: wakeAt === null ? null : request.iso(wakeAt) },
    });
    if (!result.held) throw new LeaseLostError(run.runId);
    return { kind: 'suspended', wakeAt, stepIds: result.steps };
  }
  return store.transaction(async (db) => {
    const eventWaits = waits.filter((w) => !w.watch && w.signal === undefined);
    if (eventWaits.length > 0) await store.lockEventNames(db, eventWaits.map((w) => w.event));
    const watched = new Map<string, WatchedRun>();
    const watchIds = [...new Set(waits.flatMap((w) => (w.watch ? [w.watch] : [])))];
    if (watchIds.length > 0) {
      for (const watchedRun of await store.lockWatchedRuns(db, watchIds)) watched.set(watchedRun.runId, watchedRun);
    }
    const [fence] = await store.commitBatch(db, [{ run: run.id, epoch: run.epoch, snapshot: request.snapshot, ...request.pending }]);
    if (!fence?.held) throw new LeaseLostError(run.runId);
    await request.inTransaction?.();
    if (waits.length === 0) return { kind: 'settled' as const, settled: [], stepIds: fence.steps, pauseRequested: fence.pauseRequested };

    const fresh = waits.filter((w) => w.isNew);
    if (fresh.length > 0) {
      await store.insertWaits(db, {
        run: run.id,
        waits: fresh.map((w) => ({
          stepName: w.name,
          event: w.event,
          match: w.match,
          allowPastEvents: w.allowPast,
          watchedRunId: w.watch ?? null,
          signalName: w.signal ?? null,
          sinceSnapshot: w.since,
          timeoutAt: w.timeoutAt === null ? null : request.iso(w.timeoutAt),
        })),
      });
    }
    const states = await store.resolveWaits(db, { run: run.id, stepNames: waits.map((w) => w.name) });
    const byName = new Map(waits.map((spec) => [spec.name, spec]));
    const signalWaits = states.flatMap((w) =>
      w.status === 'pending' && w.signalName !== null ? [{ id: w.id, stepName: w.stepName, signalName: w.signalName, timeoutAt: byName.get(w.stepName)?.timeoutAt ?? null }] : [],
    );
    const signalled = await consumeSignals(store, db, run.id, signalWaits);
    const settled: Settled[] = [];
    const settlements: Settlement[] = [];
    for (const wait of states) {
      const watchedRun = wait.watchedRunId ? watched.get(wait.watchedRunId) : undefined;
      if (wait.status === 'matched' && wait.payload !== null) {
        settled.push({ name: wait.stepName, ok: true, value: JSON.parse(wait.payload) });
      } else if (wait.status !== 'pending') {
        continue;
      } else if (signalled.has(wait.stepName)) {
        settled.push({ name: wait.stepName, ok: true, value: JSON.parse(signalled.get(wait.stepName)!) });
      } else if (wait.eventId !== null) {
        settlements.push({ waitId: wait.id, status: 'matched', eventId: wait.eventId });
        settled.push({ name: wait.stepName, ok: true, value: JSON.parse(wait.payload!) });
      } else if (watchedRun && TERMINAL_STATUSES.includes(watchedRun.status) && finishedInTime(watchedRun, byName.get(wait.stepName))) {
        const outcome = outcomeOf(watchedRun);
        settlements.push({ waitId: wait.id, status: 'matched', outcome });
        settled.push({ name: wait.stepName, ok: true, value: outcome });
      } else if (wait.expired) {
        const error = wait.signalName !== null ? signalTimeout(wait.signalName, wait.stepName) : new WaitTimeoutError(wait.event, wait.stepName);
        settlements.push({ waitId: wait.id, status: 'timed_out', error: serializeError(error, wait.stepName) });
        settled.push({ name: wait.stepName, ok: false, value: error });
      }
    }
    if (settlements.length > 0) await store.settleWaits(db, settlements);
    if (settled.length > 0 || request.mustContinue) return { kind: 'settled' as const, settled, stepIds: fence.steps, pauseRequested: fence.pauseRequested };

    const { status, wakeAt, error } = request.suspendState();
    const suspended = await store.suspendRun(db, { run: run.id, epoch: run.epoch, status, wakeAt: wakeAt === null ? null : request.iso(wakeAt), error });
    if (!suspended) throw new LeaseLostError(run.runId);
    return { kind: 'suspended' as const, wakeAt, stepIds: fence.steps };
  });
}
