import { performance } from 'node:perf_hooks';
import { resolveBackoff } from '../config.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError, LeaseLostError, deserializeError, serializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { LogLevel, StepContext, StepRunOptions, WorkflowLog } from '../types.js';
import { runAttempt } from './attempt.js';
import type { AttemptHost } from './attempt.js';
import type { ClaimedRun, HistoryStep, WorkflowDefinition } from './definition.js';
import { handBackAfterError } from './env.js';
import type { ExecutionEnv, ExecutionOutcome } from './env.js';
import { codeChanged, duplicateStepName, invalidStepName, stepKindChanged, workerCrashed } from './replay-errors.js';
import { MAX_STEP_NAME } from './ids.js';
import { createStepApi } from './step-api.js';
import { suspendStateOf, suspendTransaction } from './suspend.js';
import type { Suspension, WaitSpec } from './suspend.js';
import { LogBuffer, parseJson } from './writes.js';
import type { PendingLog, PendingStep } from './writes.js';

interface NewStep {
  name: string;
  start(): void;
}

/** Log lines written inside a long step body are stored at most this late. */
const LOG_FLUSH_MS = 200;

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
 */
export class Execution {
  readonly run: ClaimedRun;
  readonly #env: ExecutionEnv;
  readonly #definition: WorkflowDefinition;
  readonly #history = new Map<string, HistoryStep>();
  readonly #stepIds = new Map<string, string>();
  readonly #requested = new Set<string>();
  readonly #pendingSteps = new Map<string, PendingStep>();
  readonly #logs: LogBuffer;
  readonly #suspensions = new Map<string, Suspension>();
  #toStart: NewStep[] = [];
  #newNames: string[] = [];
  readonly #errorSteps = new WeakMap<object, string>();
  readonly #abort = new AbortController();
  readonly #snapshot: string;
  readonly #dbNowAtClaim: number;
  readonly #perfAtClaim: number;
  /** Per step: the low-water mark a wait right after it uses (see resolveWaits). */
  readonly #stepMarks = new Map<string, string>();
  #lastStepName = '^';
  #position = 0;
  #running = 0;
  #settled: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  #fatal: Error | undefined;
  #ended = false;
  /** Set the moment the execution must write nothing more (lease lost, infrastructure error). */
  #aborted = false;
  #ticking = false;
  #tickAgain = false;
  #tickScheduled = false;
  #stopRequested = false;
  #commitChain: Promise<unknown> = Promise.resolve();
  #finish!: (outcome: ExecutionOutcome) => void;
  readonly #done: Promise<ExecutionOutcome>;
  readonly #attemptHost: AttemptHost;

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
    this.#snapshot = history.length === 0 ? run.createdSnapshot : run.resumeSnapshot;
    this.#dbNowAtClaim = claim.dbNowMs;
    this.#perfAtClaim = performance.now();
    this.#logs = new LogBuffer(env.options.maxPayloadSize);
    for (const step of history) {
      this.#history.set(step.name, step);
      this.#stepIds.set(step.name, step.id);
    }
    this.#position = history.reduce((max, step) => Math.max(max, (step.position ?? -1) + 1), 0);
    this.#done = new Promise((resolve) => {
      this.#finish = resolve;
    });
    this.#attemptHost = {
      runId: run.runId,
      env,
      signal: this.#abort.signal,
      isOver: () => this.#ended || this.#aborted,
      dbNow: () => this.dbNow(),
      iso: (ms) => this.#iso(ms),
      setPending: (row) => void this.#pendingSteps.set(row.name, row),
      hasPending: (name) => this.#pendingSteps.has(name),
      flush: () => this.#flush(),
      guard: (work) => this.#guard(work),
      retryAt: (name, wakeAt, position, error) =>
        void this.#suspensions.set(name, { name, kind: 'retry', wakeAt, position, error, resolve: () => undefined, reject: () => undefined }),
      failedFor: (error, name) => {
        if (typeof error === 'object' && error !== null) this.#errorSteps.set(error, name);
      },
      leaseLost: () => this.leaseLost(),
      fail: (error) => this.fail(error),
      bodyStarted: () => void this.#running++,
      bodyEnded: () => {
        this.#running--;
        this.#scheduleTick();
      },
    };
  }

  /** The database clock, estimated from the claim's reading plus monotonic time since (immune to app clock skew). */
  dbNow(): number {
    return this.#dbNowAtClaim + (performance.now() - this.#perfAtClaim);
  }

  #iso(ms = this.dbNow()): string {
    return new Date(ms).toISOString();
  }

  /** Resolves with how the execution ended. */
  get done(): Promise<ExecutionOutcome> {
    return this.#done;
  }

  /** Runs the execution to its end. Never rejects. */
  start(): Promise<ExecutionOutcome> {
    const limit = 1 + this.#definition.maxRecoveries;
    if (this.run.claimCount > limit) {
      const error = workerCrashed(this.run.runId, this.run.workflow, this.run.claimCount, this.#definition.maxRecoveries);
      this.#guard(this.#end({ kind: 'fail', error }));
      return this.#done;
    }
    let input: unknown;
    try {
      input = parseJson(this.run.input);
    } catch (error) {
      this.#guard(this.#end({ kind: 'fail', error }));
      return this.#done;
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
      .then(() => this.#definition.handler(context))
      .then(
        (value) => {
          this.#settled = { ok: true, value };
          this.#scheduleTick();
        },
        (error: unknown) => {
          this.#settled = { ok: false, error };
          this.#scheduleTick();
        },
      );
    return this.#done;
  }

  /** Graceful stop: finish the step bodies now running, then hand the run back instead of starting more. */
  requestStop(): void {
    this.#stopRequested = true;
    this.#scheduleTick();
  }

  /** The worker found the lease gone (heartbeat): stop writing, let step bodies know. */
  leaseLost(): void {
    if (this.#ended) return;
    this.#aborted = true;
    this.#abort.abort(new LeaseLostError(this.run.runId));
    this.#conclude({ kind: 'lost' });
  }

  // ---------------------------------------------------------------------------------------------
  // The step API

  /**
   * Claims a step name for this execution (a second use is a programming error that fails the run)
   * and returns its stored row, with the mark of the step before it.
   */
  #register(name: unknown, kind: string): { row: HistoryStep | undefined; since: string } {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_STEP_NAME) {
      throw this.fail(invalidStepName(name, kind, this.run.workflow, MAX_STEP_NAME));
    }
    if (this.#requested.has(name)) {
      throw this.fail(duplicateStepName(name, this.run.workflow));
    }
    this.#requested.add(name);
    const row = this.#history.get(name);
    if (!row) this.#newNames.push(name);
    if (row && row.kind !== kind && row.status === 'succeeded') {
      throw this.fail(stepKindChanged(name, this.run.runId, row.kind, kind));
    }
    const since = this.#stepMarks.get(this.#lastStepName) ?? this.run.createdSnapshot;
    this.#lastStepName = name;
    this.#stepMarks.set(name, row?.snapshot ?? this.#snapshot);
    return { row, since };
  }

  /** @internal A programming error in the workflow: the run fails once running bodies finish. */
  fail(error: Error): Error {
    this.#fatal ??= error;
    this.#scheduleTick();
    return error;
  }

  #memoized(row: HistoryStep | undefined): Promise<unknown> | undefined {
    if (!row) return undefined;
    if (row.status === 'succeeded') return Promise.resolve(parseJson(row.result));
    if (row.status === 'failed' && row.error) {
      const error = deserializeError(row.error as StoredError);
      this.#errorSteps.set(error, row.name);
      return Promise.reject(error);
    }
    return undefined;
  }

  /** @internal step.run: memoized, or queued to run once pending writes are stored. */
  runStep<T>(name: string, options: StepRunOptions, fn: (context: StepContext) => T | Promise<T>): Promise<T> {
    const { row } = this.#register(name, 'run');
    if (typeof fn !== 'function') {
      throw this.fail(
        new DurableFlowError('INVALID_ARGUMENT', `Expected step "${name}" to be given a function, got ${typeof fn}`),
      );
    }
    const memo = this.#memoized(row);
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
    const position = row?.position ?? this.#position++;
    return new Promise<T>((resolve, reject) => {
      this.#toStart.push({
        name,
        start: () => void runAttempt(this.#attemptHost, { name, position, row, options, retries, timeoutMs, backoff, fn, resolve, reject }),
      });
      this.#scheduleTick();
    });
  }

  /** @internal step.sleep / sleepUntil: `wakeAtIfNew` gives the wake time the first time only. */
  sleepStep(name: string, wakeAtIfNew: () => number): Promise<void> {
    const { row } = this.#register(name, 'sleep');
    const memo = this.#memoized(row);
    if (memo) return memo as Promise<void>;
    const stored = row?.metadata.wakeAt;
    const wakeAt = typeof stored === 'string' ? Date.parse(stored) : wakeAtIfNew();
    const position = row?.position ?? this.#position++;
    const base = { name, kind: 'sleep', position, metadata: { wakeAt: this.#iso(wakeAt) }, error: null };
    if (wakeAt <= this.dbNow()) {
      this.#pendingSteps.set(name, { ...base, status: 'succeeded', attempts: 1, completed_at: this.#iso(), started_at: this.#iso() });
      this.#scheduleTick();
      return Promise.resolve();
    }
    if (!row || row.status !== 'sleeping') {
      this.#pendingSteps.set(name, { ...base, status: 'sleeping', attempts: 0, started_at: this.#iso(), completed_at: null });
    }
    return new Promise<void>((resolve, reject) => {
      this.#suspensions.set(name, { name, kind: 'sleep', wakeAt, position, resolve: () => resolve(), reject });
      this.#scheduleTick();
    });
  }

  /**
   * @internal A wait step: for an event (`event`, `match`) or, with `watch`, for that run to finish.
   * Arguments are validated by the step API.
   */
  waitStep(
    name: string,
    spec: { event: string; match: Record<string, unknown>; allowPast: boolean; timeoutMs: number | undefined; watch?: string },
  ): Promise<unknown> {
    const { event, match, timeoutMs } = spec;
    const { row, since } = this.#register(name, 'wait');
    const memo = this.#memoized(row);
    if (memo) return memo;
    const isNew = !row?.waitId;
    const storedTimeout = row?.metadata.timeoutAt;
    const timeoutAt =
      !isNew && typeof storedTimeout === 'string' ? Date.parse(storedTimeout) : timeoutMs === undefined ? null : this.dbNow() + timeoutMs;
    if (isNew) {
      this.#pendingSteps.set(name, {
        name, kind: 'wait', status: 'waiting', attempts: 0, position: row?.position ?? this.#position++,
        metadata: {
          eventName: event,
          ...(spec.watch ? { watchedRunId: spec.watch } : {}),
          ...(timeoutAt === null ? {} : { timeoutAt: this.#iso(timeoutAt) }),
        },
        started_at: this.#iso(), completed_at: null, error: null,
      });
    }
    return new Promise((resolve, reject) => {
      this.#suspensions.set(name, {
        name,
        kind: 'wait',
        wakeAt: timeoutAt,
        position: null,
        wait: { event, match, allowPast: spec.allowPast, since, isNew, watch: spec.watch },
        resolve,
        reject,
      });
      this.#scheduleTick();
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Logs

  /** @internal */
  logApi(): WorkflowLog {
    const write = (level: LogLevel) => (message: string, data?: Record<string, unknown>) => this.#log(level, message, data);
    return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
  }

  #log(level: LogLevel, message: unknown, data: unknown): void {
    this.#logs.write(level, message, data, {
      lastStep: this.#lastStepName,
      stepId: (name) => this.#stepIds.get(name) ?? null,
      at: this.#iso(),
    });
    if (this.#running > 0) this.#logs.flushWithin(LOG_FLUSH_MS, () => this.#ended || this.#guard(this.#flush()));
  }

  // ---------------------------------------------------------------------------------------------
  // The scheduler: decides, after the handler has run as far as it can, what to write and whether
  // the execution continues, suspends or ends.

  #scheduleTick(): void {
    if (this.#tickScheduled || this.#ended) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      void this.#tick();
    });
  }

  async #tick(): Promise<void> {
    if (this.#ended) return;
    if (this.#ticking) {
      this.#tickAgain = true;
      return;
    }
    this.#ticking = true;
    try {
      await this.#step();
    } catch (error) {
      await this.#onEngineError(error);
    } finally {
      this.#ticking = false;
      if (this.#tickAgain && !this.#ended) {
        this.#tickAgain = false;
        this.#scheduleTick();
      }
    }
  }

  async #step(): Promise<void> {
    if (this.#fatal) {
      if (this.#running === 0) await this.#end({ kind: 'fail', error: this.#fatal });
      return;
    }
    if (this.#settled) {
      if (this.#running > 0) return; // let floating step bodies store their results first
      if (this.#settled.ok) await this.#end({ kind: 'complete', value: this.#settled.value });
      else await this.#end({ kind: 'fail', error: this.#settled.error });
      return;
    }
    if (this.#newNames.length > 0) {
      this.#checkDeterminism();
      if (this.#fatal) return this.#step();
    }
    if (this.#toStart.length > 0) {
      if (this.#stopRequested) {
        if (this.#running === 0) await this.#end({ kind: 'release' });
        return;
      }
      await this.#flush();
      if (this.#ended || this.#aborted) return; // an earlier write failed meanwhile: start no body (the run may be another's)
      const starting = this.#toStart;
      this.#toStart = [];
      for (const step of starting) step.start();
      return;
    }
    if (this.#running === 0 && this.#suspensions.size > 0) {
      await this.#suspend();
      return;
    }
    if (this.#pendingSteps.size > 0 || (this.#logs.size > 0 && this.#running === 0)) {
      // Nothing to merge the write with (other bodies still run, or the handler awaits something else).
      await this.#flush();
    }
  }

  /**
   * A new step is about to run while stored steps have not been replayed: the code changed under
   * this run (a step renamed, removed or inserted). Running it could repeat a side effect under a new
   * name, so the run fails with a clear error instead.
   */
  #checkDeterminism(): void {
    const fresh = this.#newNames;
    this.#newNames = [];
    const unvisited = [...this.#history.keys()].filter((name) => !this.#requested.has(name));
    if (unvisited.length === 0) return;
    this.fail(codeChanged(this.run.workflow, this.run.runId, fresh, unvisited));
  }

  #takePending(): { steps: PendingStep[]; logs: PendingLog[] } {
    const steps = [...this.#pendingSteps.values()];
    const logs = this.#logs.take();
    this.#pendingSteps.clear();
    return { steps, logs };
  }

  #recordStepIds(rows: unknown): void {
    for (const [id, name] of rows as [string | number, string][]) this.#stepIds.set(name, String(id));
  }

  /**
   * Stores pending writes now (serialised with any other write of this execution). A failed write
   * ends the execution: what it held was never durable, so the run must resume from what is.
   */
  #flush(): Promise<void> {
    const next = this.#commitChain.then(async () => {
      if (this.#ended || this.#aborted) return;
      const { steps, logs } = this.#takePending();
      if (steps.length === 0 && logs.length === 0) return;
      await this.#env.debugPoint('FLUSH_BEFORE_COMMIT', { runId: this.run.runId });
      const result = await this.#env.commit({ run: this.run.id, epoch: this.run.epoch, snapshot: this.#snapshot, steps, logs });
      if (!result.held) throw new LeaseLostError(this.run.runId);
      this.#recordStepIds(result.steps);
      await this.#env.debugPoint('FLUSH_AFTER_COMMIT', { runId: this.run.runId });
    });
    this.#commitChain = next.catch((error: unknown) => this.#onEngineError(error));
    return next;
  }

  /** Runs background work whose failure must end the execution rather than vanish. */
  #guard(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.#onEngineError(error));
  }

  /** Suspends the run until its earliest sleep, timeout or retry, unless something can settle right now. */
  async #suspend(): Promise<void> {
    await this.#commitChain;
    if (this.#ended || this.#aborted) return; // an earlier write failed and ended the execution
    const now = this.dbNow();
    const due: Suspension[] = [];
    for (const s of this.#suspensions.values()) {
      if (s.kind === 'sleep' && s.wakeAt !== null && s.wakeAt <= now) due.push(s);
    }
    for (const s of due) {
      this.#pendingSteps.set(s.name, {
        name: s.name, kind: 'sleep', status: 'succeeded', attempts: 1, position: s.position,
        metadata: { wakeAt: this.#iso(s.wakeAt!) }, completed_at: this.#iso(), error: null,
      });
    }
    const waits: WaitSpec[] = [...this.#suspensions.values()].flatMap((s) =>
      s.kind === 'wait' ? [{ name: s.name, ...s.wait!, timeoutAt: s.wakeAt }] : [],
    );
    await this.#env.debugPoint('SUSPEND_BEFORE_COMMIT', { runId: this.run.runId });
    const { steps, logs } = this.#takePending();
    const result = await suspendTransaction({
      pool: this.#env.pool,
      commit: (request) => this.#env.commit(request),
      pending: { steps, logs },
      sql: this.#env.sql,
      lockNamespace: this.#env.lockNamespace,
      offsetMs: this.#env.clockOffsetMs(),
      run: this.run,
      snapshot: this.#snapshot,
      waits,
      iso: (ms) => this.#iso(ms),
      mustContinue: due.length > 0,
      suspendState: () => suspendStateOf(this.#suspensions.values()),
      inTransaction: () => this.#env.debugPoint('SUSPEND_IN_TRANSACTION', { runId: this.run.runId }),
    });
    this.#recordStepIds(result.stepIds);
    await this.#env.debugPoint('SUSPEND_AFTER_COMMIT', { runId: this.run.runId, kind: result.kind });
    if (result.kind === 'suspended') {
      this.#conclude({ kind: 'suspended', wakeAt: result.wakeAt });
      return;
    }
    const settled = due.map((s) => ({ s, ok: true, value: undefined as unknown }));
    for (const { name, ok, value } of result.settled) {
      const s = this.#suspensions.get(name);
      if (!s) continue;
      if (!ok && typeof value === 'object' && value !== null) this.#errorSteps.set(value, name);
      settled.push({ s, ok, value });
    }
    this.#settle(settled);
  }

  #settle(settled: { s: Suspension; ok: boolean; value: unknown }[]): void {
    for (const { s, ok, value } of settled) {
      this.#suspensions.delete(s.name);
      if (ok) s.resolve(value);
      else s.reject(value);
    }
    this.#scheduleTick();
  }

  /** Ends the execution with a final write: complete, fail or hand back the run. */
  async #end(how: { kind: 'complete'; value: unknown } | { kind: 'fail'; error: unknown } | { kind: 'release' }): Promise<void> {
    await this.#commitChain;
    if (this.#ended) return;
    let status: 'completed' | 'failed' | 'ready' = how.kind === 'complete' ? 'completed' : how.kind === 'fail' ? 'failed' : 'ready';
    let output: string | undefined;
    let error: StoredError | undefined;
    try {
      if (how.kind === 'complete') output = encodeJson(how.value, `The output of workflow "${this.run.workflow}"`, this.#env.options.maxPayloadSize);
    } catch (encodeError) {
      status = 'failed';
      error = serializeError(encodeError);
    }
    if (how.kind === 'fail') {
      error = serializeError(how.error, typeof how.error === 'object' && how.error !== null ? this.#errorSteps.get(how.error) : undefined);
    }
    const { steps, logs } = this.#takePending();
    await this.#env.debugPoint('END_BEFORE_COMMIT', { runId: this.run.runId, status });
    const result = await this.#env.commit({
      run: this.run.id,
      epoch: this.run.epoch,
      snapshot: this.#snapshot,
      steps,
      logs,
      transition: { status, output, error, wakeNow: status === 'ready' },
    });
    if (!result.held) throw new LeaseLostError(this.run.runId);
    await this.#env.debugPoint('END_AFTER_COMMIT', { runId: this.run.runId, status });
    if (status === 'completed') {
      this.#env.onFinished(this.run.runId, { status, ...(output === undefined ? {} : { output }) });
      this.#conclude({ kind: 'completed' });
    } else if (status === 'failed') {
      this.#env.onFinished(this.run.runId, { status, error: error! });
      this.#conclude({ kind: 'failed' });
    } else {
      this.#conclude({ kind: 'released' });
    }
  }

  async #onEngineError(error: unknown): Promise<void> {
    if (this.#ended || this.#aborted) return;
    if (error instanceof LeaseLostError) {
      this.leaseLost();
      return;
    }
    this.#aborted = true;
    this.#env.options.logger.warn(`Execution of run ${this.run.runId} stopped by an error; the run is handed back to be resumed`, {
      error: (error as Error)?.message ?? String(error),
    });
    this.#abort.abort(error);
    await handBackAfterError(this.#env, this.run);
    this.#conclude({ kind: 'error', error });
  }

  #conclude(outcome: ExecutionOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#logs.cancelFlush();
    if (outcome.kind !== 'suspended' && outcome.kind !== 'completed' && outcome.kind !== 'failed') {
      if (!this.#abort.signal.aborted) this.#abort.abort(new LeaseLostError(this.run.runId));
    }
    this.#finish(outcome);
  }
}
