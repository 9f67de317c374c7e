/**
 * Values shown rather than processed (the viewer) are bounded in SQL: a JSON value over a limit comes
 * as its size and the start of its pretty text instead, so a 5 MB input costs a bounded page.
 */

/**
 * Bounds for a timeline that is shown rather than processed (the viewer): JSON values and log messages
 * over `valueBytes` of text come as a preview of `previewChars` (pretty JSON) instead, an error's
 * message and stack are cut to `previewChars`, and only the first `logs` logs come, so a run with a
 * 5 MB input or 100,000 log lines costs a bounded page. What was cut is listed in `truncated`; the
 * next logs are those after `logsNext`.
 */
export interface TimelineLimits {
  valueBytes: number;
  previewChars: number;
  logs: number;
  /** The id of a log of the run: only logs after it come (the next page of `logsNext`). */
  logsAfter?: string | undefined;
  /** Steps shown at most, in their order, from `stepsOffset` (a run of 10,000 steps is paged). */
  steps?: number | undefined;
  stepsOffset?: number | undefined;
}

/** A value a bounded timeline left out: where it is (`run.input`, `steps.<id>.result`, `logs.<id>.data` …), its size, its start. */
export interface TruncatedValue {
  path: string;
  bytes: number;
  preview: string;
}

/** The placeholders of a bounded query's limit (bytes) and preview length (characters). */
export interface Bound {
  limit: string;
  preview: string;
}
export const BOUND: Bound = { limit: '$2', preview: '$3' };

/**
 * The select-list entries of a JSON value as text (`<alias>`); bounded, also `<alias>_bytes` and
 * `<alias>_preview` for a value over the limit, whose text is then null (read them with readJson).
 */
export function jsonColumn(expr: string, alias: string, bound: Bound | null): string {
  if (!bound) return `${expr}::text AS ${alias}`;
  const bytes = `octet_length(${expr}::text)`;
  return `CASE WHEN ${bytes} <= ${bound.limit} THEN ${expr}::text END AS ${alias},
    CASE WHEN ${bytes} > ${bound.limit} THEN ${bytes} END AS ${alias}_bytes,
    CASE WHEN ${bytes} > ${bound.limit} THEN left(jsonb_pretty(${expr}), ${bound.preview}) END AS ${alias}_preview`;
}

/** An error, bounded: over the limit it keeps its shape (class, code, step) with message and stack cut to the preview length. */
export function errorColumn(expr: string, alias: string, bounded: boolean): string {
  if (!bounded) return `${expr}::text AS ${alias}`;
  // Only ever $2/$3: errors are bounded in timelines alone.
  const bytes = `octet_length(${expr}::text)`;
  // (No error is NULL, not an empty object: `octet_length(NULL) <= $2` is NULL, which would fall to ELSE.)
  return `(CASE WHEN ${expr} IS NULL OR ${bytes} <= $2 THEN ${expr} ELSE jsonb_strip_nulls(jsonb_build_object(
      'class', left(${expr}->>'class', 200), 'code', left(${expr}->>'code', 200), 'step', left(${expr}->>'step', 300),
      'message', left(${expr}->>'message', $3), 'stack', left(${expr}->>'stack', $3))) END)::text AS ${alias},
    CASE WHEN ${bytes} > $2 THEN ${bytes} END AS ${alias}_bytes,
    CASE WHEN ${bytes} > $2 THEN '' END AS ${alias}_preview`;
}

/** Reads a column of `jsonColumn` or `errorColumn`, noting in `truncated` a value left out. */
export function readJson(row: object, alias: string, path: string, truncated: TruncatedValue[]): unknown {
  const column = (name: string): unknown => Reflect.get(row, name);
  const bytes = column(`${alias}_bytes`);
  if (bytes !== undefined && bytes !== null) truncated.push({ path, bytes: Number(bytes), preview: String(column(`${alias}_preview`) ?? '') });
  const text = column(alias);
  return typeof text === 'string' ? JSON.parse(text) : undefined;
}

