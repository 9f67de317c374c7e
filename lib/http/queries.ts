import type pg from 'pg';
import type { Tables } from '../db/tables.js';
import type { RunStatus } from '../types.js';
import { jsonColumn, loadTimeline, readJson } from '../workflow/inspect.js';
import type { Timeline, TruncatedValue } from '../workflow/inspect.js';
import { cursorTimeSql, encodeCursor } from './cursor.js';
import type { Cursor } from './cursor.js';
import { VIEW_LIMITS, readValue } from './values.js';
import type { ValuePath } from './values.js';

export const RUN_STATUSES: readonly RunStatus[] = [
  'enqueued', 'running', 'sleeping', 'waiting', 'ready', 'retrying', 'completed', 'failed', 'cancelled',
];

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

function scopeKey(scope: RunScope): string {
  return scope.kind === 'children' ? `children:${scope.parentRunId}` : scope.kind;
}

/** A wait an event matched: the run, its workflow and the waiting step. */
export interface MatchedWait {
  runId: string;
  workflow: string;
  step: string;
}

/** The waits event `e` matched, as a JSON array of MatchedWait (oldest wait first). */
function matchedWaitsSql(t: Tables): string {
  return `coalesce((SELECT json_agg(json_build_object('runId', r.run_id, 'workflow', r.workflow_name, 'step', s.name) ORDER BY w.id)
                    FROM ${t.waits} w
                    JOIN ${t.runs} r ON r.id = w.workflow_run_id
                    JOIN ${t.steps} s ON s.id = w.workflow_step_id
                    WHERE w.workflow_event_id = e.id), '[]')`;
}

/**
 * The viewer's reads. They run on a pool of their own (small, with a statement timeout), so a heavy
 * page can neither starve the engine's connections nor run for ever. Every value is bound.
 */
export class ViewerQueries {
  readonly #pool: pg.Pool;
  readonly #t: Tables;
  /** Counts that were slow to compute, with the time until which they are reused. */
  readonly #countCache = new Map<string, { at: number; counts: Record<string, number> }>();
  #csrfKey: Promise<string> | undefined;

  constructor(pool: pg.Pool, tables: Tables) {
    this.#pool = pool;
    this.#t = tables;
  }

