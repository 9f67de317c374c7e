import type { CommitRequest, CommitResult, PendingLog, PendingStep, StepId } from '../db/sql/commitBatch.js';
import type { WatchedRun } from '../db/sql/insertWaits.js';
import type { Settlement, WaitState } from '../db/sql/resolveWaits.js';
import type { Store } from '../db/store.js';
import { LeaseLostError, WaitTimeoutError, deserializeError, serializeError } from '../errors.js';
import { consumeSignals, signalTimeout } from '../signals/consume.js';
import type { StoredError } from '../errors.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { RunStatus } from '../types.js';

/** The event name recorded on waits for a run to finish (step.invoke, step.waitForWorkflow). */
export const WORKFLOW_FINISHED_EVENT = 'durable_flow.workflow.finished';

/** The event name recorded on a sleep branch of step.waitAny / waitAll (no event matches it: `is_sleep`). */
export const SLEEP_BRANCH_EVENT = 'durable_flow.sleep';

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
  /** Set for a branch of step.waitAny / waitAll (several WaitSpecs of one step name, in the order declared). */
  branch?: { key: string; mode: 'any' | 'all'; sleep: boolean } | undefined;
}

/** A step that cannot finish in this execution yet: a sleep, a wait, or a retry after backoff. */
export interface Suspension {
  name: string;
  kind: 'sleep' | 'wait' | 'retry';
  /** Database-clock ms at which it is due (a wait's timeout); null for a wait without timeout. */
  wakeAt: number | null;
  position: number | null;
  wait?: Omit<WaitSpec, 'name' | 'timeoutAt'>;
  /** A waitAny / waitAll step: its branches (then `wait` is unset and `wakeAt` null: the suspension computes the wake-up). */
  branches?: Omit<WaitSpec, 'name'>[];
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
    const eventWaits = waits.filter((w) => !w.watch && w.signal === undefined && !w.branch?.sleep);
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
          branch: w.branch,
        })),
      });
    }
    const all = await store.resolveWaits(db, { run: run.id, stepNames: [...new Set(waits.map((w) => w.name))] });
    const states = all.filter((w) => w.groupMode === null);
    const byName = new Map(waits.filter((w) => !w.branch).map((spec) => [spec.name, spec]));
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
    const groups = decideGroups(all.filter((w) => w.groupMode !== null), watched);
    settlements.push(...groups.settlements);
    settled.push(...groups.settled);
    if (settlements.length > 0) await store.settleWaits(db, settlements);
    if (groups.stepIds.length > 0) {
      for (const [stepId, result] of await store.settleGroups(db, groups.stepIds)) {
        settled.push({ name: groups.names.get(stepId)!, ok: true, value: JSON.parse(result) });
      }
    }
    if (settled.length > 0 || request.mustContinue) return { kind: 'settled' as const, settled, stepIds: fence.steps, pauseRequested: fence.pauseRequested };

    const state = request.suspendState();
    const { status, error } = state;
    const wakeAt = state.wakeAt === null ? groups.wakeAt : groups.wakeAt === null ? state.wakeAt : Math.min(state.wakeAt, groups.wakeAt);
    const suspended = await store.suspendRun(db, { run: run.id, epoch: run.epoch, status, wakeAt: wakeAt === null ? null : request.iso(wakeAt), error });
    if (!suspended) throw new LeaseLostError(run.runId);
    return { kind: 'suspended' as const, wakeAt, stepIds: fence.steps };
  });
}

/**
 * The branches of waitAny / waitAll steps that can end now, in the suspension (their rows locked): a
 * stored event that matches, a watched run that finished in time, a sleep branch whose time passed; or a
 * timeout. A waitAny takes the branch that ended first (ties: the first declared); a waitAll takes all
 * that can end, and times out as a whole when one of them times out. `stepIds`: the steps to write from
 * their rows (settleGroups, which cancels the losers); `settled`: the steps that failed here, or that a
 * notify or a finishing run completed already; `wakeAt`: the earliest timeout of the rows left pending.
 */
