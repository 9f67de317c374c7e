import path from 'node:path';
import ejs from 'ejs';
import { packageDir } from '../paths.js';
import { listQuery, tagEntries, tagText, withTag } from './list-query.js';
import { runSegment } from './run-path.js';
import { timeHelpers } from './time.js';

/** CSS class of a status badge (the original viewer's mapping). */
export function statusClass(status: string | null | undefined): string {
  switch (status) {
    case 'completed':
    case 'succeeded':
    case 'matched':
      return 'success';
    case 'failed':
    case 'timed_out':
    case 'error':
      return 'danger';
    case 'waiting':
    case 'sleeping':
    case 'paused':
    case 'pending':
    case 'warn':
      return 'waiting';
    case 'running':
    case 'ready':
    case 'retrying':
    case 'enqueued':
    case 'info':
      return 'active';
    default:
      return 'neutral';
  }
}

/** Pretty JSON for display (escaped by the template); '' for nothing or an empty object. */
export function prettyJson(value: unknown): string {
  if (value === undefined || value === null) return value === null ? 'null' : '';
  if (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0) return '';
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** `812 B`, `64.0 KB`, `5.0 MB` (powers of 1024). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const helpers = { statusClass, formatBytes, prettyJson, encode: encodeURIComponent, runSegment, listQuery, tagEntries, tagText, withTag, cut: () => undefined };

/**
 * Renders a viewer template (views/<name>.ejs); every `<%= %>` is HTML-escaped. The time helpers
 * (time.ts) are bound to `data.now`, the page's clock (default: this process's).
 */
export function render(name: string, data: Record<string, unknown>): Promise<string> {
  const views = packageDir('views', 'runs.ejs');
  const now = typeof data.now === 'number' ? data.now : Date.now();
  return ejs.renderFile(path.join(views, `${name}.ejs`), { ...helpers, ...timeHelpers(now), ...data }, { async: false, cache: process.env.NODE_ENV !== 'development', rmWhitespace: false });
}
