import type { RunTags } from '../tags.js';
import { cursorTimeSql, encodeCursor } from './cursor.js';
import type { ReadDb } from './db.js';
import type { RunFilter, TagFilter } from './list-types.js';

/**
 * Runs the text search reads per page: the newest this many runs of the filter, below the page's start.
 * Matching a substring of the input's JSON takes reading it (no index answers it without an extension
 * such as pg_trgm, which durable-flow does not assume), so the search is bounded and says so.
 */
export const SEARCH_WINDOW = 5000;

/** How far a search's text matching read. */
export interface SearchWindow {
  /** Runs whose text was matched on this page (at most SEARCH_WINDOW). */
  runs: number;
  /** Whether older runs of the filter were not read: `next` continues the search among them. */
  cut: boolean;
}

/** SQL conditions (joined with AND) and their parameters. */
export interface Conditions {
  sql: string;
  params: unknown[];
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

/**
 * The list's filter as conditions, each the range of an index of migration 019: a status other than
 * completed says `status <> 'completed'` too (runs_by_status is partial, and a generic plan must see
 * its predicate), a workflow reads runs_by_workflow, one run's children runs_parent, the rest the
 * primary key. A tag filter is one containment of all its pairs, which the GIN index answers (its
 * predicate repeated too); one key asked with two values matches no run, said outright. Top-level
 * scope with a search: a run id typed whole finds its run in any scope.
 */
export function listConditions(filter: RunFilter, params: unknown[]): Conditions {
  const add = (value: unknown) => `$${params.push(value)}`;
  const where: string[] = [];
  if (filter.status !== null) where.push(`status = ${add(filter.status)}${filter.status === 'completed' ? '' : ` AND status <> 'completed'`}`);
  if (filter.workflow !== null) where.push(`workflow_name = ${add(filter.workflow)}`);
  if (filter.scope.kind === 'top') where.push(filter.q === null ? 'parent_run_id IS NULL' : `(parent_run_id IS NULL OR run_id = ${add(filter.q)})`);
  if (filter.scope.kind === 'children') where.push(`parent_run_id = ${add(filter.scope.parentRunId)}`);
  if (filter.tags.length > 0) where.push(tagsSql(filter.tags, add));
  if (filter.before) where.push(`id < ${add(filter.before.id)}::bigint`);
  return { sql: where.length === 0 ? 'TRUE' : where.join(' AND '), params };
}

export function tagsSql(filters: TagFilter[], add: (value: unknown) => string): string {
  const wanted: RunTags = Object.create(null) as RunTags;
  for (const { key, value } of filters) {
    if (Object.hasOwn(wanted, key) && wanted[key] !== value) return 'FALSE';
    wanted[key] = value;
  }
  return `tags @> ${add(JSON.stringify(wanted))}::jsonb AND tags <> '{}'::jsonb`;
}

/** The text condition of a search over a window's rows (`input`, `error`). */
function textSql(q: string, add: (value: unknown) => string): string {
  const search = inputSearch(q);
  const input = search.unescape ? `regexp_replace(input::text, '\\\\(["\\\\])', '\\1', 'g')` : 'input::text';
  const error = add(escapeLike(q));
  return `(${input} ILIKE '%' || ${add(search.pattern)} || '%'
           OR (jsonb_typeof(error) = 'object'
               AND (error->>'message' ILIKE '%' || ${error} || '%' OR error->>'class' ILIKE '%' || ${error} || '%' OR error->>'code' ILIKE '%' || ${error} || '%')))`;
}

/**
 * One page of a search: the ids to show, newest first, the next page's cursor and how far the text
 * matching read. Three statements at once: the window's text matches (the newest SEARCH_WINDOW runs of
 * the filter below the cursor, in id order, so a common text stops at the page's end), the window's size
 * and oldest id, and the run-id matches (the run_id index, over every run of the filter below the
 * cursor, unless the cursor says they were all shown). The page takes both, newest first, and never skips a run: when the window is cut and the text
 * matches do not fill the page, the page shows every run-id match older than the window too if they
 * all fit (the next page then matches text only, from the window's end), else only those in the window
 * (the next page, from the window's end, takes the older ones).
 */
export async function searchRuns(db: ReadDb, filter: RunFilter & { q: string }): Promise<{ ids: string[]; next: string | null; searched: SearchWindow }> {
  const n = filter.limit;
  const t = db.tables;
  const windowParams: unknown[] = [];
  const where = listConditions(filter, windowParams);
  const whereCount = windowParams.length;
  const add = (value: unknown) => `$${windowParams.push(value)}`;
  const window = (columns: string) => `SELECT ${columns} FROM ${t.runs} WHERE ${where.sql} ORDER BY id DESC LIMIT ${SEARCH_WINDOW}`;
  const textOnly = filter.before?.textOnly === true;
  const prefixParams: unknown[] = [];
  const conditions = listConditions(filter, prefixParams);
  const [matched, bounds, prefixRows] = await Promise.all([
    // Not materialized: the window comes in id order, so a common text stops at the page's end.
    db.select<{ run: string }>(
      `SELECT w.id::text AS run FROM (${window('id, input, error')}) w WHERE ${textSql(filter.q, add)} ORDER BY w.id DESC LIMIT ${n + 1}`,
      windowParams,
    ),
    db.select<{ scanned: number; floor: string | null }>(`SELECT count(*)::int AS scanned, min(w.id)::text AS floor FROM (${window('id')}) w`, windowParams.slice(0, whereCount)),
    textOnly
      ? Promise.resolve([])
      : db.select<{ run: string }>(
          `SELECT r.id::text AS run FROM ${t.runs} r WHERE ${conditions.sql} AND starts_with(run_id, $${prefixParams.push(filter.q)}) ORDER BY r.id DESC LIMIT ${n + 1}`,
          prefixParams,
        ),
  ]);
  const win = { ids: matched.map((r) => r.run), scanned: bounds[0]?.scanned ?? 0, floor: bounds[0]?.floor ?? null };
  const prefix = prefixRows.map((r) => r.run);
  const scanned = Number(win.scanned);
  const all = [...new Set([...win.ids, ...prefix])].sort((a, b) => (BigInt(b) > BigInt(a) ? 1 : BigInt(b) < BigInt(a) ? -1 : 0));
  const cursorAt = async (id: string, only: boolean) => {
    const [row] = await db.select<{ key: string }>(`SELECT ${cursorTimeSql('created_at')} AS key FROM ${t.runs} WHERE id = $1`, [id]);
    return encodeCursor({ createdAt: row?.key ?? '1970-01-01T00:00:00.000000Z', id, ...(only ? { textOnly: true } : {}) });
  };
  const cut = scanned >= SEARCH_WINDOW && win.floor !== null;
  if (!cut) {
    const ids = all.slice(0, n);
    return { ids, next: all.length > n ? await cursorAt(ids[ids.length - 1]!, textOnly) : null, searched: { runs: scanned, cut: false } };
  }
  const floor = BigInt(win.floor!);
  const inWindow = all.filter((id) => BigInt(id) >= floor);
  const older = all.filter((id) => BigInt(id) < floor);
  const floorCursor = (only: boolean) => cursorAt(win.floor!, only);
  if (inWindow.length > n) {
    const ids = inWindow.slice(0, n);
    return { ids, next: await cursorAt(ids[ids.length - 1]!, textOnly), searched: { runs: scanned, cut: true } };
  }
  if (inWindow.length + older.length <= n) return { ids: [...inWindow, ...older], next: await floorCursor(true), searched: { runs: scanned, cut: true } };
  return { ids: inWindow, next: await floorCursor(textOnly), searched: { runs: scanned, cut: true } };
}

/** Runs a tag filter combined with a status or workflow reads in id order before it asks the tag index. */
export const TAG_SCAN = 20_000;

/**
 * The ids of a page filtered by tags and by a status or workflow, or null when the planner's own plan
 * should serve. The tag index and the status's (or workflow's) are two bitmaps the planner ANDs, then
 * sorts all they share: a tag on a million runs with failed ones was 4 s at 10 million runs. So the
 * newest TAG_SCAN runs of the other filters are read in id order first, the tags matched among them:
 * a common tag fills the page there. Only a tag too rare for that (its bitmap small) goes to the index.
 */
export async function taggedIds(db: ReadDb, filter: RunFilter): Promise<string[] | null> {
  if (filter.tags.length === 0 || (filter.status === null && filter.workflow === null)) return null;
  const params: unknown[] = [];
  const where = listConditions({ ...filter, tags: [] }, params);
  const scanParams = params.length;
  const tags = tagsSql(filter.tags, (value) => `$${params.push(value)}`);
  // Not materialized: the scan stops as soon as the page is full (a common tag: a few hundred rows).
  const scan = `SELECT id, tags FROM ${db.tables.runs} WHERE ${where.sql} ORDER BY id DESC LIMIT ${TAG_SCAN}`;
  const rows = await db.select<{ id: string }>(`SELECT s.id::text AS id FROM (${scan}) s WHERE ${tags.replace(/\btags\b/g, 's.tags')} ORDER BY s.id DESC LIMIT ${filter.limit + 1}`, params);
  if (rows.length > filter.limit) return rows.map((r) => r.id);
  // Fewer: exact if the scan read every run of the other filters, else the tag index answers.
  const [all] = await db.select<{ n: number }>(`SELECT count(*)::int AS n FROM (${scan}) s`, params.slice(0, scanParams));
  return Number(all?.n ?? 0) < TAG_SCAN ? rows.map((r) => r.id) : null;
}
