import type { StoredError } from '../../errors.js';
import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql, quoteIdent } from '../tables.js';
import type { Statement } from './statement.js';

/**
 * Ends run `$1` (database id) if its deadline (`timeout`, RUN_TIMEOUT) or start-by (DEADLINE_EXCEEDED)
 * has passed on the flow's clock (`$2`, the offset): durable_flow_expire (lib/db/functions/deadlines.sql),
 * the function every claim calls for the expired runs it meets. Not fenced by a lease: whoever holds
 * the run, it ends once. A worker calls it when its own execution reaches the run's deadline.
 * Answers the run's new status and error when this call ended it, else no row.
 */
export const expireRunSql = (t: Tables): string => `
SELECT r.status, r.error FROM ${t.runs} r
WHERE r.id = ANY(${quoteIdent(t.schema)}.durable_flow_expire(ARRAY[$1::bigint], ${nowSql('$2')}))`;

/** How expireRun ended a run. */
export interface ExpiredRun {
  status: 'failed' | 'cancelled';
  error: StoredError;
}

/** Ends run `run` if its deadline has passed (see expireRunSql): how, when this call ended it, else null. */
export async function expireRun(db: Queryable, statement: Statement, p: { run: string; offsetMs: number }): Promise<ExpiredRun | null> {
  const rows = await db.query<ExpiredRun>(statement, [p.run, p.offsetMs]);
  return rows[0] ?? null;
}
