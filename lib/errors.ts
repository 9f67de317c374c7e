/**
 * The error hierarchy. Every error durable-flow throws is a `DurableFlowError` with a stable string
 * `code`; the subclasses users catch are exported from the package entry.
 */

export type DurableFlowErrorCode =
  | 'INVALID_OPTION'
  | 'INVALID_ARGUMENT'
  | 'DUPLICATE_STEP_NAME'
  | 'NOT_SERIALIZABLE'
  | 'NON_RETRIABLE'
  | 'WAIT_TIMEOUT'
  | 'CHILD_WORKFLOW_FAILED'
  | 'LEASE_LOST'
  | 'NON_DETERMINISTIC'
  | 'UNKNOWN_WORKFLOW'
  | 'RUN_NOT_FOUND'
  | 'SCHEDULE_NOT_FOUND'
  | 'STEP_NOT_FOUND'
  | 'WAIT_NOT_FOUND'
  | 'OPERATION_NOT_FOUND'
  | 'INVALID_STATE'
  | 'WORKER_CRASHED'
  | 'RUN_FAILED'
  | 'RUN_CANCELLED'
  | 'STEP_TIMEOUT'
  | 'RUN_ID_CONFLICT'
  | 'EVENT_ID_CONFLICT'
  | 'SIGNAL_ID_CONFLICT'
  | 'RUN_TIMEOUT'
  | 'DEADLINE_EXCEEDED'
  | 'RETRY_AFTER'
  | 'RATE_LIMITED'
  | 'CLOSED';

export class DurableFlowError extends Error {
  readonly code: DurableFlowErrorCode;

  constructor(code: DurableFlowErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Throw from a step to fail it at once, without retries. */
export class NonRetriableError extends DurableFlowError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NON_RETRIABLE', message, options);
  }
}

/** Thrown by `step.waitForEvent` when its timeout passes first. The outcome is memoized. */
export class WaitTimeoutError extends DurableFlowError {
  readonly eventName: string;
  readonly stepName: string;

  constructor(eventName: string, stepName: string) {
    super('WAIT_TIMEOUT', `Timed out waiting for event "${eventName}" in step "${stepName}"`);
    this.eventName = eventName;
    this.stepName = stepName;
  }
}

/** Thrown by `step.invoke` when the child run failed and `onFailure` is `'raise'` (the default). */
export class ChildWorkflowFailedError extends DurableFlowError {
  readonly runId: string;
  readonly workflow: string;
  readonly errorClass: string | undefined;
  readonly errorMessage: string | undefined;

  constructor(runId: string, workflow: string, errorClass?: string, errorMessage?: string) {
    const detail = [errorClass, errorMessage].filter(Boolean).join(' - ');
    super('CHILD_WORKFLOW_FAILED', `Child workflow ${workflow} ${runId} failed${detail ? `: ${detail}` : ''}`);
    this.runId = runId;
    this.workflow = workflow;
    this.errorClass = errorClass;
    this.errorMessage = errorMessage;
  }
}

/** A step result or input that cannot be stored as JSON. Never retried: the same code gives the same value. */
export class SerializationError extends DurableFlowError {
  constructor(message: string) {
    super('NOT_SERIALIZABLE', message);
  }
}

/** The code of a workflow no longer matches the history stored for one of its runs. */
export class NonDeterminismError extends DurableFlowError {
  constructor(message: string) {
    super('NON_DETERMINISTIC', message);
  }
}

/** A step ran longer than its `timeout`; counts as a failed attempt and is retried like any error. */
export class StepTimeoutError extends DurableFlowError {
  constructor(stepName: string, timeoutMs: number) {
    super('STEP_TIMEOUT', `Step "${stepName}" did not finish within ${timeoutMs} ms`);
  }
}

/** The worker no longer holds this run's lease (it expired, or the run was cancelled); nothing more is written. */
export class LeaseLostError extends DurableFlowError {
  constructor(runId: string) {
    super('LEASE_LOST', `Lost the lease of run ${runId}: another worker owns it now, or it was cancelled; this worker writes nothing more for it`);
  }
}

/** Errors that end a run at once, whatever retries are configured. */
export function isNonRetriable(error: unknown): boolean {
  return (
    error instanceof NonRetriableError ||
    error instanceof SerializationError ||
    error instanceof NonDeterminismError ||
    (error instanceof DurableFlowError && error.code === 'DUPLICATE_STEP_NAME')
  );
}

export interface StoredError {
  class: string;
  message: string;
  stack?: string | undefined;
  code?: string | undefined;
  step?: string | undefined;
  [key: string]: unknown;
}

/** The JSON shape an error is stored in: class, message, stack (and code, when it has one). */
export function serializeError(error: unknown, step?: string): StoredError {
  if (error instanceof Error) {
    const stored: StoredError = {
      class: error.name && error.name !== 'Error' ? error.name : error.constructor?.name || 'Error',
      message: sanitize(error.message),
      stack: error.stack ? sanitize(error.stack.split('\n').slice(0, 30).join('\n')) : undefined,
    };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') stored.code = code;
    if (error instanceof WaitTimeoutError) {
      stored.eventName = error.eventName;
      stored.stepName = error.stepName;
    }
    if (error instanceof ChildWorkflowFailedError) {
      stored.runId = error.runId;
      stored.workflow = error.workflow;
      stored.errorClass = error.errorClass;
      stored.errorMessage = error.errorMessage;
    }
    if (step !== undefined) stored.step = step;
    return stored;
  }
  const stored: StoredError = { class: 'NonError', message: sanitize(safeString(error)) };
  if (step !== undefined) stored.step = step;
  return stored;
}

/** Rebuilds an error from its stored form, keeping the class users branch on. */
export function deserializeError(stored: StoredError): Error {
  let error: Error;
  switch (stored.class) {
    case 'WaitTimeoutError':
      error = new WaitTimeoutError(String(stored.eventName ?? ''), String(stored.stepName ?? ''));
      break;
    case 'ChildWorkflowFailedError':
      error = new ChildWorkflowFailedError(
        String(stored.runId ?? ''),
        String(stored.workflow ?? ''),
        stored.errorClass as string | undefined,
        stored.errorMessage as string | undefined,
      );
      break;
    case 'NonRetriableError':
      error = new NonRetriableError(stored.message);
      break;
    default:
      error = new Error(stored.message);
      error.name = stored.class;
      if (stored.code !== undefined) (error as { code?: string }).code = stored.code;
  }
  error.message = stored.message;
  if (stored.stack) error.stack = stored.stack;
  return error;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Postgres text and jsonb cannot hold NUL characters; an error message must never make its own storage fail. */
function sanitize(text: string): string {
  return text.replace(/\u0000/g, '\\u0000').replace(/[\uD800-\uDFFF]/g, (c, i: number, s: string) => {
    const code = c.charCodeAt(0);
    if (code <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) return c;
    } else {
      const prev = s.charCodeAt(i - 1);
      if (prev >= 0xd800 && prev <= 0xdbff) return c;
    }
    return '\uFFFD';
  });
}
