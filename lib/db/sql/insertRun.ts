import type { Queryable } from '../queryable.js';
import type { Tables } from '../tables.js';
import { nowSql, quoteIdent } from '../tables.js';
import { toClaimedBatch } from './claimed.js';
import type { ClaimedBatch, ClaimedRunRow } from './claimed.js';
import type { Statement } from './statement.js';
import type { RunTags } from '../../tags.js';

/** A run to create. */
export interface NewRun {
  runId: string;
  /**
   * The run id was made for this start (a random UUID, not the caller's `runId`), and the row is
   * inserted once: no stored run can have it.
   */
  freshId?: boolean;
  workflow: string;
  queue: string;
  priority: number;
  /** JSON text. */
  input: string | null;
  idempotencyKey: string | null;
  parentRunId: string | null;
  parentStepName: string | null;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  delayMs: number;
  /** A worker of this process that takes the run at once: it is inserted leased to it for `leaseMs`. */
  owner: string | null;
  leaseMs: number | null;
  /** Its cancelOn triggers. */
  triggers: { event: string; match: unknown }[];
  /** flow.replay() / flow.rerunFrom(): the run this one replays. */
  replayOf?: string | null;
  /** Its workflow is `versioning: 'pinned'`: only workers of the starting flow's version claim it. */
  pinned?: boolean;
  /** Its `timeout` and `startBy` (ms from now): stored as deadline_at and start_by (migration 011). */
  timeoutMs?: number | null;
  startByMs?: number | null;
  /** Its `throttle` (migration 013): the key it begins under (`<workflow>[:<key>]`), the limit and period. */
  throttleKey?: string | null;
  throttleLimit?: number | null;
  throttlePeriodMs?: number | null;
  /** Its `tags` (migration 015), checked; a child's and a replay's are merged over those they inherit. */
  tags?: RunTags;
  /** start()'s trace context, a propagation carrier (migration 017, lib/tracing/); null without one. */
  traceContext?: Record<string, string> | null;
}

/** A run insertRuns created. */
export interface InsertedRun {
  runId: string;
  workflow: string;
  /** Set for a run inserted already claimed: what its worker executes. */
  claimed: ClaimedBatch | undefined;
}

/**
 * Creates runs, many in one statement (the starts of a process are group-committed, see Batcher).
 * A row with an `owner` is inserted already claimed by that worker of this process (its first lease,
 * durable_flow_lease_columns: no NOTIFY, no claim round trip); the others are due after `delay_ms`. A run id, or an
 * idempotency key of the same workflow, that exists already inserts nothing (both are unique indexes):
 * the caller reads those back with findRunsByKeys. Each run's cancelOn triggers are stored with it.
 * Every run stores the starting flow's version ($3); a pinned one is pinned to it. A pinned run goes to a
 * local worker only if that worker's version is its own: the owner is always of this flow, whose version
 * this is, so it always does.
 *
 * $1 rows: [{ i, run_id, workflow_name, queue_name, priority, input, idempotency_key, parent_run_id,
 *             parent_step_name, concurrency_key, concurrency_limit, delay_ms, owner, lease_ms, triggers, replay_of, pinned,
 *             timeout_ms, start_by_ms, throttle_key, throttle_limit, throttle_period_ms, tags, trace_context }] (timeout_ms and start_by_ms:
 *             deadline_at and start_by, from now; a child's deadline is never later than its parent's: the trigger
 *             durable_flow_runs_deadline_inherit, deadlines.sql; tags: merged over the parent's, or for a replay
 *             over the replayed run's, read here by run id: no caller needs to carry them)
 * $2 clock offset (ms)
 * $3 the flow's version
 *
 * `guarded` false: a statement without ON CONFLICT, for batches of which no row can collide (every run
 * id fresh, no idempotency key): a speculative insert costs a confirmation record (WAL) per row.
 */
