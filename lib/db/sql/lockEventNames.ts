import type { Tables } from '../tables.js';

/**
 * Takes the transaction-scoped advisory lock of each event name in `$2`, in a fixed order.
 *
 * Why: a wait is created (and checked against stored events) in one transaction while `notify` stores
 * an event (and matches pending waits) in another. Under READ COMMITTED each could miss the other's
 * uncommitted row: the lost wake-up. Both take this lock first, so whichever comes second sees what
 * the first committed. Lock order everywhere: event names, then runs (by id), then waits.
 */
export const lockEventNames = (_t: Tables): string => `
SELECT count(pg_advisory_xact_lock($1, h))
FROM (SELECT DISTINCT hashtext(n) AS h FROM unnest($2::text[]) AS n ORDER BY 1) AS names`;
