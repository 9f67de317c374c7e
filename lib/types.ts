import type { DurationInput, TimeInput } from './duration.js';
import type { StoredError } from './errors.js';

export type { DurationInput, TimeInput } from './duration.js';
export type { StoredError } from './errors.js';

import type { RunStatus } from './run-status.js';
import type { RunTagsInfo, TagOptions } from './tags.js';
import type { EventTrigger } from './triggers/types.js';
import type { DebounceOptions, RateLimitOptions, SingletonOptions, ThrottleOptions } from './workflow/start-control-types.js';
import type { WaitAnyResult, WaitBranch, WaitGroupOptions } from './workflow/wait-group-types.js';

export type { DebounceOptions, RateLimitOptions, SingletonOptions, ThrottleOptions } from './workflow/start-control-types.js';
export type { WaitAnyResult, WaitBranch, WaitGroupOptions } from './workflow/wait-group-types.js';

export type { RunStatus } from './run-status.js';

/** `cancelled`: the step had not finished when its run was cancelled. */
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'sleeping' | 'waiting' | 'retrying' | 'failed' | 'cancelled';

export type WaitStatus = 'pending' | 'matched' | 'timed_out' | 'cancelled';

export const TERMINAL_STATUSES: readonly RunStatus[] = ['completed', 'failed', 'cancelled'];

/** Exponential backoff between step attempts. Default: first retry after 1 second, doubling, ±20 % jitter, at most 1 hour. */
export interface BackoffOptions {
  /** Delay before the first retry. Default `'1 second'`. */
  initial?: DurationInput;
  /** Each retry waits this many times longer than the one before. Default 2. */
  factor?: number;
  /** Longest delay. Default `'1 hour'`. */
  max?: DurationInput;
  /** Random spread as a fraction of the delay, 0 to 1. Default 0.2. */
  jitter?: number;
}

/** Backoff options, or a function from the attempt that failed (1, 2, …) to the delay before the next. */
export type Backoff = BackoffOptions | ((attempt: number) => DurationInput);

export interface StepRunOptions<C = unknown> {
  /** Retries after the first attempt fails. Default: the workflow's `retries`, else the flow's (3). */
  retries?: number;
  /** Delay between attempts. Default: the workflow's, else the flow's backoff. */
  backoff?: Backoff;
  /** Makes this a cursor step: its first attempt starts with `cursor` = `start`. */
  start?: C;
  /** An attempt that runs longer fails with `StepTimeoutError` (and is retried like any error). */
  timeout?: DurationInput;
}

export interface StepContext<C = unknown> {
  /** 1 on the first attempt, 2 on the first retry, … */
  attempt: number;
  /** `"<runId>:<stepName>"`: the same on every attempt, for the APIs you call to deduplicate on. */
  idempotencyKey: string;
  runId: string;
  stepName: string;
  /** Aborted when this worker loses the run's lease (or the run is cancelled), or the run reaches its `timeout` (reason: a RUN_TIMEOUT error): stop work that can stop. */
  signal: AbortSignal;
  /** Cursor steps: where to resume (the last value passed to `advance`, or `start`). */
  cursor: C;
  /** Cursor steps: stores the cursor (and refreshes the lease) so a crash resumes from here. */
  advance(next: C): Promise<void>;
}

export interface WaitForEventOptions {
  /** Event name to wait for. Default: the step name. */
  event?: string;
  /** JSON the event's payload must contain (Postgres `@>` containment). Default `{}`: any payload. */
  match?: Record<string, unknown>;
  /** Give up after this long: the step throws `WaitTimeoutError`, and every replay throws it again. */
  timeout?: DurationInput;
  /** Also accept a matching event recorded before the wait began. Default false. */
  allowPastEvents?: boolean;
}

export interface SentEvent {
  id: string;
  eventId: string | null;
  name: string;
}

/** A workflow to start as a child: its handle (from `flow.workflow`) or its name. */
export type WorkflowRef = string | { readonly name: string };

export interface InvokeOptions extends TagOptions {
  /** Stop waiting after this long: the wait step throws `WaitTimeoutError` (the child keeps running). */
  timeout?: DurationInput;
  /** `'raise'` (default): a failed or cancelled child throws `ChildWorkflowFailedError`; `'return'`: its outcome is returned. */
  onFailure?: 'raise' | 'return';
}

export interface InvokeManyOptions<T> extends InvokeOptions {
  /** A stable key per item: a property name or a function. It names the item's steps (`<name>_<key>_start|wait`). Default: the item's index. */
  key?: string | ((item: T, index: number) => string | number);
  /** At most this many children in flight; a finished child frees its slot at once. Default: all at once. */
  concurrency?: number;
}