export const insertRunsSql = (t: Tables, guarded = true): string => {
  const now = nowSql('$2');
  return `
WITH x AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    i integer, run_id text, workflow_name text, queue_name text, priority integer, input text,
    idempotency_key text, parent_run_id text, parent_step_name text, concurrency_key text,
    concurrency_limit integer, delay_ms float8, owner text, lease_ms float8, triggers jsonb, replay_of text, pinned boolean,
    timeout_ms float8, start_by_ms float8, throttle_key text, throttle_limit integer, throttle_period_ms bigint, tags jsonb,
    trace_context jsonb)
), ins AS (
  INSERT INTO ${t.runs}
    (run_id, workflow_name, queue_name, priority, input, idempotency_key, parent_run_id, parent_step_name,
     concurrency_key, concurrency_limit, status, wake_at, lease_owner, lease_epoch, lease_expires_at,
     claim_count, attempts, started_at, replay_of, version, pinned_version, deadline_at, start_by,
     throttle_key, throttle_limit, throttle_period_ms, tags, trace_context)
  SELECT x.run_id, x.workflow_name, x.queue_name, x.priority, x.input::jsonb, x.idempotency_key, x.parent_run_id,
         x.parent_step_name, x.concurrency_key, x.concurrency_limit,
         coalesce(l.status, 'enqueued'),
         coalesce(l.wake_at, ${now} + coalesce(x.delay_ms, 0) * interval '1 millisecond'),
         CASE WHEN l.status IS NOT NULL THEN x.owner END, coalesce(l.lease_epoch, 0), l.lease_expires_at,
         coalesce(l.claim_count, 0), coalesce(l.attempts, 0), l.started_at, x.replay_of,
         $3::text, CASE WHEN x.pinned THEN $3::text END,
         ${now} + x.timeout_ms * interval '1 millisecond', ${now} + x.start_by_ms * interval '1 millisecond',
         x.throttle_key, x.throttle_limit, x.throttle_period_ms,
         CASE WHEN coalesce(x.parent_run_id, x.replay_of) IS NULL THEN coalesce(x.tags, '{}')
              ELSE coalesce((SELECT p.tags FROM ${t.runs} p WHERE p.run_id = coalesce(x.parent_run_id, x.replay_of)), '{}') || coalesce(x.tags, '{}') END,
         x.trace_context
  FROM x
  -- A row with an owner gets the first lease, as durable_flow_lease writes every lease, unless its
  -- workflow is paused (flow.pauseWorkflow): then it queues like any other, and a claim sets it aside.
  LEFT JOIN LATERAL ${quoteIdent(t.schema)}.durable_flow_lease_columns(
    0, 0, 0, NULL, ${now}, ${now} + x.lease_ms * interval '1 millisecond') l
    ON x.owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${t.workflowPauses} p WHERE p.workflow_name = x.workflow_name)
  ORDER BY x.i
  ${guarded ? 'ON CONFLICT DO NOTHING' : ''}
  RETURNING id, run_id, workflow_name, input::text AS input, lease_epoch, claim_count, attempts, created_snapshot,
            created_snapshot AS resume_snapshot, parent_run_id, queue_name, lease_owner, false AS replay,
            extract(epoch FROM deadline_at) * 1000 AS deadline_ms, trace_context
), triggers AS (
  INSERT INTO ${t.cancelTriggers} (workflow_run_id, event_name, match)
  SELECT DISTINCT ins.id, tr.event, tr.match
  FROM ins JOIN x ON x.run_id = ins.run_id
  CROSS JOIN jsonb_to_recordset(x.triggers) AS tr(event text, match jsonb)
)
SELECT coalesce((SELECT json_agg(ins) FROM ins), '[]') AS runs,
       extract(epoch FROM ${now}) * 1000 AS db_now_ms,
       pg_current_snapshot()::text AS snapshot`;
};

/** The runs that conflicting starts collided with: by run id, or by (workflow, idempotency key). */
export const findRunsByKeysSql = (t: Tables): string => `
SELECT run_id, workflow_name, idempotency_key FROM ${t.runs}
WHERE run_id = ANY($1::text[])
   OR (workflow_name, idempotency_key) IN (SELECT * FROM unnest($2::text[], $3::text[]))`;

/** Whether `runs` need the statement with ON CONFLICT: some row may collide with a stored run. */
export const mayCollide = (runs: NewRun[]): boolean => runs.some((run) => run.freshId !== true || run.idempotencyKey !== null);

/**
 * Inserts `runs` in one statement; returns the runs it created, in order. A run whose id or
 * idempotency key exists already is not among them (see findRunsByKeys).
 */
export async function insertRuns(db: Queryable, statement: Statement, p: { runs: NewRun[]; offsetMs: number; version: string }): Promise<InsertedRun[]> {
  const rows = p.runs.map((run, i) => ({
    i,
    run_id: run.runId,
    workflow_name: run.workflow,
    queue_name: run.queue,
    priority: run.priority,
    input: run.input,
    idempotency_key: run.idempotencyKey,
    parent_run_id: run.parentRunId,
    parent_step_name: run.parentStepName,
    concurrency_key: run.concurrencyKey,
    concurrency_limit: run.concurrencyLimit,
    delay_ms: run.delayMs,
    owner: run.owner,
    lease_ms: run.leaseMs,
    triggers: run.triggers,
    replay_of: run.replayOf ?? null,
    pinned: run.pinned === true,
    timeout_ms: run.timeoutMs ?? null,
    start_by_ms: run.startByMs ?? null,
    throttle_key: run.throttleKey ?? null,
    throttle_limit: run.throttleLimit ?? null,
    throttle_period_ms: run.throttlePeriodMs == null ? null : Math.ceil(run.throttlePeriodMs),
    tags: run.tags ?? {},
    trace_context: run.traceContext ?? null,
  }));
  const [answer] = await db.query<{ runs: (ClaimedRunRow & { lease_owner: string | null })[]; db_now_ms: number; snapshot: string }>(statement, [
    JSON.stringify(rows),
    p.offsetMs,
    p.version,
  ]);
  const { runs, snapshot, db_now_ms: dbNowMs } = answer!;
  return runs.map((run) => ({
    runId: run.run_id,
    workflow: run.workflow_name,
    claimed: run.lease_owner ? toClaimedBatch([run], [], snapshot, dbNowMs) : undefined,
  }));
}

/** A run a conflicting start collided with. */
export interface ExistingRun {
  runId: string;
  workflow: string;
  idempotencyKey: string | null;
}

/** The runs with these run ids, or these idempotency keys of these workflows. */
export async function findRunsByKeys(
  db: Queryable,
  statement: Statement,
  p: { runIds: string[]; keys: { workflow: string; idempotencyKey: string }[] },
): Promise<ExistingRun[]> {
  const rows = await db.query<{ run_id: string; workflow_name: string; idempotency_key: string | null }>(statement, [
    p.runIds,
    p.keys.map((key) => key.workflow),
    p.keys.map((key) => key.idempotencyKey),
  ]);
  return rows.map((row) => ({ runId: row.run_id, workflow: row.workflow_name, idempotencyKey: row.idempotency_key }));
}
