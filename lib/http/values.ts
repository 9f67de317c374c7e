import type { Response } from 'express';
import type pg from 'pg';
import type { Tables } from '../db/tables.js';
import type { TimelineLimits, TruncatedValue } from '../workflow/inspect.js';
import { runSegment } from './run-path.js';

/**
 * How much of a run the viewer renders (reliability G10). JSON up to 64 KiB of text is shown whole;
 * beyond, the first 4,000 characters of it pretty-printed and a link to the whole value. A run page
 * shows its first 200 logs; the log pages go on from there. So a 5 MB input or 100,000 log lines cost a
 * page of some hundred kilobytes, not 40 MB of HTML a browser chokes on.
 */
export const VIEW_LIMITS: TimelineLimits = { valueBytes: 64 * 1024, previewChars: 4000, logs: 200 };

/** Log lines per log page: `limit` may ask for up to 500. */
export const LOG_PAGE = { default: 200, max: 500 };

/** A value left out of a page, with where to fetch it whole. */
export interface Cut extends TruncatedValue {
  href: string;
}

/** Where a value of a run is served whole (`path` as in TruncatedValue: `run.input`, `steps.12.result`). */
export function valueHref(base: string, runId: string, path: string): string {
  return `${base}/api/runs/${runSegment(runId)}/values/${path}`;
}

export function withHrefs(base: string, runId: string, truncated: readonly TruncatedValue[]): Cut[] {
  return truncated.map((cut) => ({ ...cut, href: valueHref(base, runId, cut.path) }));
}

/** For templates: the cut of a value by its path, or undefined when the value is shown whole. */
export function cutOf(cuts: readonly Cut[]): (path: string) => Cut | undefined {
  const byPath = new Map(cuts.map((cut) => [cut.path, cut]));
  return (path) => byPath.get(path);
}

/** Answers with a whole value, as a download named after it. */
export function sendWhole(res: Response, value: string, type: 'json' | 'text', name: string): void {
  res.set('Content-Disposition', `attachment; filename="${name.replace(/[^\w.-]/g, '_')}.${type === 'json' ? 'json' : 'txt'}"`);
  res.type(type === 'json' ? 'application/json' : 'text/plain').send(value);
}

/**
 * The values a run's page can leave out, by path, each with its statement (`$1` the run id, `$2` the
 * record id). The column names come from this table only; the run and record ids are bound.
 */
const SOURCES: Record<string, { sql: (t: Tables, column: string) => string; columns: Record<string, 'json' | 'text'> }> = {
  run: {
    sql: (t, c) => `SELECT ${c} AS value FROM ${t.runs} WHERE run_id = $1`,
    columns: { input: 'json', output: 'json', error: 'json' },
  },
  steps: {
    sql: (t, c) => `SELECT s.${c} AS value FROM ${t.steps} s JOIN ${t.runs} r ON r.id = s.workflow_run_id WHERE r.run_id = $1 AND s.id = $2`,
    columns: { result: 'json', error: 'json', cursor: 'json' },
  },
  logs: {
    sql: (t, c) => `SELECT l.${c} AS value FROM ${t.logs} l JOIN ${t.runs} r ON r.id = l.workflow_run_id WHERE r.run_id = $1 AND l.id = $2`,
    columns: { data: 'json', message: 'text' },
  },
  waits: {
    sql: (t, c) => `SELECT w.${c} AS value FROM ${t.waits} w JOIN ${t.runs} r ON r.id = w.workflow_run_id WHERE r.run_id = $1 AND w.id = $2`,
    columns: { match: 'json' },
  },
  // An event belongs to a run through the wait it matched.
  events: {
    sql: (t, c) =>
      `SELECT e.${c} AS value FROM ${t.events} e
       WHERE e.id = $2 AND EXISTS (SELECT 1 FROM ${t.waits} w JOIN ${t.runs} r ON r.id = w.workflow_run_id WHERE w.workflow_event_id = e.id AND r.run_id = $1)`,
    columns: { payload: 'json' },
  },
};

/** A value of a run: a row of SOURCES (`kind`, its record `id`) and its `column`. */
export interface ValuePath {
  kind: string;
  id: string | null;
  column: string;
  type: 'json' | 'text';
}

/** A value path of SOURCES (`run.input`, `steps.12.result`), or null when it names none. */
export function parseValuePath(path: string): ValuePath | null {
  const match = /^(?:(run)|(steps|logs|waits|events)\.(\d{1,18}))\.([a-z]+)$/.exec(path);
  if (!match) return null;
  const kind = match[1] ?? match[2]!;
  const type = SOURCES[kind]!.columns[match[4]!];
  return type ? { kind, id: match[3] ?? null, column: match[4]!, type } : null;
}

/** The whole text of a run's value (JSON text, or the plain text of a log message); null if there is none. */
export async function readValue(pool: pg.Pool, t: Tables, runId: string, path: ValuePath): Promise<string | null> {
  const source = SOURCES[path.kind]!;
  const column = path.type === 'json' ? `${path.column}::text` : path.column;
  const { rows } = await pool.query<{ value: string | null }>(source.sql(t, column), path.id === null ? [runId] : [runId, path.id]);
  return rows[0]?.value ?? null;
}