/** How a child run (or any watched run) ended. */
export interface ChildOutcome<O = unknown> {
  runId: string;
  workflow: string;
  status: 'completed' | 'failed' | 'cancelled';
  /** The child's output, when it completed. */
  result?: O;
  /** The child's error, when it failed or was cancelled. */
  error?: StoredError | null;
}

export interface StepApi {
  /** Runs `fn` once and stores its result; every replay returns the stored result instead. */
  run<T>(name: string, fn: (context: StepContext) => T | Promise<T>): Promise<T>;
  run<T, C = unknown>(name: string, options: StepRunOptions<C>, fn: (context: StepContext<C>) => T | Promise<T>): Promise<T>;
  /** Sleeps durably: the run leaves its worker and is claimed again when the time comes. */
  sleep(name: string, duration: DurationInput): Promise<void>;
  /** Sleeps durably until `time`; a time in the past passes straight through. */
  sleepUntil(name: string, time: TimeInput): Promise<void>;
  /** Waits for an event and returns its payload. */
  waitForEvent<P = any>(name: string, options?: WaitForEventOptions): Promise<P>;
  /** Emits an event exactly once (memoized; its id is `"<runId>:<name>"`). */
  sendEvent(name: string, eventName: string, payload?: unknown): Promise<SentEvent>;
  /** Starts a child run once (step `<name>_start`) and waits for it (step `<name>_wait`). */
  invoke<O = any>(name: string, workflow: WorkflowRef, input: unknown, options?: InvokeOptions): Promise<ChildOutcome<O>>;
  /** Starts one child per item, at most `concurrency` at a time; outcomes in input order, each with its `key`. */
  invokeMany<T, O = any>(
    name: string,
    items: readonly T[],
    options: InvokeManyOptions<T>,
    build: (item: T, index: number) => { workflow: WorkflowRef; input: unknown },
  ): Promise<(ChildOutcome<O> & { key: string })[]>;
  /** Waits for any run to finish (completed, failed or cancelled) and returns how it ended. */
  waitForWorkflow<O = any>(name: string, runId: string, options?: { timeout?: DurationInput }): Promise<ChildOutcome<O>>;
  // Patch gates (issue 15).
  /**
   * A patch gate for deploying changed code under runs in flight: true for new runs and for runs that
   * reach this point under the new code, false for runs whose stored history already went past it.
   * Recorded as a marker step `patch:<id>`, so every replay of a run takes the same branch.
   */
  patched(id: string): Promise<boolean>;
  // Signals (lib/signals/): messages flow.signal addresses to this run.
  /** Takes the oldest signal named `signal` sent to this run that no wait took yet (waiting for one if none is buffered) and returns its payload. */
  waitForSignal<P = any>(name: string, options: WaitForSignalOptions): Promise<P>;
  // Composable waits: one step over several branches (events, sleeps, runs to finish).
  /**
   * Waits for the first of its branches and returns `{ key, value }` (the event payload, the run's outcome
   * as waitForWorkflow returns it, or null for a sleep). The other branches are settled in the same
   * transaction and never fire later. Every replay returns the same branch.
   */
  waitAny<B extends Record<string, WaitBranch>>(name: string, branches: B, options?: WaitGroupOptions): Promise<WaitAnyResult<B>>;
  /** Waits for every branch and returns an object of the same keys with their values. */
  waitAll<B extends Record<string, WaitBranch>>(name: string, branches: B, options?: WaitGroupOptions): Promise<{ [K in keyof B]: any }>;
}


export interface WaitForSignalOptions {
  /** The signal's name (as given to flow.signal). */
  signal: string;
  /** Give up after this long: the step throws `WaitTimeoutError` (consuming no signal), and every replay throws it again. */
  timeout?: DurationInput;
}

