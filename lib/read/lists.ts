import { Op } from 'sequelize';
import type { WhereOptions } from 'sequelize';
import { quoteIdent } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import type { RunStatus } from '../types.js';
import type { RunTags } from '../tags.js';
import { cursorTimeSql, encodeCursor } from './cursor.js';
import type { Cursor } from './cursor.js';
import type { ReadDb } from './db.js';
import { RUN_STATUSES } from '../run-status.js';
import { WAIT_STATE_COLUMNS, toWaitState } from './waiting.js';
import type { RunWaitState, WaitStateRow } from './waiting.js';

export { RUN_STATUSES };

/**
 * Which runs a list holds: the top-level ones (the default: a fan-out of a thousand children does not
 * bury its parent), every run, or the children of one run.
 */
export type RunScope = { kind: 'top' } | { kind: 'all' } | { kind: 'children'; parentRunId: string };

export interface RunFilter {
  status: RunStatus | null;
  workflow: string | null;
  /** A run id whole or its start, or text in the input or in the error. */
  q: string | null;
  scope: RunScope;
  /** `?tag=key:value`, repeatable: runs carrying every one of them (index durable_flow_runs_tags). */
  tags: TagFilter[];
  /** Keyset cursor: rows strictly older than (createdAt, id). */
  before: Cursor | null;
  limit: number;
}

export interface RunRow {
  id: string;
  runId: string;
  workflow: string;
  status: RunStatus;
  createdAt: Date;
  startedAt: Date | null;
  updatedAt: Date;
  finishedAt: Date | null;
  /** The run that started this one (step.invoke), if any. */
  parentRunId: string | null;
  /** Runs this one started, counted up to CHILD_COUNT_CAP (a larger count shows as the cap). */
  childCount: number;
  /** A failed or cancelled run's error, bounded: its code (or class) and the start of its message. */
  error: RunErrorSummary | null;
  /** What says why a run not finished waits (the viewer's words: http/waiting.ts); null once it finished. */
  waitState: RunWaitState | null;
  tags: RunTags;
}

export interface TagFilter {
  key: string;
  value: string;
}

export interface RunErrorSummary {
  code: string;
  message: string;
  /** Whether the message was cut at ERROR_MESSAGE_CHARS. */
  cut: boolean;
}

/** How much of a run's error message the list shows (the run page has it whole). */
export const ERROR_MESSAGE_CHARS = 160;
/** Children counted per listed run; a fan-out past it shows as "1000+". */
export const CHILD_COUNT_CAP = 1000;

export interface RunPage {
  runs: RunRow[];
  /** Cursor of the next (older) page, or null on the last one. */
  next: string | null;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * What the search compares with the input's JSON text. That text escapes `"` and `\` inside strings
 * (`{"said": "a \"b\""}`), so a search holding either is compared with the text unescaped instead
 * (`{"said": "a "b""}`), where both what the user typed into a value or key and JSON as stored
 * (`"status": "paid"`) still match. Without them the two texts match the same searches, and the
 * cheaper one serves. Control characters stay escaped in both, so they are escaped here too.
 */
function inputSearch(q: string): { pattern: string; unescape: boolean } {
  const controls = q.replace(/[\u0001-\u001f]/g, (c) => JSON.stringify(c).slice(1, -1));
  return { pattern: escapeLike(controls), unescape: /["\\]/.test(q) };
}

/** SQL and parameters of a scope (`$n`: the next free parameter number). A run id typed whole finds its run in any scope. */
function scopeSql(scope: RunScope, n: number, q: number): { sql: string; params: unknown[] } {
  switch (scope.kind) {
    case 'all':
      return { sql: 'TRUE', params: [] };
    case 'top':
      return { sql: `(parent_run_id IS NULL OR run_id = $${q})`, params: [] };
    case 'children':
      return { sql: `parent_run_id = $${n}`, params: [scope.parentRunId] };
  }
}

/**
 * SQL of a tag filter: one containment of all its pairs, which the GIN index answers. The index is
 * partial (runs without tags are not in it), so its predicate is repeated for the planner to use it.
 * One key asked with two values matches no run: an object cannot say that, so it is said outright.
 */
function tagsSql(filters: TagFilter[], n: number): { sql: string; params: unknown[] } {
  if (filters.length === 0) return { sql: '', params: [] };
  const wanted: RunTags = Object.create(null) as RunTags;
  for (const { key, value } of filters) {
    if (Object.hasOwn(wanted, key) && wanted[key] !== value) return { sql: ' AND FALSE', params: [] };
    wanted[key] = value;
  }
  return { sql: ` AND tags @> $${n}::jsonb AND tags <> '{}'::jsonb`, params: [JSON.stringify(wanted)] };
}

function scopeKey(scope: RunScope): string {
  return scope.kind === 'children' ? `children:${scope.parentRunId}` : scope.kind;
}

/** A row of the run list's statement. */
interface ListedRunRow extends WaitStateRow {
  id: string;
  run_id: string;
  workflow_name: string;
  status: RunStatus;
  created_at: Date;
  started_at: Date | null;
  updated_at: Date;
  parent_run_id: string | null;
  finished_at: Date | null;
  /** The exact created_at as text (read/cursor.ts). */
  created_key: string;
  error_code: string | null;
  error_message: string | null;
  error_cut: boolean;
  child_count: number;
  tags: RunTags;
}

/** The runs of a count's scope, as a models `where`. */
function scopeWhere(scope: RunScope): WhereOptions {
  switch (scope.kind) {
    case 'all':
      return {};
    case 'top':
      return { parentRunId: null };
    case 'children':
      return { parentRunId: scope.parentRunId };
  }
}

/** Counts by status, every status present (0 when no run has it). */
function byStatus(rows: { status?: unknown; count: number }[]): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0]));
  for (const row of rows) counts[String(row.status)] = Number(row.count);
  return counts;
}

