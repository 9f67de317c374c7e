import { randomUUID } from 'node:crypto';
import { EMPTY_BATCH } from '../db/sql/claimed.js';
import type { ClaimedBatch } from '../db/sql/claimed.js';
import type { NewRun } from '../db/sql/insertRun.js';
import type { Store } from '../db/store.js';
import { queryableFor } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { toMilliseconds } from '../duration.js';
import { debugPoint } from '../debug-point.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson, isPlainObject } from '../json.js';
import type { StartOptions } from '../types.js';
import { loadTracing } from '../tracing/tracing.js';
import type { LocalClaim } from '../worker/local-claim.js';
import type { WorkflowDefinition } from './definition.js';
import { MAX_ID } from './ids.js';
import { startControlled } from './start-control.js';
import { checkControlledStart, startKeys } from './start-control-options.js';
import { throttleOf } from './throttle.js';
import { checkTags } from '../tags.js';

export interface StartEnv {
  store: Store;
  maxPayloadSize: number;
  /** A slot on a worker of this process that can execute a run of `queue` right now, if any. */
  localClaim?(queue: string, workflow: string): LocalClaim | undefined;
  /** Inserts a run outside any caller transaction (group-committed with other starts). */
  insert(run: NewRun): Promise<InsertResult>;
  /**
   * Resolves once a change subscription being set up is in place. The pool waits for it by itself;
   * a caller's transaction, which durable-flow's pool does not see, waits here.
   */
  changesReady?(): Promise<void>;
  /** The flow's `tracing` option: the run stores the caller's active trace context (lib/tracing/). */
  tracing?: boolean;
}

/** Extra columns a run started by another run carries. */
export interface ParentLink {
  parentRunId: string;
  parentStepName: string;
}


function checkId(value: unknown, what: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`${what}\` to be a non-empty string of at most ${MAX_ID} characters, got ${typeof value === 'string' ? `a string of ${value.length}` : typeof value}`);
  }
  encodeJson(value, `\`${what}\``, MAX_ID * 4);
  return value;
}

/** The run's concurrency key (`<workflow>` or `<workflow>:<key(input)>`) and limit, if the workflow has one. */
function concurrencyOf(definition: WorkflowDefinition, input: unknown): { key: string; limit: number } | undefined {
  const concurrency = definition.concurrency;
  if (!concurrency) return undefined;
  if (!concurrency.key) return { key: definition.name, limit: concurrency.limit };
  let value: unknown;
  try {
    value = concurrency.key(input);
  } catch (error) {
    throw new DurableFlowError('INVALID_ARGUMENT', `The concurrency key function of workflow "${definition.name}" threw: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if ((typeof value !== 'string' && typeof value !== 'number') || value === '') {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected the concurrency key function of workflow "${definition.name}" to return a non-empty string or a number, got ${typeof value}`);
  }
  return { key: `${definition.name}:${String(value)}`, limit: concurrency.limit };
}

function cancelTriggersOf(definition: WorkflowDefinition, input: unknown): { event: string; match: unknown }[] {
  return definition.cancelOn.map(({ event, match }) => {
    let value: unknown = match ?? {};
    if (typeof match === 'function') {
      try {
        value = match(input);
      } catch (error) {
        throw new DurableFlowError('INVALID_ARGUMENT', `The cancelOn match function of workflow "${definition.name}" threw: ${(error as Error)?.message ?? String(error)}`, { cause: error });
      }
    }
    if (!isPlainObject(value)) {
      throw new DurableFlowError('INVALID_ARGUMENT', `Expected the cancelOn match of workflow "${definition.name}" (event "${event}") to be a plain object`);
    }
    return { event, match: JSON.parse(encodeJson(value, `The cancelOn match of workflow "${definition.name}"`, 64 * 1024)!) };
  });
}

/**
 * The row of a new run of `definition`, everything validated (INVALID_ARGUMENT otherwise), leased to
 * no worker. Writes nothing: startRun inserts it, the schedules' firing inserts many at once.
 */
export function newRun(definition: WorkflowDefinition, input: unknown, options: StartOptions & { replayOf?: string }, maxPayloadSize: number, parent?: ParentLink): NewRun {
  if (typeof options !== 'object' || options === null) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected the start options of workflow "${definition.name}" to be an object`);
  }
  const inputText = encodeJson(input, `The input of workflow "${definition.name}"`, maxPayloadSize);
  const runId = checkId(options.runId, 'runId') ?? randomUUID();
  const idempotencyKey = checkId(options.idempotencyKey, 'idempotencyKey');
  const delayMs = options.delay === undefined ? 0 : toMilliseconds(options.delay, '`delay`', { allowZero: true });
  const timeoutMs = options.timeout === undefined ? definition.timeoutMs ?? null : toMilliseconds(options.timeout, '`timeout`');
  const startByMs = options.startBy === undefined ? null : toMilliseconds(options.startBy, '`startBy`');
  const priority = options.priority ?? definition.priority;
  if (!Number.isInteger(priority) || Math.abs(priority) > 2 ** 31 - 1) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`priority\` to be an integer (lower runs first), got ${String(priority)}`);
  }
  const queue = checkId(options.queue, 'queue') ?? definition.queue;
  const concurrency = concurrencyOf(definition, input);
  const triggers = cancelTriggersOf(definition, input);
  const throttle = throttleOf(definition.name, definition.throttle, input);
  const tags = checkTags(options.tags);
  return {
    runId,
    freshId: options.runId === undefined,
    workflow: definition.name,
    queue,
    priority,
    input: inputText ?? null,
    idempotencyKey,
    parentRunId: parent?.parentRunId ?? null,
    parentStepName: parent?.parentStepName ?? null,
    concurrencyKey: concurrency?.key ?? null,
    concurrencyLimit: concurrency?.limit ?? null,
    delayMs,
    owner: null,
    leaseMs: null,
    triggers,
    replayOf: options.replayOf ?? null,
    pinned: definition.versioning === 'pinned',
    timeoutMs,
    startByMs,
    throttleKey: throttle?.key ?? null,
    throttleLimit: throttle?.limit ?? null,
    throttlePeriodMs: throttle?.periodMs ?? null,
    tags,
  };
}

