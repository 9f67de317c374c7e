/**
 * Keyset cursors of the viewer's lists ordered by (created_at, id): `<created_at>_<id>`, where
 * created_at is the exact stored instant, to the microsecond. A JavaScript Date keeps milliseconds
 * only, and a cursor rounded to the millisecond skips every row of that millisecond it has not shown
 * yet (20,000 runs paged by 50 showed 18,083). So the instant travels as Postgres text, never as a Date.
 * Clients treat the cursor as opaque; the server validates it before it reaches SQL.
 */

export interface Cursor {
  /** `YYYY-MM-DDTHH:MM:SS.ffffffZ`, exact, for `$n::timestamptz`. */
  createdAt: string;
  /** A bigint id, as decimal text. */
  id: string;
  /**
   * The run list's search only (`_t` at the end): the run-id matches older than this point were all
   * shown already, so the pages from here on match the text alone (read/lists.ts).
   */
  textOnly?: boolean;
}

/** SQL for the exact cursor text of a row's created_at (an expression over `column`). */
export function cursorTimeSql(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** Whether `text` is a decimal id Postgres can hold in a `bigint` (a larger one would be an SQL error). */
export function isBigintId(text: string): boolean {
  return /^\d{1,19}$/.test(text) && BigInt(text) <= 9_223_372_036_854_775_807n;
}

export function encodeCursor(cursor: Cursor): string {
  return `${cursor.createdAt}_${cursor.id}${cursor.textOnly ? '_t' : ''}`;
}

/**
 * Parses a cursor; null when it is not one (the caller answers 400). Three fractional digits are
 * accepted too: the links of earlier releases keep working.
 */
export function decodeCursor(text: string): Cursor | null {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})(\d{3})?Z_(\d{1,19})(_t)?$/.exec(text);
  if (!match || !isBigintId(match[3]!)) return null;
  // Only a real instant that Postgres accepts: no February 30th (Date.parse rolls it over), no year 0.
  const milliseconds = `${match[1]!}Z`;
  const time = Date.parse(milliseconds);
  if (Number.isNaN(time) || new Date(time).toISOString() !== milliseconds || milliseconds.startsWith('0000')) return null;
  return { createdAt: `${match[1]!}${match[2] ?? '000'}Z`, id: match[3]!, ...(match[4] ? { textOnly: true } : {}) };
}