/**
 * The run lists of the viewer: the keyset-paged list with its search (SQL: the search says what the
 * models cannot), and counts, names and summaries through the models.
 */
export class RunLists {
  readonly #db: ReadDb;
  /** Counts that were slow to compute, with the time until which they are reused. */
  readonly #countCache = new Map<string, { at: number; counts: Record<string, number> }>();

  constructor(db: ReadDb) {
    this.#db = db;
  }

  /**
   * Newest first, keyset-paginated on (created_at, id): as fast on page 1,000 as on page 1. The search
   * matches a run id's start (any run id typed whole, in any scope), the input's JSON text, and the
   * error's class, code and message.
   */
  async listRuns(filter: RunFilter): Promise<RunPage> {
    const t: Tables = this.#db.tables;
    const search = filter.q === null ? null : inputSearch(filter.q);
    const scope = scopeSql(filter.scope, 10, 3);
    const tags = tagsSql(filter.tags, 10 + scope.params.length);
    const rows = await this.#db.select<ListedRunRow>(
      `SELECT id, run_id, workflow_name, status, created_at, started_at, updated_at, parent_run_id, tags,
              coalesce(completed_at, failed_at, cancelled_at) AS finished_at, ${cursorTimeSql('created_at')} AS created_key,
              CASE WHEN error IS NULL OR jsonb_typeof(error) <> 'object' THEN NULL
                   ELSE left(coalesce(error->>'code', error->>'class', 'Error'), 80) END AS error_code,
              left(error->>'message', ${ERROR_MESSAGE_CHARS}) AS error_message,
              coalesce(length(error->>'message') > ${ERROR_MESSAGE_CHARS}, false) AS error_cut,
              (SELECT count(*)::int FROM (SELECT 1 FROM ${t.runs} c WHERE c.parent_run_id = r.run_id LIMIT ${CHILD_COUNT_CAP}) AS children) AS child_count,
              ${WAIT_STATE_COLUMNS}
       FROM ${t.runs} r
       WHERE ($1::text IS NULL OR status = $1)
         AND ($2::text IS NULL OR workflow_name = $2)
         AND ($3::text IS NULL OR starts_with(run_id, $3)
              OR (CASE WHEN $8::boolean THEN regexp_replace(input::text, '\\\\(["\\\\])', '\\1', 'g') ELSE input::text END) ILIKE '%' || $4 || '%'
              OR (jsonb_typeof(error) = 'object'
                  AND (error->>'message' ILIKE '%' || $9 || '%' OR error->>'class' ILIKE '%' || $9 || '%' OR error->>'code' ILIKE '%' || $9 || '%')))
         AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::bigint))
         AND ${scope.sql}${tags.sql}
       ORDER BY created_at DESC, id DESC
       LIMIT $7`,
      [
        filter.status,
        filter.workflow,
        filter.q,
        search?.pattern ?? null,
        filter.before?.createdAt ?? null,
        filter.before?.id ?? null,
        filter.limit + 1,
        search?.unescape ?? false,
        filter.q === null ? null : escapeLike(filter.q),
        ...scope.params,
        ...tags.params,
      ],
    );
    const page = rows.slice(0, filter.limit);
    const runs: RunRow[] = page.map((r) => ({
      id: String(r.id),
      runId: r.run_id,
      workflow: r.workflow_name,
      status: r.status,
      createdAt: r.created_at,
      startedAt: r.started_at,
      updatedAt: r.updated_at,
      finishedAt: r.finished_at,
      parentRunId: r.parent_run_id,
      childCount: r.child_count,
      error: r.error_code === null ? null : { code: r.error_code, message: r.error_message ?? '', cut: r.error_cut },
      waitState: r.finished_at === null ? toWaitState(r) : null,
      tags: r.tags ?? {},
    }));
    const last = page[page.length - 1];
    return { runs, next: rows.length > filter.limit && last ? encodeCursor({ createdAt: last.created_key, id: String(last.id) }) : null };
  }

  /**
   * Runs by status over all runs of a scope (of one workflow when given). Over every run or the
   * top-level ones: the counts the metrics' triggers keep (durable_flow_run_counts, migration 016: exact,
   * a few rows per workflow, never a scan of the runs; top-level: runs - children). One run's children:
   * counted (an index on parent_run_id), exact and uncached while counting is cheap; once a count takes
   * over 100 ms, reused for five seconds so live pages do not keep the database counting.
   */
  async countByStatus(workflow: string | null, scope: RunScope = { kind: 'all' }): Promise<Record<string, number>> {
    if (scope.kind !== 'children') {
      const counts = byStatus([]);
      for (const row of await this.#maintained(workflow)) {
        counts[row.status] = (counts[row.status] ?? 0) + Number(row.runs) - (scope.kind === 'top' ? Number(row.children) : 0);
      }
      return counts;
    }
    const key = `${scopeKey(scope)}\u0000${workflow ?? ''}`;
    const cached = this.#countCache.get(key);
    if (cached && Date.now() < cached.at) return cached.counts;
    const started = Date.now();
    const rows = await this.#db.models.WorkflowRun.count({
      where: { ...(workflow === null ? {} : { workflowName: workflow }), ...scopeWhere(scope) },
      group: ['status'],
    });
    const counts = byStatus(rows);
    const took = Date.now() - started;
    if (took > 100) this.#countCache.set(key, { at: Date.now() + 5000, counts });
    else this.#countCache.delete(key);
    return counts;
  }

  /** Run counts by workflow and status: the maintained counts (see countByStatus), never a scan. */
  async workflowStats(): Promise<Map<string, Record<string, number>>> {
    const stats = new Map<string, Record<string, number>>();
    for (const row of await this.#maintained(null)) {
      const entry = stats.get(row.workflow_name) ?? byStatus([]);
      entry[row.status] = Number(row.runs);
      stats.set(row.workflow_name, entry);
    }
    return stats;
  }

  /** The counts durable_flow_run_counts keeps, summed over its shards: (workflow, status) pairs with runs. */
  #maintained(workflow: string | null): Promise<{ workflow_name: string; status: string; runs: string; children: string }[]> {
    return this.#db.select(
      `SELECT workflow_name, status, sum(runs)::bigint AS runs, sum(children)::bigint AS children FROM ${quoteIdent(this.#db.tables.schema)}.durable_flow_run_counts
       WHERE $1::text IS NULL OR workflow_name = $1 GROUP BY 1, 2 HAVING sum(runs) > 0 ORDER BY 1, 2`,
      [workflow],
    );
  }

  /** Every workflow name that has runs (for the filter). */
  async workflowNames(): Promise<string[]> {
    const rows = await this.#db.models.WorkflowRun.findAll({
      attributes: ['workflowName'],
      group: ['workflowName'],
      order: [['workflowName', 'ASC']],
      limit: 500,
    });
    return rows.map((r) => String(r.get('workflowName')));
  }

  /** Status and workflow of some runs (the parent and children shown on a run page). */
  async runSummaries(runIds: string[]): Promise<Map<string, { workflow: string; status: RunStatus }>> {
    if (runIds.length === 0) return new Map();
    const rows = await this.#db.models.WorkflowRun.findAll({
      attributes: ['runId', 'workflowName', 'status'],
      where: { runId: { [Op.in]: runIds } },
    });
    return new Map(rows.map((r) => [String(r.get('runId')), { workflow: String(r.get('workflowName')), status: r.get('status') as RunStatus }]));
  }
}
