import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';
import type { Statement } from './statement.js';

/**
 * Takes the transaction-scoped advisory lock of each event name in `$2`, in a fixed order.
 *
 * Why: a wait is created (and checked against stored events) in one transaction while `notify` stores
 * an event (and matches pending waits) in another. Under READ COMMITTED each could miss the other's
 * uncommitted row: the lost wake-up. Both take this lock first, so whichever comes second sees what
 * the first committed. Names share 64 locks (durable_flow_event_lock_key, migrations/002_trust.sql), so
 * a transaction awaiting or storing any number of names holds at most 64 advisory locks. Lock order
 * everywhere: event-name keys (ascending), then runs (by id, descending), then waits.
 */
export const lockEventNamesSql = (t: Tables): string => `
SELECT ${quoteIdent(t.schema)}.durable_flow_lock_events($1, $2::text[])`;

/** Takes the event-name locks of `names` (in advisory lock namespace `namespace`) for the rest of the transaction. */
export async function lockEventNames(db: Queryable, statement: Statement, p: { namespace: number; names: string[] }): Promise<void> {
  await db.query(statement, [p.namespace, p.names]);
}
