import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';

/**
 * Claims up to `$3` due runs for worker `$4` (lease `$5` ms), and loads their step history and the
 * time the next run wakes, in one round trip: the `durable_flow_claim` function in
 * migrations/002_trust.sql (first in 001_initial.sql, where its locks and its plan are explained).
 * Parameters: queues, workflow names, limit, owner, lease ms, clock offset ms.
 */
export const claimRunsSql = (t: Tables): string => `
SELECT runs, steps, next_wake_ms, db_now_ms, snapshot
FROM ${quoteIdent(t.schema)}.durable_flow_claim($1::text[], $2::text[], $3, $4, $5, $6)`;

/**
 * Workflows of runs that have been due for over a minute in these queues although this process does
 * not register them: nobody is claiming them (or every worker that could is far behind).
 */
export const orphanedWorkflowsSql = (t: Tables): string => `
SELECT workflow_name, count(*)::int AS runs
FROM ${t.runs}
WHERE wake_at <= statement_timestamp() + $3::float8 * interval '1 millisecond' - interval '1 minute'
  AND lease_owner IS NULL
  AND queue_name = ANY($1::text[])
  AND NOT (workflow_name = ANY($2::text[]))
GROUP BY workflow_name
ORDER BY workflow_name
LIMIT 10`;
