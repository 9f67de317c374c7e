import type { ReadDb } from './db.js';

/**
 * The values a run's page can leave out, by path, each with its statement (`$1` the run id, `$2` the
 * record id). The column names come from this table only; the run and record ids are bound.
 */
const SOURCES: Record<string, { sql: (t: ReadDb['tables'], column: string) => string; columns: Record<string, 'json' | 'text'> }> = {
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
    columns: { match: 'json', result: 'json' },
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
export async function readValue(db: ReadDb, runId: string, path: ValuePath): Promise<string | null> {
  const source = SOURCES[path.kind]!;
  const column = path.type === 'json' ? `${path.column}::text` : path.column;
  const rows = await db.select<{ value: string | null }>(source.sql(db.tables, column), path.id === null ? [runId] : [runId, path.id]);
  return rows[0]?.value ?? null;
}
