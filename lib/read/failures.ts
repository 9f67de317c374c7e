import type { ReadDb } from './db.js';

/** How many of the newest failed runs the grouping reads: the page stays fast with a million of them. */
export const FAILURE_SCAN = 10_000;
/** Groups shown, and messages shown per group. */
export const FAILURE_GROUPS = 50;
const MESSAGES_PER_GROUP = 3;
const MESSAGE_CHARS = 200;

/** Failed runs of one error code (null: errors without a code), with their most frequent messages. */
export interface FailureGroup {
  code: string | null;
  /** The error class of the group's newest run (what the list shows for a code-less error). */
  errorClass: string | null;
  count: number;
  /** The newest failure of the group. */
  lastFailedAt: Date;
  /** Its most frequent messages (the first MESSAGE_CHARS characters), each with its count. */
  messages: { message: string; count: number }[];
}

export interface FailureGroups {
  groups: FailureGroup[];
  /** Whether the grouping read only the newest FAILURE_SCAN failed runs (the counts are of those). */
  capped: boolean;
}

/**
 * Failed runs grouped by error code, newest group first: one statement over the newest FAILURE_SCAN
 * failed runs (the partial (status, id) index of migration 019, filtered by workflow for one),
 * grouped by code and message, then by code with its top messages. SQL, since the models cannot say
 * the two levels.
 */
export async function failureGroups(db: ReadDb, workflow: string | null): Promise<FailureGroups> {
  const rows = await db.select<{ code: string | null; error_class: string | null; count: number; last_failed_at: Date; messages: string[]; message_counts: number[]; scanned: number }>(
    `WITH failed AS (
       SELECT error, coalesce(failed_at, updated_at) AS failed_at FROM ${db.tables.runs}
       WHERE status = 'failed' AND ($1::text IS NULL OR workflow_name = $1)
       ORDER BY id DESC LIMIT ${FAILURE_SCAN}
     ), by_message AS (
       SELECT CASE WHEN jsonb_typeof(error) = 'object' THEN error->>'code' END AS code,
              left(CASE WHEN jsonb_typeof(error) = 'object' THEN error->>'message' END, ${MESSAGE_CHARS}) AS message,
              (array_agg(CASE WHEN jsonb_typeof(error) = 'object' THEN error->>'class' END ORDER BY failed_at DESC))[1] AS error_class,
              count(*)::int AS n, max(failed_at) AS last_failed_at
       FROM failed GROUP BY 1, 2
     )
     SELECT code, (array_agg(error_class ORDER BY last_failed_at DESC))[1] AS error_class, sum(n)::int AS count,
            max(last_failed_at) AS last_failed_at,
            (array_agg(coalesce(message, '') ORDER BY n DESC, last_failed_at DESC))[1:${MESSAGES_PER_GROUP}] AS messages,
            (array_agg(n ORDER BY n DESC, last_failed_at DESC))[1:${MESSAGES_PER_GROUP}] AS message_counts,
            (SELECT count(*)::int FROM failed) AS scanned
     FROM by_message GROUP BY code
     ORDER BY max(last_failed_at) DESC, code NULLS LAST
     LIMIT ${FAILURE_GROUPS}`,
    [workflow],
  );
  return {
    groups: rows.map((row) => ({
      code: row.code,
      errorClass: row.error_class,
      count: Number(row.count),
      lastFailedAt: new Date(row.last_failed_at),
      messages: row.messages.map((message, i) => ({ message, count: Number(row.message_counts[i] ?? 0) })),
    })),
    capped: (rows[0]?.scanned ?? 0) >= FAILURE_SCAN,
  };
}
