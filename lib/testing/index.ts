/**
 * durable-flow/testing: test your workflows against a real Postgres without sleeping and without a
 * worker loop. Drain due work in-process, move the flow's clock, deliver events, and assert on runs
 * with plain `node:assert` errors (any test runner shows them).
 */
import assert from 'node:assert/strict';
import type { Change } from '../changes/feed.js';
import { toDate, toMilliseconds } from '../duration.js';
import type { DurationInput, TimeInput } from '../duration.js';
import type { DurableFlow } from '../flow.js';
import type { EventRecord, LogLevel, NotifyOptions, RunHandle, RunInfo } from '../types.js';
import type { Timeline } from '../read/timeline.js';
import { metricTables } from '../metrics/reads.js';
import { MAX_ATTEMPTS, triggerStartsTable } from '../triggers/deferred.js';

/** A run: its handle, its id, or a workflow (handle or name), meaning that workflow's latest run. */
export type RunRef = RunHandle<any> | string | { readonly name: string; start: unknown };

export interface HarnessOptions {
  /** Runs executed at once while draining. Default 20. */
  concurrency?: number;
  /** Executions after which drain() gives up (a workflow that never settles). Default 10,000. */
  maxExecutions?: number;
}

export interface LogExpectation {
  level?: LogLevel;
  /** The exact message, or a pattern it must match. */
  message?: string | RegExp;
  /** Data the log line must equal (deep). */
  data?: Record<string, unknown>;
  /** Only lines written by this step. */
  step?: string;
}

function describeTimeline(timeline: Timeline): string {
  const { run } = timeline;
  const lines = [`run ${run.runId} (${run.workflow}) is ${run.status}`];
  if (run.error) lines.push(`  error: ${run.error.class}: ${run.error.message}`);
  for (const { step, waits } of timeline.steps) {
    const wait = !waits[0] ? '' : waits[0].signal !== null ? ` waiting for signal "${waits[0].signal}" (${waits[0].status})` : ` waiting for "${waits[0].event}" ${JSON.stringify(waits[0].match)} (${waits[0].status})`;
    const error = step.error ? ` error: ${String(step.error.class)}: ${String(step.error.message)}` : '';
    lines.push(`  step "${step.name}" ${step.status}, ${step.attempts} attempt(s)${wait}${error}`);
  }
  if (timeline.steps.length === 0) lines.push('  (no steps recorded)');
  return lines.join('\n');
}

/** Drives one flow in tests: see createTestHarness. */
export class TestHarness {
  readonly flow: DurableFlow;
  readonly #options: Required<HarnessOptions>;

  constructor(flow: DurableFlow, options: HarnessOptions = {}) {
    this.flow = flow;
    this.#options = { concurrency: options.concurrency ?? 20, maxExecutions: options.maxExecutions ?? 10_000 };
  }

