import { performance } from 'node:perf_hooks';
import { resolveBackoff } from '../config.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { loadTracing, loadedTracing } from '../tracing/tracing.js';
import type { ExecutionTrace } from '../tracing/tracing.js';
import type { LogLevel, StepContext, StepRunOptions, WorkflowLog } from '../types.js';
import { runAttempt } from './attempt.js';
import { runTimedOut, watchDeadline } from './deadline.js';
import type { ClaimedRun, HistoryStep, WorkflowDefinition } from './definition.js';
import type { ExecutionEnv, ExecutionOutcome } from './env.js';
import { PATCH_KIND, ReplayLedger } from './ledger.js';
import type { Registration } from './ledger.js';
import { workerCrashed } from './replay-errors.js';
import { Scheduler } from './scheduler.js';
import { createStepApi } from './step-api.js';
import type { GroupBranch } from './step-api.js';
import { SLEEP_BRANCH_EVENT, WORKFLOW_FINISHED_EVENT } from './suspend.js';
import type { WaitSpec } from './suspend.js';
import { parseJson } from './writes.js';

/** A lease lost this close to the run's deadline (or after it) was lost to the deadline. */
const LOST_AT_DEADLINE_SLACK_MS = 1000;

/**
 * One execution of a run: replays the workflow function from the top against the run's stored
 * history, runs the steps that have no stored result, and ends by completing, failing or suspending
 * the run (or handing it back when its worker stops).
 *
 * Writes are batched to the next moment they are needed: a step's result is stored before the next
 * step body starts (so no side effect ever runs before the previous result is durable), and merged
 * with the completion, the suspension or the next step's write otherwise. Every write is fenced by the
 * lease epoch the claim handed out.
 *
 * The handler is never interrupted: a step that must wait (sleep, event, retry backoff) returns a
 * promise that does not settle in this execution. Once no step body is running and the handler has
 * gone quiet, the execution suspends the run and abandons the handler.
 *
 * Two parts do the work: the replay ledger (ledger.ts) tells which steps are replayed and whether the
 * code changed under the run; the scheduler (scheduler.ts) holds the execution's state, the pending
 * writes and the commit chain. This class is the step primitives between them.
 */
export class Execution {
  readonly run: ClaimedRun;
  readonly #env: ExecutionEnv;
  readonly #definition: WorkflowDefinition;
  readonly #ledger: ReplayLedger;
  readonly #scheduler: Scheduler;
  readonly #dbNowAtClaim: number;
  readonly #perfAtClaim: number;
  #timedOut = false;
  /** This execution's span (lib/tracing/), when tracing is on and @opentelemetry/api is installed. */
  #trace: ExecutionTrace | undefined;

  constructor(
    env: ExecutionEnv,
    definition: WorkflowDefinition,
    run: ClaimedRun,
    history: HistoryStep[],
    claim: { snapshot: string; dbNowMs: number },
  ) {
    this.#env = env;
    this.#definition = definition;
    this.run = run;
    // The low-water mark of steps begun in this execution: until the run has stored a step, the run's
    // creation, so an event sent right after start() is seen by a first wait. Afterwards the snapshot
    // of the first execution since the run last stopped cleanly: a step that a crashed execution began
    // (and whose side effect may have fired the event its next wait needs) may have left no row.
    const snapshot = history.length === 0 ? run.createdSnapshot : run.resumeSnapshot;
    this.#dbNowAtClaim = claim.dbNowMs;
    this.#perfAtClaim = performance.now();
    this.#ledger = new ReplayLedger(run, history, snapshot);
    this.#scheduler = new Scheduler(env, run, this.#ledger, snapshot, () => this.dbNow());
    // Paused while its lease ran out (its worker died): hand it back before any step, leaving it paused.
    if (run.pauseRequested) this.#scheduler.requestStop();
  }

  /** The database clock, estimated from the claim's reading plus monotonic time since (immune to app clock skew). */
  dbNow(): number {
    return this.#dbNowAtClaim + (performance.now() - this.#perfAtClaim);
  }

