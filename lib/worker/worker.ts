import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { schemaProblem } from '../db/migrator.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { MAX_TIMER_MS } from '../timers.js';
import type { ClaimedBatch } from '../db/sql/claimed.js';
import type { ClaimedRun, HistoryStep } from '../workflow/definition.js';
import type { LocalWorker } from './local-claim.js';
import { Execution } from '../workflow/executor.js';
import type { ExecutionOutcome } from '../workflow/env.js';
import { resolveWorkerOptions } from './host.js';
import type { StopOptions, WorkerHost, WorkerOptions } from './host.js';

export type { StopOptions, WorkerHost, WorkerOptions } from './host.js';

/** Every this many polls a worker checks the schema, in case it missed the migrations NOTIFY. */
const SCHEMA_CHECK_POLLS = 10;

/**
 * Claims due runs and executes them, up to `concurrency` at a time.
 *
 * States: idle → running → stopping → stopped. While running it claims when NOTIFY says a run became
 * due, when its timer for the next known wake-up fires, when a slot frees after a full claim, and
 * every `pollInterval` regardless (NOTIFY is only a hint). A heartbeat renews the leases of the runs
 * it executes; a run whose lease is found gone stops writing at once. While heartbeats fail it claims
 * nothing (the heartbeat keeps trying, and claims resume when one succeeds). `stop()` resolves once
 * every execution has ended and the leases are released.
 */
export class Worker implements LocalWorker {
  readonly id: string;
  readonly concurrency: number;
  readonly queues: string[];
  readonly pollIntervalMs: number;
  readonly #host: WorkerHost;
  readonly #executions = new Map<string, Execution>();
  #state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  #claiming = false;
  #claimAgain = false;
  /** A claim may find work: the last one was full, or a wake-up came while all slots were busy. */
  #wanted = true;
  #pollTimer: NodeJS.Timeout | undefined;
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeAt = Infinity;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #unlisten: (() => void) | undefined;
  #unreconnect: (() => void) | undefined;
  #warnedNoWorkflows = false;
  /** Slots promised to runs being started in this process (direct dispatch). */
  #reserved = 0;
  #claimFailures = 0;
  /**
   * The last heartbeat failed: this worker cannot renew leases, so it takes no run (by claim, direct
   * dispatch or notify) until a heartbeat succeeds again. Otherwise it would claim runs only to lose
   * them after one lease, and take its own runs back from itself, over and over.
   */
  #heartbeatFailing = false;
  /**
   * Why the database's schema is not the one this release was written for (a newer release migrated
   * it, or migrate() has not run), or null. While set, the worker takes no run. Checked at start, on
   * the migrations NOTIFY, after a LISTEN reconnect, and every SCHEMA_CHECK_POLLS polls.
   */
  #schemaProblem: string | null = null;
  /** Checks run one after another, so that an older answer never overrides a newer one. */
  #schemaChecks: Promise<void> = Promise.resolve();
  #polls = 0;
  #orphanCheckAt = 0;
  #stopping: Promise<void> | undefined;
  #firing: Promise<unknown> = Promise.resolve(); // the last poll's schedule firing (schedules/fire.ts), awaited by stop()
  /** Runs claimed, and how their executions ended (for tests and metrics). */
  readonly stats = { claimed: 0, completed: 0, failed: 0, suspended: 0, released: 0, lost: 0, errors: 0 };

