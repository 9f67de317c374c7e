import type { Response } from 'express';
import type { TimelineLimits, TruncatedValue } from '../read/bounded.js';
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

/** Steps per page of the run page (`?steps=<offset>`): a run of 10,000 steps renders as fast as one of 100. */
export const STEP_PAGE = 100;

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

export { parseValuePath } from '../read/values.js';
export type { ValuePath } from '../read/values.js';
