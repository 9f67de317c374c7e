/**
 * The `on` options of the registered workflows → durable_flow_event_triggers (migration 014), so that
 * any process storing an event (one that registers no workflow: a web process doing ingest) starts the
 * runs in SQL. Called where the schedules of workflows' `schedule` options are synced: by migrate() and
 * by a worker's first schedule firing (lib/schedules/schedules.ts).
 *
 * The rows of a workflow registered here become exactly its option's entries, in one statement: added,
 * updated (queue, priority, timeout, concurrency, cancelOn, version), and deleted when the option (or an
 * entry) was removed from the code. Rows of workflows this process does not register are left alone, so
 * processes registering different workflows do not undo each other's; a workflow removed from the code
 * altogether keeps its triggers until a process registering it without `on` syncs (or they are deleted
 * by hand: `DELETE FROM durable_flow_event_triggers WHERE workflow_name = …`).
 */
import type { Queryable } from '../db/queryable.js';
import type { Tables } from '../db/tables.js';
import { quoteIdent } from '../db/tables.js';
import type { WorkflowDefinition } from '../workflow/definition.js';
import { startNeedsCode } from './options.js';

export function triggersTable(t: Tables): string {
  return `${quoteIdent(t.schema)}.durable_flow_event_triggers`;
}

/** One row of durable_flow_event_triggers, as this process would write it. */
export interface TriggerRow {
  workflow_name: string;
  position: number;
  event_name: string;
  match: Record<string, unknown>;
  queue_name: string;
  priority: number;
  timeout_ms: number | null;
  concurrency_limit: number | null;
  cancel_on: { event: string; match: Record<string, unknown> }[];
  pinned: boolean;
  deferred: boolean;
}

/** The rows of a definition's `on` option (options.ts refused what SQL cannot compute). */
export function triggerRows(definition: WorkflowDefinition): TriggerRow[] {
  // A deferred start is made by start() in a worker of the workflow: the run's columns come from there.
  const deferred = startNeedsCode(definition);
  return definition.on.map((trigger, position) => ({
    workflow_name: definition.name,
    position,
    event_name: trigger.event,
    match: trigger.match,
    queue_name: definition.queue,
    priority: definition.priority,
    timeout_ms: definition.timeoutMs ?? null,
    concurrency_limit: definition.concurrency && !deferred ? definition.concurrency.limit : null,
    cancel_on: deferred ? [] : definition.cancelOn.map(({ event, match }) => ({ event, match: (match ?? {}) as Record<string, unknown> })),
    pinned: definition.versioning === 'pinned',
    deferred,
  }));
}

/**
 * Makes the table's rows of these workflows their `on` options; `version` gives the flow's (the triggered
 * runs' `version`), read only when some workflow has the option: reading it fixes the flow's version (as
 * a first start does), which a migrate() before the workflows are registered must not do.
 * Returns the workflows whose rows (some or all) were deleted.
 */
export async function syncTriggers(db: Queryable, t: Tables, definitions: WorkflowDefinition[], version: () => string): Promise<string[]> {
  if (definitions.length === 0) return [];
  const rows = definitions.flatMap(triggerRows);
  const table = triggersTable(t);
  const [answer] = await db.query<{ removed: string[] | null }>(
    `WITH x AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(workflow_name text, position integer, event_name text, match jsonb,
         queue_name text, priority integer, timeout_ms bigint, concurrency_limit integer, cancel_on jsonb, pinned boolean, deferred boolean)
     ), del AS (
       DELETE FROM ${table} d WHERE d.workflow_name = ANY($2::text[])
         AND NOT EXISTS (SELECT 1 FROM x WHERE x.workflow_name = d.workflow_name AND x.position = d.position)
       RETURNING d.workflow_name
     ), up AS (
       INSERT INTO ${table} AS s (workflow_name, position, event_name, match, queue_name, priority, timeout_ms, concurrency_limit, cancel_on, version, pinned, deferred)
       SELECT x.workflow_name, x.position, x.event_name, x.match, x.queue_name, x.priority, x.timeout_ms, x.concurrency_limit, x.cancel_on, $3::text, x.pinned, x.deferred
       FROM x ORDER BY x.workflow_name, x.position
       ON CONFLICT (workflow_name, position) DO UPDATE SET
         event_name = EXCLUDED.event_name, match = EXCLUDED.match, queue_name = EXCLUDED.queue_name, priority = EXCLUDED.priority,
         timeout_ms = EXCLUDED.timeout_ms, concurrency_limit = EXCLUDED.concurrency_limit, cancel_on = EXCLUDED.cancel_on,
         version = EXCLUDED.version, pinned = EXCLUDED.pinned, deferred = EXCLUDED.deferred, updated_at = now()
       WHERE (s.event_name, s.match, s.queue_name, s.priority, s.timeout_ms, s.concurrency_limit, s.cancel_on, s.version, s.pinned, s.deferred)
         IS DISTINCT FROM (EXCLUDED.event_name, EXCLUDED.match, EXCLUDED.queue_name, EXCLUDED.priority, EXCLUDED.timeout_ms,
                           EXCLUDED.concurrency_limit, EXCLUDED.cancel_on, EXCLUDED.version, EXCLUDED.pinned, EXCLUDED.deferred)
       RETURNING 1
     )
     SELECT (SELECT array_agg(DISTINCT workflow_name) FROM del) AS removed, (SELECT count(*) FROM up) AS upserted`,
    [JSON.stringify(rows), definitions.map((d) => d.name), rows.length > 0 ? version() : null],
  );
  return answer?.removed ?? [];
}
