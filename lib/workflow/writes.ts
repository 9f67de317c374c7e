import { AsyncLocalStorage } from 'node:async_hooks';
import type { PendingLog } from '../db/sql/commitBatch.js';
import { DurableFlowError, StepTimeoutError } from '../errors.js';
import { encodeJson, isPlainObject } from '../json.js';
import { longTimeout } from '../timers.js';
import type { LogLevel } from '../types.js';

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Which step body (and attempt) the code now running belongs to, for logs written inside steps. */
export const stepScope = new AsyncLocalStorage<{ name: string; attempt: number }>();

/**
 * The log lines of one execution, keyed so a replay writes none twice: the n-th line written after the
 * same step (`@<step>#n`) or inside the same attempt of a step (`<step>/<attempt>#n`).
 */
export class LogBuffer {
  #pending: PendingLog[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #counters = new Map<string, number>();
  readonly #maxPayloadSize: number;

  constructor(maxPayloadSize: number) {
    this.#maxPayloadSize = maxPayloadSize;
  }

  get size(): number {
    return this.#pending.length;
  }

  /** Validates and buffers a line; throws a clear error for a bad level or data. */
  write(level: LogLevel, message: unknown, data: unknown, context: { lastStep: string; stepId(name: string): string | null; at: string }): void {
    if (!LOG_LEVELS.includes(level)) {
      throw new DurableFlowError('INVALID_ARGUMENT', `Unknown log level "${String(level)}"; use debug, info, warn or error`);
    }
    if (data !== undefined && !isPlainObject(data)) {
      throw new DurableFlowError('INVALID_ARGUMENT', `Expected workflow log data to be a plain object, got ${Array.isArray(data) ? 'an array' : typeof data}`);
    }
    const text = typeof message === 'string' ? message : String(message);
    const encoded = encodeJson(data ?? {}, `The data of log line "${text.slice(0, 60)}"`, this.#maxPayloadSize);
    encodeJson(text, 'A log message', this.#maxPayloadSize);
    const scope = stepScope.getStore();
    const prefix = scope ? `${scope.name}/${scope.attempt}` : `@${context.lastStep}`;
    const n = this.#counters.get(prefix) ?? 0;
    this.#counters.set(prefix, n + 1);
    this.#pending.push({
      step_name: scope?.name ?? null,
      step_id: scope ? context.stepId(scope.name) : null,
      key: `${prefix}#${n}`,
      level,
      message: text,
      data: JSON.parse(encoded!),
      at: context.at,
    });
  }

  /** Calls `flush` within `ms` unless the lines are taken before (lines written inside a long step body). */
  flushWithin(ms: number, flush: () => void): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#pending.length > 0) flush();
    }, ms);
    this.#timer.unref();
  }

  take(): PendingLog[] {
    this.cancelFlush();
    const logs = this.#pending;
    this.#pending = [];
    return logs;
  }

  cancelFlush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

export function parseJson(text: string | null | undefined): unknown {
  return text === null || text === undefined ? undefined : JSON.parse(text);
}

/** Rejects with StepTimeoutError after `ms` (and aborts the attempt's signal); the body keeps running. */
export function withTimeout<T>(promise: Promise<T>, ms: number, name: string, abort: AbortController): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = longTimeout(() => {
      const error = new StepTimeoutError(name, ms);
      abort.abort(error);
      reject(error);
    }, ms);
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (error: unknown) => {
        cancel();
        reject(error);
      },
    );
  });
}