  /**
   * Runs every due run in this process until no run is due and none is executing (sleeping and
   * waiting runs stay put until you travel or send their event). Returns how many executions ran.
   * Pending starts of event triggers (a deferred `on`) are made too, also those of events the runs sent.
   */
  async drain(): Promise<number> {
    let executions = 0;
    for (;;) {
      const ran = await this.flow.worker({ concurrency: this.#options.concurrency }).drain(this.#options.maxExecutions - executions);
      executions += ran;
      // Runs that ran may have sent events whose deferred starts are pending: another pass makes them.
      if (ran === 0 || executions >= this.#options.maxExecutions || !(await this.#pendingStarts())) return executions;
    }
  }

  /** Whether a pending event-trigger start of a workflow registered here is left to make. */
  async #pendingStarts(): Promise<boolean> {
    const { rows } = await this.flow.pool.query(
      `SELECT 1 FROM ${triggerStartsTable(this.flow.tables)} WHERE workflow_name = ANY($1::text[]) AND attempts < $2 LIMIT 1`,
      [[...this.flow.definitions.keys()], MAX_ATTEMPTS],
    );
    return rows.length > 0;
  }

  /** The flow's clock: the database clock plus the time travelled. */
  async now(): Promise<Date> {
    const { rows } = await this.flow.pool.query<{ now: Date }>(`SELECT statement_timestamp() + $1::float8 * interval '1 millisecond' AS now`, [
      this.flow.clockOffsetMs,
    ]);
    return rows[0]!.now;
  }

  /** Moves the flow's clock forward (durable sleeps, timeouts and backoffs see it; your code's Date does not). */
  travel(duration: DurationInput): Promise<Date> {
    this.flow.setClockOffset(this.flow.clockOffsetMs + toMilliseconds(duration, 'the travel duration'));
    return this.now();
  }

  /** Moves the flow's clock to `time` (never backwards). */
  async travelTo(time: TimeInput): Promise<Date> {
    const target = toDate(time, 'the travel time').getTime();
    const now = (await this.now()).getTime();
    if (target > now) this.flow.setClockOffset(this.flow.clockOffsetMs + (target - now));
    return this.now();
  }

  /** The earliest time a suspended or delayed run wakes up, or null. */
  async nextWakeAt(run?: RunRef): Promise<Date | null> {
    const runId = run === undefined ? null : await this.#runId(run);
    const { rows } = await this.flow.pool.query<{ at: Date | null }>(
      `SELECT min(wake_at) AS at FROM ${this.flow.tables.runs}
       WHERE lease_owner IS NULL AND wake_at IS NOT NULL AND ($1::text IS NULL OR run_id = $1)`,
      [runId],
    );
    return rows[0]?.at ?? null;
  }

  /** Travels to the next wake-up (a sleep's end, a timeout, a retry, a delayed start) and returns it. */
  async travelToNextWake(run?: RunRef): Promise<Date> {
    const at = await this.nextWakeAt(run);
    assert.ok(at, `Expected a run to be sleeping, waiting with a timeout or retrying, but none has a wake-up time${run === undefined ? '' : ` (${await this.#runId(run)})`}`);
    await this.travelTo(at);
    return at;
  }

  /** Sends an event (flow.notify) and drains: the runs it wakes run as far as they can. */
  async resumeWorkflowsFor(event: string, payload?: unknown, options?: NotifyOptions): Promise<EventRecord> {
    const record = await this.flow.notify(event, payload ?? {}, options);
    await this.drain();
    return record;
  }

  /** Collects the live changes committed while `fn` runs (and until they stop arriving). */
  async captureChanges(fn: () => unknown): Promise<Change[]> {
    const changes: Change[] = [];
    const unsubscribe = this.flow.onChange((change) => void changes.push(change));
    try {
      await this.flow.changesReady();
      await fn();
      let seen = -1;
      const deadline = Date.now() + 3000;
      while (seen !== changes.length && Date.now() < deadline) {
        seen = changes.length;
        await new Promise((resolve) => setTimeout(resolve, 60));
      }
      return changes;
    } finally {
      unsubscribe();
    }
  }

  /**
   * Deletes every run, event (and pending event-trigger start), schedule, workflow pause, bulk operation, audit entry and metric, puts the clock
   * back, and creates the schedules of the workflows' options again (their next slots counted from
   * the clock put back).
   */
  async reset(): Promise<void> {
    this.flow.setClockOffset(0);
    const t = this.flow.tables;
    for (const table of [t.runs, t.events, triggerStartsTable(t), t.workflowPauses, t.operations, t.audit, ...metricTables(t)]) await this.flow.pool.query(`DELETE FROM ${table}`);
    await this.flow.schedules.reset();
  }

  async #runId(run: RunRef): Promise<string> {
    if (typeof run === 'string') return run;
    if ('runId' in run && typeof run.runId === 'string') return run.runId;
    const name = (run as { name: string }).name;
    const { rows } = await this.flow.pool.query<{ run_id: string }>(
      `SELECT run_id FROM ${this.flow.tables.runs} WHERE workflow_name = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
      [name],
    );
    assert.ok(rows[0], `Expected a run of workflow "${name}", but there is none`);
    return rows[0].run_id;
  }

  /** The run's timeline; fails the test if there is no such run. */
  async timeline(run: RunRef): Promise<Timeline> {
    const runId = await this.#runId(run);
    const timeline = await this.flow.timeline(runId);
    assert.ok(timeline, `Expected run ${runId} to exist`);
    return timeline;
  }

  async #expectStatus(run: RunRef, status: string): Promise<Timeline> {
    const timeline = await this.timeline(run);
    if (timeline.run.status !== status) assert.fail(`Expected run to be ${status}, but ${describeTimeline(timeline)}`);
    return timeline;
  }

  /** The run completed (and, when given, its output deep-equals `output`). Returns the run. */
  async assertCompleted(run: RunRef, ...output: [unknown?]): Promise<RunInfo> {
    const timeline = await this.#expectStatus(run, 'completed');
    if (output.length > 0) assert.deepStrictEqual(timeline.run.output, output[0], `Run ${timeline.run.runId} completed with a different output`);
    return timeline.run;
  }

  /** The run failed; `error` checks its error class (a class, its name) or message (a RegExp). */
  async assertFailed(run: RunRef, error?: string | RegExp | (abstract new (...args: any[]) => Error)): Promise<RunInfo> {
    const timeline = await this.#expectStatus(run, 'failed');
    const stored = timeline.run.error;
    if (error instanceof RegExp) {
      assert.match(stored?.message ?? '', error, `Run ${timeline.run.runId} failed with "${stored?.message}"`);
    } else if (error !== undefined) {
      const name = typeof error === 'string' ? error : error.name;
      assert.equal(stored?.class, name, `Expected run ${timeline.run.runId} to fail with ${name}, but it failed with ${stored?.class}: ${stored?.message}`);
    }
    return timeline.run;
  }

  /** The run was cancelled. */
  async assertCancelled(run: RunRef): Promise<RunInfo> {
    return (await this.#expectStatus(run, 'cancelled')).run;
  }

  /** The run is sleeping (on `step`, when given). Returns the sleeping step's wake time. */
  async assertSleeping(run: RunRef, options: { step?: string } = {}): Promise<Date> {
    const timeline = await this.#expectStatus(run, 'sleeping');
    const sleeping = timeline.steps.find(({ step }) => step.status === 'sleeping' && (options.step === undefined || step.name === options.step));
    if (!sleeping) assert.fail(`Expected step "${options.step ?? '(any)'}" to be sleeping, but ${describeTimeline(timeline)}`);
    return new Date(String(sleeping.step.metadata.wakeAt));
  }

  /** The run waits for `event` (with exactly this `match`, when given). Returns the wait. */
  async assertWaitingFor(run: RunRef, event: string, options: { match?: Record<string, unknown> } = {}) {
    const timeline = await this.#expectStatus(run, 'waiting');
    const waits = timeline.steps.flatMap((s) => s.waits).filter((w) => w.status === 'pending' && w.event === event);
    if (waits.length === 0) assert.fail(`Expected run to wait for event "${event}", but ${describeTimeline(timeline)}`);
    if (options.match !== undefined) {
      const wait = waits.find((w) => JSON.stringify(w.match) === JSON.stringify(options.match)) ?? waits[0]!;
      assert.deepStrictEqual(wait.match, options.match, `Run waits for "${event}" with another match`);
      return wait;
    }
    return waits[0]!;
  }

  /** The step stored this result (deep equality). */
  async assertStepResult(run: RunRef, step: string, expected: unknown): Promise<void> {
    const timeline = await this.timeline(run);
    const entry = timeline.steps.find((s) => s.step.name === step);
    if (!entry) assert.fail(`Expected a step "${step}", but ${describeTimeline(timeline)}`);
    if (entry.step.status !== 'succeeded') assert.fail(`Expected step "${step}" to have succeeded, but ${describeTimeline(timeline)}`);
    assert.deepStrictEqual(entry.step.result, expected, `Step "${step}" of run ${timeline.run.runId} stored a different result`);
  }

  /** The step ran this many attempts. */
  async assertStepAttempts(run: RunRef, step: string, attempts: number): Promise<void> {
    const timeline = await this.timeline(run);
    const entry = timeline.steps.find((s) => s.step.name === step);
    if (!entry) assert.fail(`Expected a step "${step}", but ${describeTimeline(timeline)}`);
    assert.equal(entry.step.attempts, attempts, `Expected step "${step}" to have run ${attempts} attempt(s), but it ran ${entry.step.attempts}`);
  }

  /** The run wrote a log line like this. Returns it. */
  async assertLog(run: RunRef, expected: LogExpectation) {
    const timeline = await this.timeline(run);
    const stepId = expected.step === undefined ? undefined : timeline.steps.find((s) => s.step.name === expected.step)?.step.id;
    const logs = [...timeline.runLogs, ...timeline.steps.flatMap((s) => s.logs)];
    const found = logs.find(
      (log) =>
        (expected.level === undefined || log.level === expected.level) &&
        (expected.message === undefined ||
          (expected.message instanceof RegExp ? expected.message.test(log.message) : log.message === expected.message)) &&
        (expected.data === undefined || isDeepStrictEqual(log.data, expected.data)) &&
        (expected.step === undefined || log.stepId === stepId),
    );
    if (!found) {
      const listing = logs.map((l) => `  [${l.level}] ${l.message} ${JSON.stringify(l.data)}`).join('\n') || '  (no log lines)';
      assert.fail(`Expected run ${timeline.run.runId} to have logged ${describeExpectation(expected)}; its log lines:\n${listing}`);
    }
    return found;
  }
}

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

function describeExpectation(expected: LogExpectation): string {
  const parts = [
    expected.level && `level ${expected.level}`,
    expected.message !== undefined && `message ${expected.message instanceof RegExp ? String(expected.message) : JSON.stringify(expected.message)}`,
    expected.data && `data ${JSON.stringify(expected.data)}`,
    expected.step && `in step "${expected.step}"`,
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : 'a line';
}

/** A harness for `flow` (migrated, on a test database). Register workflows on the flow as usual. */
export function createTestHarness(flow: DurableFlow, options?: HarnessOptions): TestHarness {
  return new TestHarness(flow, options);
}