  constructor(host: WorkerHost, options: WorkerOptions = {}) {
    this.#host = host;
    ({ concurrency: this.concurrency, queues: this.queues, pollIntervalMs: this.pollIntervalMs } = resolveWorkerOptions(options));
    this.id = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  get state(): string {
    return this.#state;
  }

  /** Runs executing now. */
  get active(): number {
    return this.#executions.size;
  }

  async start(): Promise<void> {
    if (this.#state === 'running') return;
    if (this.#state !== 'idle') throw new DurableFlowError('INVALID_STATE', `Cannot start a worker that is ${this.#state}; create a new one with flow.worker()`);
    this.#state = 'running';
    this.#host.track(this, true);
    await this.#checkSchema();
    this.#pollTimer = setInterval(() => {
      if (++this.#polls % SCHEMA_CHECK_POLLS === 0) void this.#checkSchema();
      if (this.#takesRuns()) this.#firing = this.#host.fireSchedules();
      this.#requestClaim(true);
    }, this.pollIntervalMs);
    this.#heartbeatTimer = setInterval(() => void this.#heartbeat(), this.#host.options.heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
    this.#unreconnect = this.#host.listener.onReconnect(() => {
      void this.#checkSchema();
      this.#requestClaim(true);
    });
    try {
      const unlistenWake = await this.#host.listener.listen(this.#host.wakeChannel, (queue) => {
        if (queue === '*' || this.queues.includes(queue)) this.#requestClaim(true);
      });
      const unlistenMigrations = await this.#host.listener.listen(this.#host.migrationsChannel, () => void this.#checkSchema());
      this.#unlisten = () => {
        unlistenWake();
        unlistenMigrations();
      };
    } catch (error) {
      this.#host.options.logger.warn('Worker could not LISTEN; it polls every pollInterval instead', { error: (error as Error).message });
    }
    if (this.#takesRuns()) this.#firing = this.#host.fireSchedules();
    this.#requestClaim(true);
  }

  /** Looks for due runs now (also what tests call instead of waiting for a poll). */
  #requestClaim(wanted: boolean): void {
    if (wanted) this.#wanted = true;
    if (this.#state !== 'running') return;
    if (this.#claiming) {
      this.#claimAgain = true;
      return;
    }
    void this.#claimLoop();
  }

  async #claimLoop(): Promise<void> {
    this.#claiming = true;
    try {
      for (;;) {
        this.#claimAgain = false;
        const free = this.freeSlots;
        if (free <= 0 || !this.#wanted) break;
        const names = [...this.#host.definitions.keys()];
        if (names.length === 0) {
          if (!this.#warnedNoWorkflows) {
            this.#warnedNoWorkflows = true;
            this.#host.options.logger.warn('Worker started but no workflow is registered in this process; register workflows with flow.workflow() before starting workers');
          }
          break;
        }
        const claimed = await this.#claim(free, names);
        this.#claimFailures = 0;
        this.#wanted = claimed >= free;
        if (claimed === 0 && Date.now() >= this.#orphanCheckAt) await this.#checkOrphans(names);
        if (!this.#wanted && !this.#claimAgain) break;
        if (this.#claimAgain) this.#wanted = true;
      }
    } catch (error) {
      this.#claimFailures++;
      if (this.#claimFailures === 1 || this.#claimFailures % 30 === 0) {
        this.#host.options.logger.warn('Worker could not claim runs; retrying at the next poll', { error: (error as Error).message });
      }
    } finally {
      this.#claiming = false;
    }
  }

  async #claim(limit: number, names: string[]): Promise<number> {
    // Fault tests hold claims of several processes here, to release them at one moment.
    await this.#host.executionEnv.debugPoint('CLAIM_BEFORE', { worker: this.id });
    const { batch, nextWakeMs } = await this.#host.store.claim({
      queues: this.queues,
      workflows: names,
      limit,
      owner: this.id,
      leaseMs: this.#host.options.leaseTtlMs,
    });
    if (nextWakeMs !== null) this.#scheduleWake(nextWakeMs);
    this.#startClaimed(batch);
    return batch.runs.length;
  }

  #startClaimed(batch: ClaimedBatch): void {
    for (const run of batch.runs) this.#execute(run, batch.history.get(run.id) ?? [], batch.snapshot, batch.dbNowMs);
  }

  /** Slots free for new runs (0 unless running). */
  get freeSlots(): number {
    return this.#takesRuns() ? this.concurrency - this.#executions.size - this.#reserved : 0;
  }

  #takesRuns(): boolean {
    return this.#state === 'running' && !this.#heartbeatFailing && this.#schemaProblem === null;
  }

  /**
   * Compares the database's migrations with this release's. On a mismatch it stops taking runs and
   * hands back those it executes (their running steps finish first), saying why once; when the schema
   * matches again it resumes. A failed check changes nothing (the claim reports connection problems).
   */
  #checkSchema(): Promise<void> {
    this.#schemaChecks = this.#schemaChecks.then(() => this.#compareSchema());
    return this.#schemaChecks;
  }

  async #compareSchema(): Promise<void> {
    let problem: string | null;
    try {
      problem = schemaProblem(await this.#host.checkSchema());
    } catch {
      return;
    }
    if (problem === this.#schemaProblem || this.#state !== 'running') return;
    this.#schemaProblem = problem;
    if (problem) {
      this.#host.options.logger.warn(problem, { worker: this.id });
      for (const execution of this.#executions.values()) execution.requestStop();
    } else {
      this.#host.options.logger.warn('The database schema matches this release again; this worker claims runs again', { worker: this.id });
      this.#requestClaim(true);
    }
  }

  /**
   * @internal Reserves up to `max` free slots for runs a statement of this process leases to this
   * worker directly (see LocalClaims); with `queue`, only if this worker takes that queue.
   */
  reserve(max: number, queue?: string): number {
    if (queue !== undefined && !this.queues.includes(queue)) return 0;
    const n = Math.max(0, Math.min(max, this.freeSlots));
    this.#reserved += n;
    return n;
  }

  /** @internal Executes runs leased to this worker by such a statement and gives back the `reserved` slots. */
  take(batch: ClaimedBatch, reserved: number): void {
    this.#reserved -= reserved;
    this.#startClaimed(batch);
  }

  /**
   * While idle, at most once a minute: are runs of workflows this process does not register piling
   * up? Then say so, since nothing else will (their status stays `enqueued`/`ready`).
   */
  async #checkOrphans(names: string[]): Promise<void> {
    this.#orphanCheckAt = Date.now() + 60_000;
    const orphans = await this.#host.store.orphanedWorkflows({ queues: this.queues, workflows: names });
    for (const { workflow, runs } of orphans) {
      this.#host.options.logger.warn(
        `${runs} run(s) of workflow "${workflow}" have been due for over a minute and no worker claims them: no running process registers that workflow for queue(s) ${this.queues.join(', ')}. Register it with flow.workflow('${workflow}', …) in your worker processes, or cancel those runs.`,
        { workflow, runs },
      );
    }
  }

  #execute(run: ClaimedRun, history: HistoryStep[], snapshot: string, dbNowMs: number): void {
    const definition = this.#host.definitions.get(run.workflow);
    if (!definition) return; // cannot happen: the claim filters on registered names
    this.stats.claimed++;
    // Claimed again while this process still executes it (its lease ran out here unrenewed, and no one
    // else took it first): the old execution is fenced by the new epoch. End it now, so that only the
    // new one is tracked, heartbeated and counted.
    this.#executions.get(run.id)?.leaseLost();
    const execution = new Execution(this.#host.executionEnv, definition, run, history, { snapshot, dbNowMs });
    this.#executions.set(run.id, execution);
    // A claim already under way when a schema check found a mismatch: hand the run back, start no step.
    if (this.#schemaProblem !== null) execution.requestStop();
    void execution.start().then((outcome) => this.#ended(execution, outcome));
  }

  #ended(execution: Execution, outcome: ExecutionOutcome): void {
    if (this.#executions.get(execution.run.id) === execution) this.#executions.delete(execution.run.id);
    switch (outcome.kind) {
      case 'completed': this.stats.completed++; break;
      case 'failed': this.stats.failed++; break;
      case 'suspended':
        this.stats.suspended++;
        if (outcome.wakeAt !== null) this.#scheduleWake(outcome.wakeAt - execution.dbNow());
        break;
      case 'released': this.stats.released++; break;
      case 'lost': this.stats.lost++; break;
      case 'error': this.stats.errors++; break;
    }
    this.#idleResolve?.();
    this.#requestClaim(false);
  }

  /** Claims again when the earliest known run wakes up (if that is sooner than the next poll). */
  #scheduleWake(inMs: number): void {
    if (this.#state !== 'running') return;
    const delay = Math.max(0, Math.ceil(inMs) + 1);
    if (delay >= this.pollIntervalMs) return;
    const at = Date.now() + delay;
    if (this.#wakeTimer && at >= this.#wakeAt) return;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wakeAt = Infinity;
      this.#requestClaim(true);
    }, delay);
  }

  async #heartbeat(): Promise<void> {
    // With nothing to renew it still runs while failing: its success is what lets claims resume.
    if (this.#executions.size === 0 && !this.#heartbeatFailing) return;
    const executions = [...this.#executions.values()];
    try {
      // Fault tests make heartbeats fail here (a worker that cannot renew its leases).
      await this.#host.executionEnv.debugPoint('HEARTBEAT_BEFORE', { worker: this.id, runs: executions.map((e) => e.run.runId) });
      const held = await this.#host.store.heartbeat(this.#host.controlDb(), {
        runs: executions.map((e) => e.run),
        owner: this.id,
        leaseMs: this.#host.options.leaseTtlMs,
      });
      if (this.#heartbeatFailing) {
        this.#heartbeatFailing = false;
        this.#requestClaim(true);
      }
      for (const execution of executions) {
        if (!held.has(execution.run.id) && this.#executions.get(execution.run.id) === execution) {
          this.#host.options.logger.warn(`Lost the lease of run ${execution.run.runId}; this worker stops executing it`);
          execution.leaseLost();
        }
      }
    } catch (error) {
      this.#heartbeatFailing = true;
      this.#host.options.logger.warn('Heartbeat failed; leases expire unless the next one succeeds, and this worker claims nothing until one does', {
        error: (error as Error).message,
      });
    }
  }

  #idleResolve: (() => void) | undefined;

  /**
   * @internal For the test harness: claims and executes due runs in this process until none is due
   * and none is executing, without timers, LISTEN or heartbeats. Returns how many executions ran.
   */
  async drain(limit = 10_000): Promise<number> {
    if (this.#state !== 'idle') throw new DurableFlowError('INVALID_STATE', 'drain() needs a worker that was never started');
    const names = [...this.#host.definitions.keys()];
    await this.#host.fireSchedules();
    let executions = 0;
    for (;;) {
      const claimed = await this.#claim(this.concurrency, names);
      executions += claimed;
      if (claimed === 0 && this.#executions.size === 0) return executions;
      if (executions > limit) {
        throw new DurableFlowError('INVALID_STATE', `Runs did not become idle after ${limit} executions; a workflow may be looping (retrying or waking itself forever)`);
      }
      await Promise.all([...this.#executions.values()].map((execution) => execution.done));
    }
  }

  /**
   * Stops claiming, lets the steps now running finish, and hands every run back (due at once, so
   * another worker continues it). After `timeout` the remaining runs are handed back anyway and their
   * executions write nothing more.
   */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.#stopping) return this.#stopping;
    if (this.#state === 'idle') {
      this.#state = 'stopped';
      return Promise.resolve();
    }
    const timeoutMs = toMilliseconds(options.timeout ?? '30 seconds', 'the stop `timeout`', { allowZero: true });
    this.#state = 'stopping';
    this.#stopping = this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#unlisten?.();
    this.#unreconnect?.();
    for (const execution of this.#executions.values()) execution.requestStop();
    const deadline = Date.now() + timeoutMs;
    while (this.#executions.size > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#idleResolve = resolve;
        const timer = setTimeout(resolve, Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now())));
        timer.unref();
      });
      this.#idleResolve = undefined;
    }
    if (this.#executions.size > 0) {
      const remaining = [...this.#executions.values()];
      await this.#host.store
        .releaseRuns(remaining.map((e) => ({ id: e.run.id, epoch: e.run.epoch, delayMs: 0, clean: false })))
        .catch((error: unknown) => {
          this.#host.options.logger.warn('Could not hand back runs on stop; their leases expire instead', { error: (error as Error).message });
        });
      for (const execution of remaining) execution.leaseLost();
      this.#executions.clear();
    }
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    while (this.#claiming) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.#firing;
    this.#state = 'stopped';
    this.#host.track(this, false);
  }
}