export interface SignalOptions {
  /** Makes sending idempotent: a signal of this id already stored for the run is not stored again (another name or payload: SIGNAL_ID_CONFLICT). */
  id?: string;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface WorkflowLog {
  debug(message: string, data?: Record<string, unknown>): void;
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

export interface WorkflowContext<I = any> {
  input: I;
  step: StepApi;
  log: WorkflowLog;
  runId: string;
  /** The workflow's name. */
  workflow: string;
  /** How many times this run has been claimed by a worker, this time included. */
  attempt: number;
}

export type WorkflowHandler<I, O> = (context: WorkflowContext<I>) => O | Promise<O>;

/** At most `limit` runs executing at once: of the whole workflow, or per value of `key(input)`. */
export interface ConcurrencyOptions<I = any> {
  limit: number;
  /** Runs with the same key share the limit (e.g. `(input) => input.accountId`). Default: one limit for the workflow. */
  key?: (input: I) => string | number;
}

/** An event that cancels the run: one named `event` whose payload contains `match`. */
export interface CancelOn<I = any> {
  event: string;
  /** The JSON the payload must contain, or a function of the run's input giving it. Default `{}`: any such event. */
  match?: Record<string, unknown> | ((input: I) => Record<string, unknown>);
}

export interface WorkflowOptions<I = any> {
  /** Default retries for this workflow's steps. Default: the flow's `retries` (3). */
  retries?: number;
  /** Default backoff for this workflow's steps. */
  backoff?: Backoff;
  /** Queue its runs go to; workers take the queues they are given. Default `'default'`. */
  queue?: string;
  /** Default priority of its runs; lower runs first. Default 0. */
  priority?: number;
  /** Claims in a row that may end without the run stopping cleanly (a crashed or frozen worker) before it is failed. Default: the flow's (5). */
  maxRecoveries?: number;
  /** At most this many runs executing at once (a number), or per key computed from the input. Default: no limit. */
  concurrency?: number | ConcurrencyOptions<I>;
  /** Events that cancel a run (and the runs it started). */
  cancelOn?: CancelOn<I>[];
  /** A cron schedule named after the workflow, created or updated by `migrate()` and at worker start. Default: none. */
  schedule?: WorkflowSchedule<I>;
  /**
   * `'pinned'`: a run is claimed only by workers whose flow has the `version` of the flow that started
   * it (flow.repin() moves runs to another version). Default `'any'`: any worker continues any run
   * (the determinism check protects it).
   */
  versioning?: 'any' | 'pinned';
  /**
   * A run not finished this long after its `start()` fails with code `RUN_TIMEOUT` (the running step's
   * `signal` is aborted; its unfinished children time out with it). A start's own `timeout` wins. Default: none.
   */
  timeout?: DurationInput;
  // Start control (issue 16; lib/workflow/start-control.ts): decided at start(), in SQL, under a lock per key.
  /** While a run of the workflow (and key) has not finished, a start returns it (`'skip'`) or cancels it and starts anew (`'cancel'`). Default: none. */
  singleton?: SingletonOptions<I>;
  /** At most `limit` starts of a key accepted in any `period` (sliding); a start beyond it makes a run cancelled at once with code `RATE_LIMITED`. Default: none. */
  rateLimit?: RateLimitOptions<I>;
  /** Starts of a key within `period` of the previous fold into one run, which begins `period` after the last with the last input. Default: none. */
  debounce?: DebounceOptions<I>;
  /** Each stored event of a name (payload containing `match`) starts one run, input = the payload, in the event's transaction. Default: none. */
  on?: EventTrigger[];
  /** At most `limit` runs of a key begin in any `period` (sliding, enforced by the claim); the excess waits its turn, never dropped. Default: none. */
  throttle?: ThrottleOptions<I>;
}

/** What a schedule does with a slot while its previous run has not finished. Default `'skip'`. */
export type ScheduleOverlap = 'skip' | 'allow' | 'buffer_one' | 'cancel_other';
/** Which slots missed while no worker fired (downtime, a jump of the clock) still start a run. Default `'latest'`. */
export type ScheduleCatchUp = 'latest' | 'none' | 'all';

/** A schedule in a workflow's options. */
export interface WorkflowSchedule<I = any> {
  /** 5 fields, or 6 with seconds first. */
  cron: string;
  /** IANA time zone the expression is read in. Default `'UTC'`. */
  timezone?: string;
  /** Input of every run it starts. Default: none (undefined). */
  input?: I;
  overlap?: ScheduleOverlap;
  catchUp?: ScheduleCatchUp;
}

/** flow.schedules.create(name, options). */
export interface ScheduleOptions<I = any> extends WorkflowSchedule<I> {
  /** The workflow it starts (registered in the processes whose workers fire it). */
  workflow: string;
  /** Create it paused. Default false. */
  paused?: boolean;
}

/** A schedule as flow.schedules.list() answers it. */
export interface ScheduleInfo {
  name: string;
  workflow: string;
  cron: string;
  timezone: string;
  input: unknown;
  overlap: ScheduleOverlap;
  catchUp: ScheduleCatchUp;
  paused: boolean;
  /** The next slot not yet decided (null when the expression never fires again). */
  nextAt: Date | null;
  lastSlot: Date | null;
  lastRunId: string | null;
  /** Slots that started no run, newest first (the last 100 entries). */
  skipped: SkippedSlot[];
  /** 'workflow': from a workflow's `schedule` option; 'api': made with flow.schedules.create. */
  origin: ScheduleOrigin;
  createdAt: Date;
  updatedAt: Date;
}

/** Where a schedule comes from: a workflow's `schedule` option, or flow.schedules.create. */
export type ScheduleOrigin = 'workflow' | 'api';

/** A slot (or a run of slots: `count`, up to `until`) that started no run, and why. */
export interface SkippedSlot {
  slot: string;
  reason: 'overlap' | 'missed';
  count?: number;
  until?: string;
  /** The run that was still going, for `overlap`. */
  runId?: string;
}

export interface StartOptions extends TagOptions {
  /** The run's id. Default: a random UUID. Starting the same id twice returns the first run. */
  runId?: string;
  /** A second start with the same key returns the first run instead of creating another. */
  idempotencyKey?: string;
  /** Start no earlier than this from now. */
  delay?: DurationInput;
  /** Lower runs first. Default: the workflow's priority, else 0. */
  priority?: number;
  /** Queue to put the run in. Default: the workflow's queue. */
  queue?: string;
  /** A Sequelize transaction (or a `pg` client inside a transaction): the run exists exactly when it commits. */
  transaction?: unknown;
  /** This run fails with code `RUN_TIMEOUT` if not finished this long after this call. Default: the workflow's `timeout`, else none. */
  timeout?: DurationInput;
  /** This run is cancelled with code `DEADLINE_EXCEEDED`, never started, if its first execution has not begun this long after this call. Default: none. */
  startBy?: DurationInput;
}

export interface ResultOptions {
  /** Reject with a `DurableFlowError` (code `'INVALID_STATE'`) if the run has not finished by then. Default: wait forever. */
  timeout?: DurationInput;
}

export interface RunHandle<O = unknown> {
  runId: string;
  /** Resolves with the run's output once it completes; rejects if it fails or is cancelled. */
  result(options?: ResultOptions): Promise<O>;
}

export interface RunInfo<I = any, O = any> extends RunTagsInfo {
  runId: string;
  workflow: string;
  status: RunStatus;
  input: I;
  output: O | undefined;
  error: StoredError | null;
  queue: string;
  priority: number;
  idempotencyKey: string | null;
  parentRunId: string | null;
  /** Runs this run started with `step.invoke` / `step.invokeMany`. */
  childRunIds: string[];
  /** Times a worker claimed the run. */
  attempts: number;
  /** When a suspended, delayed or retrying run is next due; null when only an event can wake it. */
  wakeAt: Date | null;
  lease: { owner: string; expiresAt: Date | null } | null;
  createdAt: Date;
  updatedAt: Date;
  startedAt: Date | null;
  interruptedAt: Date | null;
  completedAt: Date | null;
  failedAt: Date | null;
  cancelledAt: Date | null;
  /** The slot a schedule started this run for (its fire time); null for runs started otherwise. */
  scheduledFor: Date | null;
  /** The run this one replays (flow.replay, flow.rerunFrom); null otherwise. */
  replayOf: string | null;
  /** flow.pause() was asked while a worker held the run: it pauses once its running step ends. */
  pauseRequested: boolean;
  /** The `version` of the flow that started the run (null for runs started before durable-flow stored versions). */
  version: string | null;
  /** Set for a run of a `versioning: 'pinned'` workflow: only workers of this version claim it. */
  pinnedVersion: string | null;
  /** Its `timeout`'s deadline: not finished by then, it fails with RUN_TIMEOUT. Null without one. */
  deadlineAt: Date | null;
  /** Its `startBy`: not started by then, it is cancelled with DEADLINE_EXCEEDED. Null without one. */
  startBy: Date | null;
}

export interface EventRecord {
  /** The database id of the stored event. */
  id: string;
  /** The caller's id, used to deduplicate. */
  eventId: string | null;
  name: string;
  payload: unknown;
  occurredAt: Date;
  /** True when an event with this id was already stored: nothing was recorded or woken this time. */
  duplicate: boolean;
  /** Waits this notify matched (0 for a duplicate). */
  matchedWaits: number;
}

export interface NotifyOptions {
  /** Makes the notify idempotent: a second one with the same id returns the first event. */
  id?: string;
  /** A Sequelize transaction (or `pg` client inside a transaction): the event exists exactly when it commits. */
  transaction?: unknown;
  /** Where the event came from, shown in the viewer. Default `'notify'`. */
  source?: string;
}

export type * from './operator/types.js';