  /**
   * The key of the viewer's CSRF tokens, read once (and again after a failed read). It lives in the
   * database so that every web process signs alike; a deleted row is made anew (a key rotation).
   */
  csrfKey(): Promise<string> {
    this.#csrfKey ??= this.#readCsrfKey().catch((error: unknown) => {
      this.#csrfKey = undefined;
      throw error;
    });
    return this.#csrfKey;
  }

  async #readCsrfKey(): Promise<string> {
    const read = async () =>
      (await this.#pool.query<{ value: string }>(`SELECT value FROM ${this.#t.secrets} WHERE name = 'viewer_csrf'`)).rows[0]?.value;
    let key: string | undefined;
    try {
      key = await read();
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') {
        throw new Error('durable-flow: the viewer needs migration 003 (its CSRF key table): run `await flow.migrate()` at start-up', { cause: error });
      }
      throw error;
    }
    if (key) return key;
    await this.#pool.query(
      `INSERT INTO ${this.#t.secrets} (name, value)
       VALUES ('viewer_csrf', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')) ON CONFLICT (name) DO NOTHING`,
    );
    return (await read())!;
  }

  /**
   * Newest first, keyset-paginated on (created_at, id): as fast on page 1,000 as on page 1. The search
   * matches a run id's start (any run id typed whole, in any scope), the input's JSON text, and the
   * error's class, code and message.
   */
  async listRuns(filter: RunFilter): Promise<RunPage> {
    const search = filter.q === null ? null : inputSearch(filter.q);
    const scope = scopeSql(filter.scope, 10, 3);
    const { rows } = await this.#pool.query(
      `SELECT id, run_id, workflow_name, status, created_at, started_at, updated_at, parent_run_id,
              coalesce(completed_at, failed_at, cancelled_at) AS finished_at, ${cursorTimeSql('created_at')} AS created_key,
              CASE WHEN error IS NULL OR jsonb_typeof(error) <> 'object' THEN NULL
                   ELSE left(coalesce(error->>'code', error->>'class', 'Error'), 80) END AS error_code,
              left(error->>'message', ${ERROR_MESSAGE_CHARS}) AS error_message,
              coalesce(length(error->>'message') > ${ERROR_MESSAGE_CHARS}, false) AS error_cut,
              (SELECT count(*)::int FROM (SELECT 1 FROM ${this.#t.runs} c WHERE c.parent_run_id = r.run_id LIMIT ${CHILD_COUNT_CAP}) AS children) AS child_count
       FROM ${this.#t.runs} r
       WHERE ($1::text IS NULL OR status = $1)
         AND ($2::text IS NULL OR workflow_name = $2)
         AND ($3::text IS NULL OR starts_with(run_id, $3)
              OR (CASE WHEN $8::boolean THEN regexp_replace(input::text, '\\\\(["\\\\])', '\\1', 'g') ELSE input::text END) ILIKE '%' || $4 || '%'
              OR (jsonb_typeof(error) = 'object'
                  AND (error->>'message' ILIKE '%' || $9 || '%' OR error->>'class' ILIKE '%' || $9 || '%' OR error->>'code' ILIKE '%' || $9 || '%')))
         AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::bigint))
         AND ${scope.sql}
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
    }));
    const last = page[page.length - 1];
    return { runs, next: rows.length > filter.limit && last ? encodeCursor({ createdAt: last.created_key, id: String(last.id) }) : null };
  }

  /**
   * Runs by status over all runs of a scope (of one workflow when given). Exact and uncached while counting is
   * cheap; once a count takes over 100 ms (a million runs), reused for five seconds so live pages do
   * not keep the database counting.
   */
  async countByStatus(workflow: string | null, scope: RunScope = { kind: 'all' }): Promise<Record<string, number>> {
    const key = `${scopeKey(scope)}\u0000${workflow ?? ''}`;
    const cached = this.#countCache.get(key);
    if (cached && Date.now() < cached.at) return cached.counts;
    const started = Date.now();
    const { rows } = await this.#pool.query<{ status: RunStatus; n: number }>(
      `SELECT status, count(*)::int AS n FROM ${this.#t.runs}
       WHERE ($1::text IS NULL OR workflow_name = $1)
         AND ${scope.kind === 'top' ? 'parent_run_id IS NULL' : scope.kind === 'children' ? 'parent_run_id = $2' : 'TRUE'}
       GROUP BY status`,
      scope.kind === 'children' ? [workflow, scope.parentRunId] : [workflow],
    );
    const counts: Record<string, number> = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0]));
    for (const row of rows) counts[row.status] = row.n;
    const took = Date.now() - started;
    if (took > 100) this.#countCache.set(key, { at: Date.now() + 5000, counts });
    else this.#countCache.delete(key);
    return counts;
  }

  /** Run counts by workflow and status. */
  async workflowStats(): Promise<Map<string, Record<string, number>>> {
    const { rows } = await this.#pool.query<{ workflow_name: string; status: RunStatus; n: number }>(
      `SELECT workflow_name, status, count(*)::int AS n FROM ${this.#t.runs} GROUP BY workflow_name, status`,
    );
    const stats = new Map<string, Record<string, number>>();
    for (const row of rows) {
      const entry = stats.get(row.workflow_name) ?? Object.fromEntries(RUN_STATUSES.map((s) => [s, 0]));
      entry[row.status] = row.n;
      stats.set(row.workflow_name, entry);
    }
    return stats;
  }

  /** Every workflow name that has runs (for the filter). */
  async workflowNames(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ workflow_name: string }>(
      `SELECT DISTINCT workflow_name FROM ${this.#t.runs} ORDER BY workflow_name LIMIT 500`,
    );
    return rows.map((r) => r.workflow_name);
  }

  /** One event's name and the waits it matched (the notice after sending it), or null when there is none. */
  async eventMatches(id: string): Promise<{ id: string; name: string; eventId: string | null; matched: MatchedWait[] } | null> {
    const { rows } = await this.#pool.query(
      `SELECT e.id, e.name, e.event_id, ${matchedWaitsSql(this.#t)} AS matched FROM ${this.#t.events} e WHERE e.id = $1`,
      [id],
    );
    const e = rows[0];
    return e ? { id: String(e.id), name: e.name as string, eventId: e.event_id as string | null, matched: e.matched as MatchedWait[] } : null;
  }

  /** Recent events (newest first, keyset on id), each with the waits it matched. */
  async listEvents(filter: { name: string | null; beforeId: string | null; limit: number }) {
    const { rows } = await this.#pool.query(
      `SELECT e.id, e.event_id, e.name, ${jsonColumn('e.payload', 'payload_text', { limit: '$4', preview: '$5' })}, e.source, e.occurred_at,
              ${matchedWaitsSql(this.#t)} AS matched
       FROM ${this.#t.events} e
       WHERE ($1::text IS NULL OR e.name = $1) AND ($2::bigint IS NULL OR e.id < $2::bigint)
       ORDER BY e.id DESC
       LIMIT $3`,
      [filter.name, filter.beforeId, filter.limit + 1, VIEW_LIMITS.valueBytes, VIEW_LIMITS.previewChars],
    );
    const truncated: TruncatedValue[] = [];
    const events = rows.slice(0, filter.limit).map((e) => ({
      id: String(e.id),
      eventId: e.event_id as string | null,
      name: e.name as string,
      payload: readJson(e, 'payload_text', `events.${e.id}.payload`, truncated),
      source: e.source as string | null,
      occurredAt: e.occurred_at as Date,
      matched: e.matched as MatchedWait[],
    }));
    const last = events[events.length - 1];
    return { events, truncated, next: rows.length > filter.limit && last ? last.id : null };
  }

  /** The whole payload of an event as JSON text, or null when there is no such event. */
  async eventPayload(id: string): Promise<string | null> {
    const { rows } = await this.#pool.query<{ payload: string }>(`SELECT payload::text AS payload FROM ${this.#t.events} WHERE id = $1`, [id]);
    return rows[0]?.payload ?? null;
  }

  /** A run's timeline as the viewer shows it (bounded: VIEW_LIMITS), from the log after `logsAfter` on. */
  timeline(runId: string, logs: { after?: string; limit?: number } = {}): Promise<Timeline | null> {
    return loadTimeline(this.#pool, this.#t, runId, { ...VIEW_LIMITS, logs: logs.limit ?? VIEW_LIMITS.logs, logsAfter: logs.after });
  }

  /** The whole text of one value of a run (see values.ts), or null. */
  value(runId: string, path: ValuePath): Promise<string | null> {
    return readValue(this.#pool, this.#t, runId, path);
  }

  /** Status and workflow of some runs (the parent and children shown on a run page). */
  async runSummaries(runIds: string[]): Promise<Map<string, { workflow: string; status: RunStatus }>> {
    if (runIds.length === 0) return new Map();
    const { rows } = await this.#pool.query(
      `SELECT run_id, workflow_name, status FROM ${this.#t.runs} WHERE run_id = ANY($1::text[])`,
      [runIds],
    );
    return new Map(rows.map((r) => [r.run_id as string, { workflow: r.workflow_name as string, status: r.status as RunStatus }]));
  }
}
