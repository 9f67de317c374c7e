import type { Transaction } from 'sequelize';
import { invalidOption } from '../config.js';
import type { Logger } from '../config.js';
import { nowSql } from '../db/tables.js';
import type { ReadDb } from '../read/db.js';
import type { OperatorOptions, StartOptions } from '../types.js';

/**
 * What every operator tool works with: the viewer side's connections (models and `select`, one
 * Sequelize transaction per action, its audit entry in the same one), the flow's clock, and a way to
 * start runs (replays) inside that transaction. The tools never import the flow.
 */
export interface OperatorContext {
  readonly db: ReadDb;
  readonly logger: Logger;
  /** The flow's `maxPayloadSize`: the largest payload or result an operator stores. */
  readonly maxPayloadSize: number;
  /** Milliseconds the flow's clock runs ahead of the database's (the test harness moves it). */
  clockOffsetMs(): number;
  /**
   * Starts a run of `workflow` (registered in this process or not) inside `options.transaction`,
   * returning its id; `replayOf` marks it as a replay of that run.
   */
  startRun(workflow: string, input: unknown, options: StartOptions & { replayOf?: string }): Promise<string>;
}

/** The database's clock as the flow sees it, as SQL (for statements on the viewer's connections). */
export function nowOf(ctx: OperatorContext): string {
  return nowSql(String(Number(ctx.clockOffsetMs())));
}

/** Runs `fn` in one transaction on the viewer's connections. */
export function transaction<T>(ctx: OperatorContext, fn: (transaction: Transaction) => Promise<T>): Promise<T> {
  return ctx.db.sequelize.transaction(fn);
}

/** The longest actor and reason the audit trail stores. */
const MAX_ACTOR = 200;
const MAX_REASON = 2000;

/** `{ actor, reason }` checked (a bad one is INVALID_OPTION naming it), as the audit trail stores them. */
export function checkOperatorOptions(options: unknown): { actor: string | null; reason: string | null } {
  if (options === undefined) return { actor: null, reason: null };
  if (typeof options !== 'object' || options === null) throw invalidOption('options', options, 'an object { actor?, reason? }');
  const { actor, reason } = options as OperatorOptions;
  if (actor !== undefined && (typeof actor !== 'string' || actor.length === 0 || actor.length > MAX_ACTOR)) {
    throw invalidOption('actor', actor, `a non-empty string of at most ${MAX_ACTOR} characters`);
  }
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON)) {
    throw invalidOption('reason', reason, `a string of at most ${MAX_REASON} characters`);
  }
  return { actor: actor ?? null, reason: reason === undefined || reason === '' ? null : reason };
}
