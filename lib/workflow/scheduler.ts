import type { PendingLog, PendingStep } from '../db/sql/commitBatch.js';
import { LeaseLostError, serializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { LogLevel } from '../types.js';
import type { AttemptHost } from './attempt.js';
import type { ClaimedRun } from './definition.js';
import { handBackAfterError } from './env.js';
import type { ExecutionEnv, ExecutionOutcome } from './env.js';
import type { ReplayLedger } from './ledger.js';
import { suspendStateOf, suspendTransaction } from './suspend.js';
import type { Suspension, WaitSpec } from './suspend.js';
import { LogBuffer } from './writes.js';

/** A step body that starts once the pending writes are stored. */
export interface NewStep {
  name: string;
  start(): void;
}

/** The endings an execution writes itself: complete, fail, or hand the run back. */
export type Ending = { kind: 'complete'; value: unknown } | { kind: 'fail'; error: unknown } | { kind: 'release' };

/**
 * The life of an execution, which only moves down this list:
 * - `running`: the handler replays and new step bodies start;
 * - `stopping` (requestStop, from `running` only): bodies now running finish, none starts; the run is
 *   handed back where the next would start (it may still complete, fail or suspend first);
 * - `aborting` (an infrastructure error, or a lost lease for the instant its abort is signalled):
 *   nothing more is written while the run is handed back;
 * - `ended`: the outcome is known and `done` resolved.
 */
export type ExecutionState = 'running' | 'stopping' | 'aborting' | 'ended';

/** Log lines written inside a long step body are stored at most this late. */
const LOG_FLUSH_MS = 200;

/**
 * The scheduler and commit chain of one execution: decides, after the handler has run as far as it
 * can, what to write and whether the execution continues, suspends or ends. Writes are serialised on
 * one chain and fenced by the claim's lease epoch.
 */
export class Scheduler {
  readonly #env: ExecutionEnv;
  readonly #run: ClaimedRun;
  readonly #ledger: ReplayLedger;
  readonly #snapshot: string;
  readonly #dbNow: () => number;
  readonly #pendingSteps = new Map<string, PendingStep>();
  readonly #logs: LogBuffer;
  readonly #suspensions = new Map<string, Suspension>();
  #toStart: NewStep[] = [];
  readonly #abort = new AbortController();
  /** Step bodies now running: the execution suspends or ends only when none runs. */
  #running = 0;
  /** How the handler returned, once it has: the execution ends with it when no body runs. */
  #settled: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  /** The first programming error of the workflow: it fails the run, ahead of the handler's outcome. */
  #fatal: Error | undefined;
  #state: ExecutionState = 'running';
  // Tick mechanics, separate from the execution's life: ticks never overlap, and a tick asked for
  // while one runs happens after it.
  /** A tick is queued on setImmediate (many requests in one turn make one tick). */
  #tickScheduled = false;
  /** A tick is awaiting its writes. */
  #ticking = false;
  /** A tick was asked for while one ran: run another once it is over. */
  #tickAgain = false;
  #commitChain: Promise<unknown> = Promise.resolve();
  #finish!: (outcome: ExecutionOutcome) => void;
  /** Resolves with how the execution ended. */
  readonly done: Promise<ExecutionOutcome>;
  /** What a step body's attempts (attempt.ts) use of this execution. */
  readonly attemptHost: AttemptHost;

  constructor(env: ExecutionEnv, run: ClaimedRun, ledger: ReplayLedger, snapshot: string, dbNow: () => number) {
    this.#env = env;
    this.#run = run;
    this.#ledger = ledger;
    this.#snapshot = snapshot;
    this.#dbNow = dbNow;
    this.#logs = new LogBuffer(env.options.maxPayloadSize);
    this.done = new Promise((resolve) => {
      this.#finish = resolve;
    });
    this.attemptHost = {
      runId: run.runId,
      env,
      signal: this.#abort.signal,
      isOver: () => this.#isOver(),
      dbNow,
      iso: (ms) => this.iso(ms),
      setPending: (row) => this.pend(row),
      hasPending: (name) => this.#pendingSteps.has(name),
      flush: () => this.flush(),
      guard: (work) => this.guard(work),
      retryAt: (name, wakeAt, position, error) =>
        this.#suspensions.set(name, { name, kind: 'retry', wakeAt, position, error, resolve: () => undefined, reject: () => undefined }),
      failedFor: (error, name) => this.#ledger.attribute(error, name),
      leaseLost: () => this.leaseLost(),
      fail: (error) => this.fail(error),
      bodyStarted: () => void this.#running++,
      bodyEnded: () => {
        this.#running--;
        this.scheduleTick();
      },
    };
  }

  /** The outcome is known (a method, so that the state is read afresh after an await). */
  #ended(): boolean {
    return this.#state === 'ended';
  }

  /** A stop or a pause was asked for: no step starts; the run is handed back once running bodies end. */
  #stopping(): boolean {
    return this.#state === 'stopping';
  }

  /** The execution wrote its end or must write nothing more. */
  #isOver(): boolean {
    return this.#ended() || this.#state === 'aborting';
  }

  iso(ms = this.#dbNow()): string {
    return new Date(ms).toISOString();
  }

  /** Queues a step row, written with the next commit. */
  pend(row: PendingStep): void {
    this.#pendingSteps.set(row.name, row);
  }

  /** Queues a step body to start once the pending writes are stored. */
  queue(step: NewStep): void {
    this.#toStart.push(step);
    this.scheduleTick();
  }

  /** A sleep or wait that does not settle in this execution unless its time or event comes. */
  suspendOn(suspension: Suspension): void {
    this.#suspensions.set(suspension.name, suspension);
    this.scheduleTick();
  }

  /** The handler returned or threw: the execution ends once running bodies finish. */
  handlerSettled(settled: { ok: true; value: unknown } | { ok: false; error: unknown }): void {
    this.#settled = settled;
    this.scheduleTick();
  }

  /** A programming error in the workflow: the run fails once running bodies finish. */
  fail(error: Error): Error {
    this.#fatal ??= error;
    this.scheduleTick();
    return error;
  }

  requestStop(): void {
    if (this.#state === 'running') this.#state = 'stopping';
    this.scheduleTick();
  }

  /** The lease is gone; or (`reason` RUN_TIMEOUT, outcome `failed`) the run reached its deadline, which SQL enforces. */
  leaseLost(reason: Error = new LeaseLostError(this.#run.runId), outcome: ExecutionOutcome = { kind: 'lost' }): boolean {
    if (this.#ended()) return false;
    this.#state = 'aborting'; // already while the abort listeners of step bodies run
    this.#abort.abort(reason);
    this.#conclude(outcome);
    return true;
  }

  log(level: LogLevel, message: unknown, data: unknown): void {
    this.#logs.write(level, message, data, {
      lastStep: this.#ledger.lastStepName,
      stepId: (name) => this.#ledger.stepId(name),
      at: this.iso(),
    });
    if (this.#running > 0) this.#logs.flushWithin(LOG_FLUSH_MS, () => this.#ended() || this.guard(this.flush()));
  }

  scheduleTick(): void {
    if (this.#tickScheduled || this.#ended()) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      void this.#tick();
    });
  }

  async #tick(): Promise<void> {
    if (this.#ended()) return;
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
      if (this.#tickAgain && !this.#ended()) {
        this.#tickAgain = false;
        this.scheduleTick();
      }
    }
  }

  async #step(): Promise<void> {
    if (this.#fatal) {
      if (this.#running === 0) await this.end({ kind: 'fail', error: this.#fatal });
      return;
    }
    if (this.#settled) {
      if (this.#running > 0) return; // let floating step bodies store their results first
      if (this.#settled.ok) await this.end({ kind: 'complete', value: this.#settled.value });
      else await this.end({ kind: 'fail', error: this.#settled.error });
      return;
    }
    const changed = this.#ledger.checkDeterminism();
    if (changed) {
      this.fail(changed);
      return this.#step();
    }
    if (this.#toStart.length > 0) {
      if (this.#state === 'stopping') {
        if (this.#running === 0) await this.end({ kind: 'release' });
        return;
      }
      await this.flush();
      if (this.#isOver()) return; // an earlier write failed meanwhile: start no body (the run may be another's)
      if (this.#stopping()) return this.#step(); // a pause was asked for meanwhile: start nothing more
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
      await this.flush();
    }
  }

  #takePending(): { steps: PendingStep[]; logs: PendingLog[] } {
    const steps = [...this.#pendingSteps.values()];
    const logs = this.#logs.take();
    this.#pendingSteps.clear();
    return { steps, logs };
  }

  /**
   * Stores pending writes now (serialised with any other write of this execution). A failed write
   * ends the execution: what it held was never durable, so the run must resume from what is.
   */
  flush(): Promise<void> {
    const next = this.#commitChain.then(async () => {
      if (this.#isOver()) return;
      const { steps, logs } = this.#takePending();
      if (steps.length === 0 && logs.length === 0) return;
      await this.#env.debugPoint('FLUSH_BEFORE_COMMIT', { runId: this.#run.runId });
      const result = await this.#env.commit({ run: this.#run.id, epoch: this.#run.epoch, snapshot: this.#snapshot, steps, logs });
      if (!result.held) throw new LeaseLostError(this.#run.runId);
      this.#ledger.recordStepIds(result.steps);
      // flow.pause(): no step starts after this write; the run is handed back, which leaves it paused.
      if (result.pauseRequested) this.requestStop();
      await this.#env.debugPoint('FLUSH_AFTER_COMMIT', { runId: this.#run.runId });
    });
    this.#commitChain = next.catch((error: unknown) => this.#onEngineError(error));
    return next;
  }

  /** Runs background work whose failure must end the execution rather than vanish. */
  guard(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.#onEngineError(error));
  }

  /** Suspends the run until its earliest sleep, timeout or retry, unless something can settle right now. */
  async #suspend(): Promise<void> {
    await this.#commitChain;
    if (this.#isOver()) return; // an earlier write failed and ended the execution
    const now = this.#dbNow();
    const due: Suspension[] = [];
    for (const s of this.#suspensions.values()) {
      if (s.kind === 'sleep' && s.wakeAt !== null && s.wakeAt <= now) due.push(s);
    }
    for (const s of due) {
      this.#pendingSteps.set(s.name, {
        name: s.name, kind: 'sleep', status: 'succeeded', attempts: 1, position: s.position,
        metadata: { wakeAt: this.iso(s.wakeAt!) }, completed_at: this.iso(), error: null,
      });
    }
    const waits: WaitSpec[] = [...this.#suspensions.values()].flatMap((s) =>
      s.kind !== 'wait' ? [] : s.branches ? s.branches.map((b) => ({ name: s.name, ...b })) : [{ name: s.name, ...s.wait!, timeoutAt: s.wakeAt }],
    );
    await this.#env.debugPoint('SUSPEND_BEFORE_COMMIT', { runId: this.#run.runId });
    const { steps, logs } = this.#takePending();
    const result = await suspendTransaction({
      store: this.#env.store,
      commit: (request) => this.#env.commit(request),
      pending: { steps, logs },
      run: this.#run,
      snapshot: this.#snapshot,
      waits,
      iso: (ms) => this.iso(ms),
      mustContinue: due.length > 0,
      suspendState: () => suspendStateOf(this.#suspensions.values()),
      inTransaction: () => this.#env.debugPoint('SUSPEND_IN_TRANSACTION', { runId: this.#run.runId }),
    });
    this.#ledger.recordStepIds(result.stepIds);
    await this.#env.debugPoint('SUSPEND_AFTER_COMMIT', { runId: this.#run.runId, kind: result.kind });
    if (result.kind === 'suspended') {
      this.#conclude({ kind: 'suspended', wakeAt: result.wakeAt });
      return;
    }
    if (result.pauseRequested) this.requestStop(); // settled in memory, but flow.pause() was asked: start nothing more
    const settled = due.map((s) => ({ s, ok: true, value: undefined as unknown }));
    for (const { name, ok, value } of result.settled) {
      const s = this.#suspensions.get(name);
      if (!s) continue;
      if (!ok) this.#ledger.attribute(value, name);
      settled.push({ s, ok, value });
    }
    for (const { s, ok, value } of settled) {
      this.#suspensions.delete(s.name);
      if (ok) s.resolve(value);
      else s.reject(value);
    }
    this.scheduleTick();
  }

  /** Ends the execution with a final write: complete, fail or hand back the run. */
  async end(how: Ending): Promise<void> {
    await this.#commitChain;
    if (this.#ended()) return;
    let status: 'completed' | 'failed' | 'ready' = how.kind === 'complete' ? 'completed' : how.kind === 'fail' ? 'failed' : 'ready';
    let output: string | undefined;
    let error: StoredError | undefined;
    try {
      if (how.kind === 'complete') output = encodeJson(how.value, `The output of workflow "${this.#run.workflow}"`, this.#env.options.maxPayloadSize);
    } catch (encodeError) {
      status = 'failed';
      error = serializeError(encodeError);
    }
    if (how.kind === 'fail') error = serializeError(how.error, this.#ledger.stepOf(how.error));
    const { steps, logs } = this.#takePending();
    await this.#env.debugPoint('END_BEFORE_COMMIT', { runId: this.#run.runId, status });
    const result = await this.#env.commit({
      run: this.#run.id,
      epoch: this.#run.epoch,
      snapshot: this.#snapshot,
      steps,
      logs,
      transition: { status, output, error, wakeNow: status === 'ready' },
    });
    if (!result.held) throw new LeaseLostError(this.#run.runId);
    await this.#env.debugPoint('END_AFTER_COMMIT', { runId: this.#run.runId, status });
    if (status === 'completed') {
      this.#env.onFinished(this.#run.runId, { status, ...(output === undefined ? {} : { output }) });
      this.#conclude({ kind: 'completed' });
    } else if (status === 'failed') {
      this.#env.onFinished(this.#run.runId, { status, error: error! });
      this.#conclude({ kind: 'failed', error });
    } else {
      this.#conclude({ kind: 'released' });
    }
  }

  async #onEngineError(error: unknown): Promise<void> {
    if (this.#isOver()) return;
    if (error instanceof LeaseLostError) {
      this.leaseLost();
      return;
    }
    this.#state = 'aborting';
    this.#env.options.logger.warn(`Execution of run ${this.#run.runId} stopped by an error; the run is handed back to be resumed`, {
      error: (error as Error)?.message ?? String(error),
    });
    this.#abort.abort(error);
    await handBackAfterError(this.#env, this.#run);
    this.#conclude({ kind: 'error', error });
  }

  #conclude(outcome: ExecutionOutcome): void {
    if (this.#ended()) return;
    this.#state = 'ended';
    this.#logs.cancelFlush();
    if (outcome.kind !== 'suspended' && outcome.kind !== 'completed' && outcome.kind !== 'failed') {
      if (!this.#abort.signal.aborted) this.#abort.abort(new LeaseLostError(this.#run.runId));
    }
    this.#finish(outcome);
  }
}
