import { backoffDelay } from '../config.js';
import type { ResolvedBackoff } from '../config.js';
import type { PendingStep } from '../db/sql/commitBatch.js';
import { DurableFlowError, LeaseLostError, isNonRetriable, serializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import { encodeJson } from '../json.js';
import { RetryAfterError } from '../retry-after.js';
import type { AttemptEnd, ExecutionTrace } from '../tracing/tracing.js';
import type { StepContext, StepRunOptions } from '../types.js';
import type { ExecutionEnv } from './env.js';
import type { HistoryStep } from './definition.js';
import { derivedId } from './ids.js';
import { parseJson, stepScope, withTimeout } from './writes.js';

/** A step body still running after this long gets a `running` row, so the viewer shows it. */
const RUNNING_MARKER_MS = 250;

/** What one attempt of a step body needs from its execution. */
export interface AttemptHost {
  readonly runId: string;
  readonly env: ExecutionEnv;
  /** Aborted when the execution must stop (lease lost, infrastructure error, graceful stop ran out). */
  readonly signal: AbortSignal;
  /** The execution wrote its end or must write nothing more: the attempt's outcome is dropped. */
  isOver(): boolean;
  dbNow(): number;
  iso(ms?: number): string;
  /** Queues a write of the step's row (merged with the next commit). */
  setPending(row: PendingStep): void;
  hasPending(name: string): boolean;
  /** Stores pending writes now. */
  flush(): Promise<void>;
  /** Runs background work whose failure must end the execution. */
  guard(work: Promise<unknown>): void;
  /** The attempt failed and will be retried at `retryAt` (database-clock ms): suspend for it. */
  retryAt(name: string, retryAt: number, position: number, error: StoredError): void;
  /** The step failed for good with `error`: the run's error names this step. */
  failedFor(error: unknown, name: string): void;
  leaseLost(): void;
  fail(error: Error): Error;
  /** Bookkeeping of running bodies: the execution suspends or ends only when none runs. */
  bodyStarted(): void;
  bodyEnded(): void;
}

export interface AttemptSpec<T> {
  name: string;
  position: number;
  row: HistoryStep | undefined;
  options: StepRunOptions;
  retries: number;
  timeoutMs: number | undefined;
  backoff: ResolvedBackoff;
  fn: (context: StepContext) => T | Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  /** The execution's span, when traced: the attempt gets a span of its own under it. */
  trace?: ExecutionTrace | undefined;
}

/**
 * One attempt of a step body: its context (attempt, idempotency key, cursor, abort signal), a timeout,
 * a `running` row once it takes a while, and its outcome as a pending write: succeeded (the promise
 * resolves with the stored JSON value), retrying after backoff (the execution suspends), or failed.
 */
export async function runAttempt<T>(host: AttemptHost, spec: AttemptSpec<T>): Promise<void> {
  const { name, position, row, options, fn } = spec;
  const attempt = (row?.attempts ?? 0) + 1;
  const startedAt = host.iso();
  let cursor = row?.cursor ?? options.start;
  const isCursor = 'start' in options;
  const withCursor = () => (isCursor ? { cursor: cursor ?? null } : {});
  const attemptAbort = new AbortController();
  const context: StepContext = {
    attempt,
    idempotencyKey: derivedId(host.runId, name),
    runId: host.runId,
    stepName: name,
    signal: AbortSignal.any([host.signal, attemptAbort.signal]),
    get cursor() {
      return cursor;
    },
    advance: async (next: unknown) => {
      if (!isCursor) {
        throw new DurableFlowError('INVALID_ARGUMENT', `Step "${name}" is not a cursor step: give it a \`start\` option to use advance()`);
      }
      const encoded = encodeJson(next, `The cursor of step "${name}"`, host.env.options.maxPayloadSize);
      cursor = encoded === undefined ? undefined : JSON.parse(encoded);
      host.setPending({
        name, kind: 'run', status: 'running', attempts: attempt - 1, position,
        cursor: cursor ?? null, started_at: startedAt, completed_at: null, error: null,
      });
      await host.flush();
      await host.env.debugPoint('CURSOR_AFTER_ADVANCE', { runId: host.runId, step: name, attempt });
    },
  };
  host.bodyStarted();
  const marker = setTimeout(() => {
    if (host.hasPending(name) || host.isOver()) return;
    host.setPending({
      name, kind: 'run', status: 'running', attempts: attempt - 1, position,
      started_at: startedAt, completed_at: null, error: (row?.error as StoredError | null) ?? null, ...withCursor(),
    });
    host.guard(host.flush());
  }, RUNNING_MARKER_MS);
  marker.unref();
  const span = spec.trace?.attempt(name, attempt);
  // 'abandoned': the execution ended meanwhile (its outcome is dropped).
  let outcome: AttemptEnd = 'abandoned';
  let failure: unknown;
  try {
    await host.env.debugPoint('STEP_BEFORE_BODY', { runId: host.runId, step: name, attempt });
    const call = () => fn(context);
    const body = stepScope.run({ name, attempt }, () => Promise.resolve().then(() => (span ? span.within(call) : call())));
    const value = await (spec.timeoutMs === undefined ? body : withTimeout(body, spec.timeoutMs, name, attemptAbort));
    if (host.isOver()) return;
    const encoded = encodeJson(value, `The result of step "${name}"`, host.env.options.maxPayloadSize);
    host.setPending({
      name, kind: 'run', status: 'succeeded', attempts: attempt, position, result: encoded,
      error: null, started_at: startedAt, completed_at: host.iso(), ...withCursor(),
    });
    outcome = 'succeeded';
    await host.env.debugPoint('STEP_AFTER_BODY', { runId: host.runId, step: name, attempt });
    spec.resolve(parseJson(encoded) as T);
  } catch (error) {
    failure = error;
    if (host.isOver()) return;
    if (error instanceof LeaseLostError) {
      outcome = 'lost';
      host.leaseLost();
      return;
    }
    const stored = serializeError(error, name);
    const failedAt = host.dbNow(); // the retry counts from this very instant
    // Every failed attempt stays visible (the last ten), even once a later attempt succeeds.
    const failures = [
      ...((row?.metadata.failures as unknown[] | undefined) ?? []),
      { attempt, class: stored.class, message: stored.message.slice(0, 500), at: host.iso(failedAt) },
    ].slice(-10);
    if (!isNonRetriable(error) && attempt <= spec.retries) {
      let retryAt: number;
      try {
        // A RetryAfterError names the delay itself (a 429's Retry-After): it replaces the backoff for this attempt.
        retryAt = failedAt + (error instanceof RetryAfterError ? error.afterMs : backoffDelay(spec.backoff, attempt, `the backoff of step "${name}"`));
      } catch (backoffError) {
        outcome = 'failed';
        host.fail(backoffError as Error);
        return;
      }
      outcome = 'retrying';
      host.setPending({
        name, kind: 'run', status: 'retrying', attempts: attempt, position, error: stored,
        metadata: { retryAt: host.iso(retryAt), failures }, started_at: startedAt, completed_at: null, ...withCursor(),
      });
      host.retryAt(name, retryAt, position, stored);
    } else {
      host.setPending({
        name, kind: 'run', status: 'failed', attempts: attempt, position, error: stored,
        metadata: { failures }, started_at: startedAt, completed_at: host.iso(),
      });
      outcome = 'failed';
      host.failedFor(error, name);
      spec.reject(error);
    }
  } finally {
    span?.end(outcome, failure);
    clearTimeout(marker);
    attemptAbort.abort();
    host.bodyEnded();
  }
}
