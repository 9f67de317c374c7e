import { Op } from 'sequelize';
import type { WhereOptions } from 'sequelize';
import { quoteIdent } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import type { RunStatus } from '../types.js';
import type { RunTags } from '../tags.js';
import { cursorTimeSql, encodeCursor } from './cursor.js';
import type { ReadDb } from './db.js';
import { RUN_STATUSES } from '../run-status.js';
import { WAIT_STATE_COLUMNS, toWaitState } from './waiting.js';
import { listConditions, searchRuns, taggedIds } from './list-search.js';
import type { SearchWindow } from './list-search.js';
import type { RunFilter, RunScope } from './list-types.js';
import type { RunWaitState, WaitStateRow } from './waiting.js';

export { RUN_STATUSES };
export type { SearchWindow };
export type { RunFilter, RunScope, TagFilter } from './list-types.js';

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
  /** With a search: how far its text matching read (read/list-search.ts); null without one. */
  searched: SearchWindow | null;
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

/** A row of the list's statement as the viewer shows it. */
function toRunRow(r: ListedRunRow): RunRow {
  return {
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
  };
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
   * Newest first, keyset-paginated on id (ids are assigned in creation order): as fast on page 1,000 as
   * on page 1, each filter a range of one index (migration 019). The search matches a run id's start
   * over every run of the filter (the run_id index; a run id typed whole in any scope), and the input's
   * JSON text and the error's class, code and message over the newest SEARCH_WINDOW runs of the filter
   * below the page's start (no index can answer a substring without an extension): `searched` says so.
   */
  async listRuns(filter: RunFilter): Promise<RunPage> {
    if (filter.q === null) {
      if (await this.#noneCounted(filter)) return { runs: [], next: null, searched: null };
      const tagged = await taggedIds(this.#db, filter);
      const where = listConditions(filter, []);
      const rows = tagged
        ? await this.#db.select<ListedRunRow>(`${this.#rowsSql()} WHERE id = ANY($1::bigint[]) ORDER BY id DESC`, [tagged])
        : await this.#db.select<ListedRunRow>(`${this.#rowsSql()} WHERE ${where.sql} ORDER BY id DESC LIMIT ${filter.limit + 1}`, where.params);
      const page = rows.slice(0, filter.limit);
      const last = page[page.length - 1];
      const next = rows.length > filter.limit && last ? encodeCursor({ createdAt: last.created_key, id: String(last.id) }) : null;
      return { runs: page.map(toRunRow), next, searched: null };
    }
    const found = await searchRuns(this.#db, { ...filter, q: filter.q });
    const rows = found.ids.length === 0 ? [] : await this.#db.select<ListedRunRow>(`${this.#rowsSql()} WHERE id = ANY($1::bigint[]) ORDER BY id DESC`, [found.ids]);
    return { runs: rows.map(toRunRow), next: found.next, searched: found.searched };
  }

  /**
   * Whether the maintained counts say no run has the filter's workflow and status: a workflow with no
   * waiting run would otherwise read every waiting run of the others (runs_by_status, filtered).
   */
  async #noneCounted(filter: RunFilter): Promise<boolean> {
    if (filter.status === null || filter.workflow === null) return false;
    return !(await this.#maintained(filter.workflow)).some((row) => row.status === filter.status);
  }

  /** The run list's columns (bounded error, child count, wait state), before its WHERE. */
  #rowsSql(): string {
    const t: Tables = this.#db.tables;
    return `SELECT id, run_id, workflow_name, status, created_at, started_at, updated_at, parent_run_id, tags,
              coalesce(completed_at, failed_at, cancelled_at) AS finished_at, ${cursorTimeSql('created_at')} AS created_key,
              CASE WHEN error IS NULL OR jsonb_typeof(error) <> 'object' THEN NULL
                   ELSE left(coalesce(error->>'code', error->>'class', 'Error'), 80) END AS error_code,
              left(error->>'message', ${ERROR_MESSAGE_CHARS}) AS error_message,
              coalesce(length(error->>'message') > ${ERROR_MESSAGE_CHARS}, false) AS error_cut,
              (SELECT count(*)::int FROM (SELECT 1 FROM ${t.runs} c WHERE c.parent_run_id = r.run_id LIMIT ${CHILD_COUNT_CAP}) AS children) AS child_count,
              ${WAIT_STATE_COLUMNS}
       FROM ${t.runs} r`;
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

  /** Every workflow name that has runs (for the filter): the maintained counts' names, never a scan of the runs. */
  async workflowNames(): Promise<string[]> {
    const rows = await this.#db.select<{ workflow_name: string }>(
      `SELECT workflow_name FROM ${quoteIdent(this.#db.tables.schema)}.durable_flow_run_counts
       GROUP BY 1 HAVING sum(runs) > 0 ORDER BY 1 LIMIT 500`,
    );
    return rows.map((r) => r.workflow_name);
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