function decideGroups(rows: WaitState[], watched: Map<string, WatchedRun>) {
  const settlements: Settlement[] = [];
  const settled: Settled[] = [];
  const stepIds: string[] = [];
  const names = new Map<string, string>();
  let wakeAt: number | null = null;
  const byStep = new Map<string, WaitState[]>();
  for (const row of rows) byStep.set(row.stepId, [...(byStep.get(row.stepId) ?? []), row]);
  for (const [stepId, branches] of byStep) {
    const { stepName: name, stepStatus, groupMode: mode } = branches[0]!;
    names.set(stepId, name);
    if (stepStatus === 'succeeded') {
      settled.push({ name, ok: true, value: JSON.parse(branches[0]!.stepResult ?? 'null') });
      continue;
    }
    if (stepStatus === 'failed' && branches[0]!.stepError) {
      settled.push({ name, ok: false, value: deserializeError(branches[0]!.stepError) });
      continue;
    }
    // Each branch that can end now, with when it did (the flow's clock): the event's time, the run's finish, the sleep's end.
    const ready: { row: WaitState; at: number; settlement: Settlement }[] = [];
    let timedOut: WaitState | undefined;
    for (const row of branches) {
      if (row.status !== 'pending') continue;
      const run = row.watchedRunId ? watched.get(row.watchedRunId) : undefined;
      if (row.isSleep) {
        if (row.expired) ready.push({ row, at: row.timeoutMs!, settlement: { waitId: row.id, status: 'matched', outcome: null } });
      } else if (row.eventId !== null) {
        ready.push({ row, at: row.eventAt ?? 0, settlement: { waitId: row.id, status: 'matched', eventId: row.eventId } });
      } else if (run && TERMINAL_STATUSES.includes(run.status) && (row.timeoutMs === null || run.finishedAt === null || run.finishedAt.getTime() < row.timeoutMs)) {
        ready.push({ row, at: run.finishedAt?.getTime() ?? 0, settlement: { waitId: row.id, status: 'matched', outcome: outcomeOf(run) } });
      } else if (row.expired) {
        timedOut ??= row;
      }
    }
    // waitAny: the branch that ended first wins, as it would have had the run been waiting then (ties: the first declared).
    const first = ready.reduce<(typeof ready)[number] | undefined>((best, r) => (best === undefined || r.at < best.at ? r : best), undefined);
    const take = mode === 'any' ? (first ? [first] : []) : ready;
    // A timeout with no branch ended (waitAny), or one branch of a waitAll timed out: the step fails,
    // whatever else ended meanwhile.
    if (timedOut && (take.length === 0 || mode === 'all')) {
      const error = new WaitTimeoutError(timedOut.event, name);
      const late = take.length > 0 ? ` (branch ${JSON.stringify(timedOut.branch)} did not end in time)` : '';
      error.message = `Timed out waiting for ${mode} of the branches ${branches.map((b) => JSON.stringify(b.branch)).join(', ')} in step "${name}"${late}`;
      settlements.push({ waitId: timedOut.id, status: 'timed_out', error: serializeError(error, name) });
      settled.push({ name, ok: false, value: error });
      stepIds.push(stepId);
      continue;
    }
    settlements.push(...take.map((r) => r.settlement));
    if (take.length > 0) stepIds.push(stepId);
    const completes = mode === 'any' ? take.length > 0 : branches.every((b) => b.status === 'matched' || take.some((r) => r.row === b));
    if (!completes) {
      for (const row of branches) {
        if (row.status === 'pending' && !take.some((r) => r.row === row) && row.timeoutMs !== null) wakeAt = wakeAt === null ? row.timeoutMs : Math.min(wakeAt, row.timeoutMs);
      }
    }
  }
  return { settlements, settled, stepIds, names, wakeAt };
}
