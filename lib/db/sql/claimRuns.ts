import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { quoteIdent } from '../tables.js';
import { toClaimedBatch } from './claimed.js';
import type { ClaimedBatch, ClaimedRunRow, HistoryRow } from './claimed.js';
import type { Statement } from './statement.js';

/**
 * Claims up to `$3` due runs for worker `$4` (lease `$5` ms), and loads their step history and the
 * time the next run wakes, in one round trip: the `durable_flow_claim` function in
 * lib/db/functions/claim.sql (first in migrations/001_initial.sql, where its locks and its plan are explained).
 * Parameters: queues, workflow names, limit, owner, lease ms, clock offset ms, the worker's flow version
 * (runs pinned to another version are left to workers of theirs).
 */
export const claimRunsSql = (t: Tables): string => `
SELECT runs, steps, next_wake_ms, db_now_ms, snapshot
FROM ${quoteIdent(t.schema)}.durable_flow_claim($1::text[], $2::text[], $3, $4, $5, $6, $7)`;

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

/** What a claim asks for: up to `limit` due runs of `queues` and `workflows`, leased to `owner` for `leaseMs`. */
export interface ClaimRequest {
  queues: string[];
  workflows: string[];
  limit: number;
  owner: string;
  leaseMs: number;
}

/** Claims (see claimRunsSql): the leased runs with their history, and when the next run not yet due wakes (ms from now). */
export async function claimRuns(
  db: Queryable,
  statement: Statement,
  p: ClaimRequest & { offsetMs: number; version: string },
): Promise<{ batch: ClaimedBatch; nextWakeMs: number | null }> {
  const [answer] = await db.query<{ runs: ClaimedRunRow[]; steps: HistoryRow[]; next_wake_ms: number | null; db_now_ms: number; snapshot: string }>(
    statement,
    [p.queues, p.workflows, p.limit, p.owner, p.leaseMs, p.offsetMs, p.version],
  );
  return {
    batch: toClaimedBatch(answer!.runs, answer!.steps, answer!.snapshot, answer!.db_now_ms),
    nextWakeMs: answer!.next_wake_ms === null ? null : Number(answer!.next_wake_ms),
  };
}

/** Workflows nobody here claims whose runs wait in `queues` (see orphanedWorkflowsSql), with how many runs each. */
export async function orphanedWorkflows(
  db: Queryable,
  statement: Statement,
  p: { queues: string[]; workflows: string[]; offsetMs: number },
): Promise<{ workflow: string; runs: number }[]> {
  const rows = await db.query<{ workflow_name: string; runs: number }>(statement, [p.queues, p.workflows, p.offsetMs]);
  return rows.map((row) => ({ workflow: row.workflow_name, runs: row.runs }));
}
