import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { SqlTexts } from '../db/sql/index.js';
import { fromPg, fromSequelizeTransaction, isPgClient, isSequelizeTransaction } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { StartOptions } from '../types.js';
import type { WorkflowDefinition } from './definition.js';

export interface StartEnv {
  pool: pg.Pool;
  sql: SqlTexts;
  maxPayloadSize: number;
  clockOffsetMs(): number;
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

export function queryableFor(pool: pg.Pool, transaction: unknown): Queryable {
  if (transaction === undefined || transaction === null) return fromPg(pool);
  if (isSequelizeTransaction(transaction)) return fromSequelizeTransaction(transaction);
  if (isPgClient(transaction)) return fromPg(transaction);
  throw new DurableFlowError('INVALID_ARGUMENT', 'Expected `transaction` to be a Sequelize transaction or a pg client inside a transaction');
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
  const db = queryableFor(env.pool, options.transaction);
  const [row] = await db.query<{ run_id: string }>(env.sql.insertRun, [
    runId,
    definition.name,
    queue,
    priority,
    inputText ?? null,
    idempotencyKey,
    parent?.parentRunId ?? null,
    parent?.parentStepName ?? null,
    null,
    delayMs,
    env.clockOffsetMs(),
  ]);
  if (row) return row.run_id;
  const [existing] = await db.query<{ run_id: string }>(env.sql.findRunByKeys, [runId, idempotencyKey]);
  if (!existing) {
    throw new DurableFlowError('INVALID_STATE', `Starting workflow "${definition.name}" collided with a run that no longer exists; try again`);
  }
  return existing.run_id;
}