/**
 * Creates a run of `definition` (or returns the existing one for a repeated run id or idempotency
 * key) and returns its id. Everything is validated before anything is written.
 */
export async function startRun(
  env: StartEnv,
  definition: WorkflowDefinition,
  input: unknown,
  options: StartOptions & { replayOf?: string } = {},
  parent?: ParentLink,
): Promise<string> {
  const row = newRun(definition, input, options, env.maxPayloadSize, parent);
  // The context active in the caller (a child run's: its invoking step's), read after the one import.
  if (env.tracing) row.traceContext = (await loadTracing())?.capture() ?? null;
  // singleton, rateLimit, debounce: decided in a transaction of their own (start-control.ts). An
  // operator's replay (replayOf) is an explicit new execution and is not subject to them.
  if (definition.startControl && options.replayOf === undefined) {
    checkControlledStart(definition.name, definition.startControl, options);
    const keys = startKeys(definition.name, definition.startControl, input);
    if (options.transaction !== undefined) await env.changesReady?.();
    const started = await startControlled(env.store, definition.startControl, row, keys, options.transaction);
    await debugPoint('START_AFTER_COMMIT', { runId: parent?.parentRunId, child: started.runId });
    if (started.takenBy !== undefined) throw runIdConflict(row.runId, started.takenBy, definition.name);
    return started.runId;
  }
  // Inside the caller's transaction the run must not start before it commits, and a run with a
  // concurrency limit or a throttle must be admitted by a claim: no direct dispatch for those.
  const dispatchable = options.transaction === undefined && row.delayMs === 0 && row.concurrencyKey === null && row.throttleKey == null;
  const target = dispatchable ? env.localClaim?.(row.queue, row.workflow) : undefined;
  const run: NewRun = { ...row, owner: target?.owner ?? null, leaseMs: target?.leaseTtlMs ?? null };
  const { runId } = run;
  if (options.transaction !== undefined) await env.changesReady?.();
  let inserted: InsertResult | undefined;
  try {
    inserted =
      options.transaction === undefined
        ? await env.insert(run)
        : (await insertRows(queryableFor(env.store.pool, options.transaction), env.store, [run]))[0]!;
    // The run is stored (a child: its parent's step not yet told).
    await debugPoint('START_AFTER_COMMIT', { runId: parent?.parentRunId, child: inserted.runId });
  } finally {
    target?.take(inserted?.claimed ?? EMPTY_BATCH);
  }
  if (inserted.takenBy !== undefined) throw runIdConflict(runId, inserted.takenBy, definition.name);
  return inserted.runId;
}

function runIdConflict(runId: string, takenBy: string, workflow: string): DurableFlowError {
  return new DurableFlowError(
    'RUN_ID_CONFLICT',
    `Run id "${runId}" already belongs to a run of workflow "${takenBy}", not "${workflow}": run ids are unique across workflows; choose another runId (or use an idempotencyKey, which is scoped to its workflow)`,
  );
}

export interface InsertResult {
  /** The run's id: the new run's, or the existing run's a repeated id or idempotency key points to. */
  runId: string;
  /** Set when the row was inserted already claimed by a local worker: what that worker executes. */
  claimed?: ClaimedBatch;
  /** Set when the run id belongs to a run of another workflow (that workflow's name): nothing was started. */
  takenBy?: string;
}

/**
 * Inserts runs in one statement and resolves each to its run: inserted, or the existing run of the
 * same workflow its id or idempotency key collided with (an idempotency key wins over a run id), or —
 * a run id of another workflow's run — `takenBy`.
 */
export async function insertRows(db: Queryable, store: Store, runs: NewRun[]): Promise<InsertResult[]> {
  const inserted = new Map((await store.insertRuns(db, runs)).map((run) => [run.runId, run]));
  const results: (InsertResult | undefined)[] = runs.map((run) => {
    const created = inserted.get(run.runId);
    if (!created || created.workflow !== run.workflow) return undefined;
    // Two runs of one batch with the same run id: only the first was inserted (and claimed).
    inserted.delete(run.runId);
    return { runId: run.runId, ...(created.claimed ? { claimed: created.claimed } : {}) };
  });
  const missing = runs.filter((_, i) => !results[i]);
  if (missing.length > 0) {
    const keys = missing.flatMap((run) => (run.idempotencyKey === null ? [] : [{ workflow: run.workflow, idempotencyKey: run.idempotencyKey }]));
    const existing = await store.findRunsByKeys(db, { runIds: missing.map((run) => run.runId), keys });
    runs.forEach((run, i) => {
      if (results[i]) return;
      const match =
        (run.idempotencyKey ? existing.find((e) => e.workflow === run.workflow && e.idempotencyKey === run.idempotencyKey) : undefined) ??
        existing.find((e) => e.runId === run.runId);
      if (!match) {
        throw new DurableFlowError('INVALID_STATE', `Starting workflow "${run.workflow}" collided with a run that no longer exists; try again`);
      }
      results[i] = match.workflow === run.workflow ? { runId: match.runId } : { runId: match.runId, takenBy: match.workflow };
    });
  }
  return results as InsertResult[];
}
