import { randomUUID } from 'node:crypto';
import { EMPTY_BATCH, toClaimedBatch } from '../db/sql/claimed.js';
import type { ClaimedBatch, ClaimedRunRow } from '../db/sql/claimed.js';
import type { Store } from '../db/store.js';
import { queryableFor } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { toMilliseconds } from '../duration.js';
import { debugPoint } from '../debug-point.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson, isPlainObject } from '../json.js';
import type { StartOptions } from '../types.js';
import type { LocalClaim } from '../worker/local-claim.js';
import type { WorkflowDefinition } from './definition.js';
import { MAX_ID } from './ids.js';

export interface StartEnv {
  store: Store;
  maxPayloadSize: number;
  /** A slot on a worker of this process that can execute a run of `queue` right now, if any. */
  localClaim?(queue: string, workflow: string): LocalClaim | undefined;
  /** Inserts a run outside any caller transaction (group-committed with other starts). */
  insert(row: RunRow): Promise<InsertResult>;
  /**
   * Resolves once a change subscription being set up is in place. The pool waits for it by itself;
   * a caller's transaction, which durable-flow's pool does not see, waits here.
   */
  changesReady?(): Promise<void>;
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
 * Creates a run of `definition` (or returns the existing one for a repeated run id or idempotency
 * key) and returns its id. Everything is validated before anything is written.
 */
export async function startRun(
  env: StartEnv,
  definition: WorkflowDefinition,
  input: unknown,
  options: StartOptions = {},
  parent?: ParentLink,
): Promise<string> {
  if (typeof options !== 'object' || options === null) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected the start options of workflow "${definition.name}" to be an object`);
  }
  const inputText = encodeJson(input, `The input of workflow "${definition.name}"`, env.maxPayloadSize);
  const runId = checkId(options.runId, 'runId') ?? randomUUID();
  const idempotencyKey = checkId(options.idempotencyKey, 'idempotencyKey');
  const delayMs = options.delay === undefined ? 0 : toMilliseconds(options.delay, '`delay`', { allowZero: true });
  const priority = options.priority ?? definition.priority;
  if (!Number.isInteger(priority) || Math.abs(priority) > 2 ** 31 - 1) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`priority\` to be an integer (lower runs first), got ${String(priority)}`);
  }
  const queue = checkId(options.queue, 'queue') ?? definition.queue;
  const concurrency = concurrencyOf(definition, input);
  const triggers = cancelTriggersOf(definition, input);
  // Inside the caller's transaction the run must not start before it commits, and a run with a
  // concurrency limit must be admitted by a claim: no direct dispatch for those.
  const dispatchable = options.transaction === undefined && delayMs === 0 && !concurrency;
  const target = dispatchable ? env.localClaim?.(queue, definition.name) : undefined;
  const row: RunRow = {
    i: 0,
    run_id: runId,
    workflow_name: definition.name,
    queue_name: queue,
    priority,
    input: inputText ?? null,
    idempotency_key: idempotencyKey,
    parent_run_id: parent?.parentRunId ?? null,
    parent_step_name: parent?.parentStepName ?? null,
    concurrency_key: concurrency?.key ?? null,
    concurrency_limit: concurrency?.limit ?? null,
    delay_ms: delayMs,
    owner: target?.owner ?? null,
    lease_ms: target?.leaseTtlMs ?? null,
    triggers,
  };
  if (options.transaction !== undefined) await env.changesReady?.();
  let inserted: InsertResult | undefined;
  try {
    inserted =
      options.transaction === undefined
        ? await env.insert(row)
        : (await insertRows(queryableFor(env.store.pool, options.transaction), env.store, [row]))[0]!;
    // The run is stored (a child: its parent's step not yet told).
    await debugPoint('START_AFTER_COMMIT', { runId: parent?.parentRunId, child: inserted.runId });
  } finally {
    target?.take(inserted?.claimed ?? EMPTY_BATCH);
  }
  if (inserted.takenBy !== undefined) {
    throw new DurableFlowError(
      'RUN_ID_CONFLICT',
      `Run id "${runId}" already belongs to a run of workflow "${inserted.takenBy}", not "${definition.name}": run ids are unique across workflows; choose another runId (or use an idempotencyKey, which is scoped to its workflow)`,
    );
  }
  return inserted.runId;
}

/** One row of insertRuns. */
export interface RunRow {
  i: number;
  run_id: string;
  workflow_name: string;
  queue_name: string;
  priority: number;
  input: string | null;
  idempotency_key: string | null;
  parent_run_id: string | null;
  parent_step_name: string | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  delay_ms: number;
  owner: string | null;
  lease_ms: number | null;
  triggers: { event: string; match: unknown }[];
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
 * Inserts runs in one statement and resolves each row to its run: inserted, or the existing run of
 * the same workflow its id or idempotency key collided with (an idempotency key wins over a run id),
 * or — a run id of another workflow's run — `takenBy`.
 */
export async function insertRows(db: Queryable, store: Store, rows: RunRow[]): Promise<InsertResult[]> {
  const numbered = rows.map((row, i) => ({ ...row, i }));
  const [answer] = await db.query<{ runs: (ClaimedRunRow & { lease_owner: string | null })[]; db_now_ms: number; snapshot: string }>(
    store.statements.insertRuns,
    [JSON.stringify(numbered), store.clockOffsetMs()],
  );
  const inserted = new Map(answer!.runs.map((run) => [run.run_id, run]));
  const results: (InsertResult | undefined)[] = numbered.map((row) => {
    const run = inserted.get(row.run_id);
    if (!run || run.workflow_name !== row.workflow_name) return undefined;
    // Two rows of one batch with the same run id: only the first was inserted (and claimed).
    inserted.delete(row.run_id);
    return { runId: row.run_id, ...(run.lease_owner ? { claimed: toClaimedBatch([run], [], answer!.snapshot, answer!.db_now_ms) } : {}) };
  });
  const missing = numbered.filter((_, i) => !results[i]);
  if (missing.length > 0) {
    const keyed = missing.filter((row) => row.idempotency_key !== null);
    const existing = await db.query<{ run_id: string; workflow_name: string; idempotency_key: string | null }>(store.statements.findRunsByKeys, [
      missing.map((row) => row.run_id),
      keyed.map((row) => row.workflow_name),
      keyed.map((row) => row.idempotency_key),
    ]);
    for (const row of missing) {
      const match =
        (row.idempotency_key
          ? existing.find((e) => e.workflow_name === row.workflow_name && e.idempotency_key === row.idempotency_key)
          : undefined) ?? existing.find((e) => e.run_id === row.run_id);
      if (!match) {
        throw new DurableFlowError('INVALID_STATE', `Starting workflow "${row.workflow_name}" collided with a run that no longer exists; try again`);
      }
      results[row.i] = match.workflow_name === row.workflow_name ? { runId: match.run_id } : { runId: match.run_id, takenBy: match.workflow_name };
    }
  }
  return results as InsertResult[];
}
