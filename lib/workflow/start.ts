import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { SqlTexts } from '../db/sql/index.js';
import { queryableFor } from '../db/queryable.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson, isPlainObject } from '../json.js';
import type { StartOptions } from '../types.js';
import type { WorkflowDefinition } from './definition.js';

/** A local worker with a slot reserved for the run being started (see insertClaimedRun). */
export interface DispatchTarget {
  owner: string;
  leaseTtlMs: number;
  adopt(row: Record<string, unknown>): void;
  cancel(): void;
}

export interface StartEnv {
  pool: pg.Pool;
  sql: SqlTexts;
  maxPayloadSize: number;
  clockOffsetMs(): number;
  /** A worker of this process that can execute a run of `queue` right now, if any. */
  dispatchTarget?(queue: string): DispatchTarget | undefined;
}

/** Extra columns a run started by another run carries. */
export interface ParentLink {
  parentRunId: string;
  parentStepName: string;
}

const MAX_ID = 255;

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
  const cancelTriggers = JSON.stringify(cancelTriggersOf(definition, input));
  const db = queryableFor(env.pool, options.transaction);
  const values = [
    runId,
    definition.name,
    queue,
    priority,
    inputText ?? null,
    idempotencyKey,
    parent?.parentRunId ?? null,
    parent?.parentStepName ?? null,
    concurrency?.key ?? null,
    concurrency?.limit ?? null,
    cancelTriggers,
  ];
  // Inside the caller's transaction the run must not start before it commits, and a run with a
  // concurrency limit must be admitted by a claim: no direct dispatch for those.
  const dispatchable = options.transaction === undefined && delayMs === 0 && !concurrency;
  const target = dispatchable ? env.dispatchTarget?.(queue) : undefined;
  if (target) {
    let claimed: Record<string, unknown> | undefined;
    try {
      [claimed] = await db.query<Record<string, unknown>>(env.sql.insertClaimedRun, [...values, target.owner, target.leaseTtlMs, env.clockOffsetMs()]);
    } catch (error) {
      target.cancel();
      throw error;
    }
    if (claimed) {
      target.adopt(claimed);
      return claimed.run_id as string;
    }
    target.cancel();
  } else {
    const [row] = await db.query<{ run_id: string }>(env.sql.insertRun, [...values, delayMs, env.clockOffsetMs()]);
    if (row) return row.run_id;
  }
  const [existing] = await db.query<{ run_id: string }>(env.sql.findRunByKeys, [runId, idempotencyKey]);
  if (!existing) {
    throw new DurableFlowError('INVALID_STATE', `Starting workflow "${definition.name}" collided with a run that no longer exists; try again`);
  }
  return existing.run_id;
}