  #iso(ms?: number): string {
    return this.#scheduler.iso(ms);
  }

  /** Resolves with how the execution ended. */
  get done(): Promise<ExecutionOutcome> {
    return this.#scheduler.done;
  }

  /** Runs the execution to its end. Never rejects. */
  start(): Promise<ExecutionOutcome> {
    if (!this.#env.options.tracing) return this.#begin();
    const loaded = loadedTracing();
    if (!loaded) {
      // Before @opentelemetry/api's one import in this process settled (its first executions): wait for it.
      void loadTracing().then(() => this.start());
      return this.done;
    }
    if (loaded.tracing) {
      const trace = loaded.tracing.execution(this.run);
      this.#trace = trace;
      void this.done.then((outcome) => trace.end(outcome));
    }
    return this.#begin();
  }

  #begin(): Promise<ExecutionOutcome> {
    const deadlineMs = this.run.deadlineMs ?? null;
    if (deadlineMs !== null) {
      watchDeadline(deadlineMs, () => this.dbNow(), this.done, () => this.timeOut());
      if (this.#timedOut) return this.done; // leased past its deadline (a notify's local claim): no step runs
      // A write refused past the deadline (the commit fence: this process could not see it come) ends the
      // execution as a lost lease; end the run now rather than at the next claim.
      void this.done.then((outcome) => outcome.kind === 'lost' && this.#pastDeadline() && this.#expire());
    }
    const limit = 1 + this.#definition.maxRecoveries;
    if (this.run.claimCount > limit) {
      const error = workerCrashed(this.run.runId, this.run.workflow, this.run.claimCount, this.#definition.maxRecoveries);
      this.#scheduler.guard(this.#scheduler.end({ kind: 'fail', error }));
      return this.done;
    }
    let input: unknown;
    try {
      input = parseJson(this.run.input);
    } catch (error) {
      this.#scheduler.guard(this.#scheduler.end({ kind: 'fail', error }));
      return this.done;
    }
    const context = {
      input,
      step: createStepApi(this, this.#env),
      log: this.logApi(),
      runId: this.run.runId,
      workflow: this.run.workflow,
      attempt: this.run.attempts,
    };
    Promise.resolve()
      .then(() => this.#env.debugPoint('EXECUTION_START', { runId: this.run.runId, claimCount: this.run.claimCount }))
      .then(() => (this.#trace ? this.#trace.within(() => this.#definition.handler(context)) : this.#definition.handler(context)))
      .then(
        (value) => this.#scheduler.handlerSettled({ ok: true, value }),
        (error: unknown) => this.#scheduler.handlerSettled({ ok: false, error }),
      );
    return this.done;
  }

  /** Graceful stop: finish the step bodies now running, then hand the run back instead of starting more. */
  requestStop(): void {
    this.#scheduler.requestStop();
  }

  /**
   * The run reached its deadline (`timeout`): the execution stops at once (no step starts, no result is
   * stored), step bodies' `signal` aborts with the RUN_TIMEOUT error, and durable_flow_expire fails the
   * run (a claim's sweep does it if this statement cannot).
   */
  timeOut(): void {
    if (this.#timedOut) return;
    this.#timedOut = true;
    const error = runTimedOut(this.run.deadlineMs!);
    if (this.#scheduler.leaseLost(error, { kind: 'failed', error })) this.#expire();
  }

  /** `slackMs`: how far this process's estimate of the database clock may lag behind it (see leaseLost). */
  #pastDeadline(slackMs = 0): boolean {
    return this.run.deadlineMs != null && this.dbNow() + slackMs >= this.run.deadlineMs;
  }

  /** durable_flow_expire for this run (whoever holds it, it ends once), then this process's result() waiters. */
  #expire(): void {
    this.#env.store.expireRun(this.run.id).then(
      (ended) => {
        if (ended?.status === 'failed') this.#env.onFinished(this.run.runId, { status: 'failed', error: ended.error });
      },
      (expireError: unknown) =>
        this.#env.options.logger.warn(`Could not fail run ${this.run.runId} at its deadline; the next claim will`, {
          error: (expireError as Error)?.message ?? String(expireError),
        }),
    );
  }

  /** The worker found the lease gone (heartbeat): stop writing, let step bodies know. */
  leaseLost(): void {
    // At the deadline the lease went to the run's timeout (another worker's claim ended it): say so to the
    // step bodies. That claim reads the database clock itself, which this process's estimate (the claim's
    // reading plus the time since its answer arrived) trails by a round trip: hence the slack.
    if (this.#pastDeadline(LOST_AT_DEADLINE_SLACK_MS)) this.timeOut();
    else this.#scheduler.leaseLost();
  }

  // ---------------------------------------------------------------------------------------------
  // The step API

  /** Claims a step name for this execution; a second use is a programming error that fails the run. */
  #register(name: unknown, kind: string): Registration {
    const registration = this.#ledger.register(name, kind);
    if (registration instanceof Error) throw this.fail(registration);
    return registration;
  }

  /** @internal A programming error in the workflow: the run fails once running bodies finish. */
  fail(error: Error): Error {
    return this.#scheduler.fail(error);
  }

  /** @internal step.run: memoized, or queued to run once pending writes are stored. */
  runStep<T>(name: string, options: StepRunOptions, fn: (context: StepContext) => T | Promise<T>): Promise<T> {
    const { row } = this.#register(name, 'run');
    if (typeof fn !== 'function') {
      throw this.fail(
        new DurableFlowError('INVALID_ARGUMENT', `Expected step "${name}" to be given a function, got ${typeof fn}`),
      );
    }
    const memo = this.#ledger.memoized(row);
    if (memo) return memo as Promise<T>;
    const retries = options.retries ?? this.#definition.retries;
    if (!Number.isInteger(retries) || retries < 0) {
      throw this.fail(
        new DurableFlowError('INVALID_ARGUMENT', `Expected \`retries\` of step "${name}" to be an integer >= 0, got ${String(retries)}`),
      );
    }
    const timeoutMs = options.timeout === undefined ? undefined : toMilliseconds(options.timeout, `the timeout of step "${name}"`);
    const backoff =
      options.backoff === undefined ? this.#definition.backoff : resolveBackoff(`backoff of step "${name}"`, options.backoff, this.#definition.backoff);
    const position = this.#ledger.positionOf(row);
    return new Promise<T>((resolve, reject) => {
      const host = this.#scheduler.attemptHost;
      this.#scheduler.queue({
        name,
        start: () => {
          // No step body begins after the run's deadline.
          if (this.#pastDeadline()) return this.timeOut();
          void runAttempt(host, { name, position, row, options, retries, timeoutMs, backoff, fn, resolve, reject, trace: this.#trace });
        },
      });
    });
  }

  /** @internal step.sleep / sleepUntil: `wakeAtIfNew` gives the wake time the first time only. */
  sleepStep(name: string, wakeAtIfNew: () => number): Promise<void> {
    const { row } = this.#register(name, 'sleep');
    const memo = this.#ledger.memoized(row);
    if (memo) return memo as Promise<void>;
    const stored = row?.metadata.wakeAt;
    const wakeAt = typeof stored === 'string' ? Date.parse(stored) : wakeAtIfNew();
    const position = this.#ledger.positionOf(row);
    const base = { name, kind: 'sleep', position, metadata: { wakeAt: this.#iso(wakeAt) }, error: null };
    if (wakeAt <= this.dbNow()) {
      this.#scheduler.pend({ ...base, status: 'succeeded', attempts: 1, completed_at: this.#iso(), started_at: this.#iso() });
      this.#scheduler.scheduleTick();
      return Promise.resolve();
    }
    if (!row || row.status !== 'sleeping') {
      this.#scheduler.pend({ ...base, status: 'sleeping', attempts: 0, started_at: this.#iso(), completed_at: null });
    }
    return new Promise<void>((resolve, reject) => {
      this.#scheduler.suspendOn({ name, kind: 'sleep', wakeAt, position, resolve: () => resolve(), reject });
    });
  }

  /** @internal step.patched: the stored marker, or a new one (ReplayLedger.patchTaken), stored with the next write. */
  patchStep(name: string): Promise<boolean> {
    const { row } = this.#register(name, PATCH_KIND);
    const memo = this.#ledger.memoized(row);
    if (memo) return memo as Promise<boolean>;
    const taken = this.#ledger.patchTaken();
    const at = this.#iso();
    this.#scheduler.pend({
      name, kind: PATCH_KIND, status: 'succeeded', attempts: 0, position: this.#ledger.positionOf(row),
      result: JSON.stringify(taken), metadata: {}, started_at: at, completed_at: at, error: null,
    });
    this.#scheduler.scheduleTick();
    return Promise.resolve(taken);
  }

  /**
   * @internal A wait step: for an event (`event`, `match`), with `watch` for that run to finish, with
   * `signal` for a signal of that name sent to this run.
   * Arguments are validated by the step API.
   */
  waitStep(
    name: string,
    spec: { event: string; match: Record<string, unknown>; allowPast: boolean; timeoutMs: number | undefined; watch?: string; signal?: string },
  ): Promise<unknown> {
    const { event, match, timeoutMs } = spec;
    const { row, since } = this.#register(name, 'wait');
    const memo = this.#ledger.memoized(row);
    if (memo) return memo;
    const isNew = !row?.waitId;
    const storedTimeout = row?.metadata.timeoutAt;
    const timeoutAt =
      !isNew && typeof storedTimeout === 'string' ? Date.parse(storedTimeout) : timeoutMs === undefined ? null : this.dbNow() + timeoutMs;
    if (isNew) {
      this.#scheduler.pend({
        name, kind: 'wait', status: 'waiting', attempts: 0, position: this.#ledger.positionOf(row),
        metadata: {
          eventName: event,
          ...(spec.watch ? { watchedRunId: spec.watch } : {}),
          ...(spec.signal !== undefined ? { signalName: spec.signal } : {}),
          ...(timeoutAt === null ? {} : { timeoutAt: this.#iso(timeoutAt) }),
        },
        started_at: this.#iso(), completed_at: null, error: null,
      });
    }
    return new Promise((resolve, reject) => {
      this.#scheduler.suspendOn({
        name,
        kind: 'wait',
        wakeAt: timeoutAt,
        position: null,
        wait: { event, match, allowPast: spec.allowPast, since, isNew, watch: spec.watch, signal: spec.signal },
        resolve,
        reject,
      });
    });
  }

  /**
   * @internal step.waitAny / waitAll: one wait step with a wait row per branch. A sleep branch's wake
   * time, and the timeout, are computed the first time and stored in the step's metadata. For waitAny,
   * no event or run may win after the earliest sleep branch ends (its rows' timeout is that time, or the
   * timeout if sooner); for waitAll, each branch keeps its own.
   */
  waitGroupStep(name: string, spec: { mode: 'any' | 'all'; branches: GroupBranch[]; timeoutMs: number | undefined }): Promise<unknown> {
    const { row, since } = this.#register(name, 'wait');
    const memo = this.#ledger.memoized(row);
    if (memo) return memo;
    const isNew = !row?.waitId;
    const stored = isNew ? undefined : (row?.metadata as { timeoutAt?: string; branches?: { key: string; at?: string }[] } | undefined);
    const storedAt = new Map((stored?.branches ?? []).map((b) => [b.key, b.at]));
    const now = this.dbNow();
    const timeoutAt = stored ? (typeof stored.timeoutAt === 'string' ? Date.parse(stored.timeoutAt) : null) : spec.timeoutMs === undefined ? null : now + spec.timeoutMs;
    const sleepAt = new Map(
      spec.branches.flatMap((b) => (b.kind === 'sleep' ? [[b.key, typeof storedAt.get(b.key) === 'string' ? Date.parse(storedAt.get(b.key)!) : b.wakeAtIfNew()] as const] : [])),
    );
    const earliest = (values: (number | null)[]) => values.reduce<number | null>((min, v) => (v === null ? min : min === null ? v : Math.min(min, v)), null);
    const deadline = spec.mode === 'any' ? earliest([timeoutAt, ...sleepAt.values()]) : timeoutAt;
    const branches: Omit<WaitSpec, 'name'>[] = spec.branches.map((b) => ({
      event: b.kind === 'event' ? b.event : b.kind === 'run' ? WORKFLOW_FINISHED_EVENT : SLEEP_BRANCH_EVENT,
      match: b.kind === 'event' ? b.match : b.kind === 'run' ? { runId: b.watch } : {},
      allowPast: b.kind === 'event' && b.allowPast,
      since,
      isNew,
      timeoutAt: b.kind === 'sleep' ? sleepAt.get(b.key)! : deadline,
      watch: b.kind === 'run' ? b.watch : undefined,
      branch: { key: b.key, mode: spec.mode, sleep: b.kind === 'sleep' },
    }));
    if (isNew) {
      this.#scheduler.pend({
        name, kind: 'wait', status: 'waiting', attempts: 0, position: this.#ledger.positionOf(row),
        metadata: {
          group: spec.mode,
          branches: spec.branches.map((b) => ({
            key: b.key,
            kind: b.kind,
            ...(b.kind === 'event' ? { eventName: b.event } : b.kind === 'run' ? { watchedRunId: b.watch } : { at: this.#iso(sleepAt.get(b.key)!) }),
          })),
          ...(timeoutAt === null ? {} : { timeoutAt: this.#iso(timeoutAt) }),
        },
        started_at: this.#iso(), completed_at: null, error: null,
      });
    }
    return new Promise((resolve, reject) => {
      // The run's wake-up is computed from the rows still pending, in the suspension (a waitAll branch
      // that already ended must not wake it again).
      this.#scheduler.suspendOn({ name, kind: 'wait', wakeAt: null, position: null, branches, resolve, reject });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Logs

  /** @internal */
  logApi(): WorkflowLog {
    const write = (level: LogLevel) => (message: string, data?: Record<string, unknown>) => this.#scheduler.log(level, message, data);
    return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
  }
}
