import path from 'node:path';
import ejs from 'ejs';
import { DateTime } from 'luxon';
import { packageDir } from '../paths.js';
import type { Timeline } from '../workflow/inspect.js';
import { runSegment } from './run-path.js';
import { absoluteTime, relativeTime } from './when.js';

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

/** `Mar 4, 05:06:07 UTC`; `—` for none. */
export function formatTime(value: Date | string | null | undefined): string {
  if (!value) return '—';
  return DateTime.fromJSDate(new Date(value), { zone: 'utc' }).toFormat("LLL d, HH:mm:ss 'UTC'");
}

export function isoTime(value: Date | string | null | undefined): string {
  return value ? new Date(value).toISOString() : '';
}

/** `42s`, `7m`, `3h`, `3h 12m` (to now when unfinished); `—` without a start. */
export function formatDuration(start: Date | string | null | undefined, end?: Date | string | null): string {
  if (!start) return '—';
  const ms = Math.max(0, (end ? new Date(end).getTime() : Date.now()) - new Date(start).getTime());
  if (ms < 1000) return `${ms}ms`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
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

export interface ChartBar {
  x: number;
  width: number;
  y: number;
  label: string;
  title: string;
  cls: string;
  kind: string;
}

export interface Chart {
  width: number;
  height: number;
  labelWidth: number;
  bars: ChartBar[];
  ticks: { x: number; label: string }[];
}

/**
 * The timeline chart of a run: one bar per step on a shared time axis (from the run's creation to
 * its end, or now), coloured by status. Sleeps and waits are bars of their own kind, so the gaps in
 * the work are visible. Geometry only; the template draws it as SVG (attributes, not inline styles,
 * so the Content-Security-Policy needs no 'unsafe-inline').
 */
export function timelineChart(timeline: Timeline, now = Date.now()): Chart {
  const labelWidth = 180;
  const plotWidth = 720;
  const rowHeight = 26;
  const { run } = timeline;
  const start = new Date(run.createdAt).getTime();
  const finished = run.completedAt ?? run.failedAt ?? run.cancelledAt;
  const stepTimes = timeline.steps.flatMap(({ step }) => [step.startedAt, step.completedAt, step.updatedAt].filter(Boolean).map((d) => new Date(d!).getTime()));
  const end = Math.max(finished ? new Date(finished).getTime() : now, ...stepTimes, start + 1);
  const span = end - start;
  const xOf = (t: number) => labelWidth + ((t - start) / span) * plotWidth;
  const bars = timeline.steps.map(({ step }, index) => {
    const from = new Date(step.startedAt ?? step.createdAt).getTime();
    const to = step.completedAt ? new Date(step.completedAt).getTime() : ['sleeping', 'waiting', 'running', 'retrying'].includes(step.status) ? (finished ? new Date(finished).getTime() : now) : from;
    const x = xOf(from);
    return {
      x,
      width: Math.max(3, xOf(to) - x),
      y: 24 + index * rowHeight,
      label: step.name.length > 26 ? `${step.name.slice(0, 25)}…` : step.name,
      title: `${step.name}: ${step.status}, ${formatDuration(step.startedAt ?? step.createdAt, step.completedAt ?? (finished ? finished : null))}`,
      cls: statusClass(step.status),
      kind: step.kind,
    };
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => ({ x: labelWidth + f * plotWidth, label: f === 0 ? '0' : `+${formatDuration(new Date(start), new Date(start + f * span))}` }));
  return { width: labelWidth + plotWidth + 20, height: 34 + Math.max(1, bars.length) * rowHeight, labelWidth, bars, ticks };
}

const helpers = { statusClass, formatTime, isoTime, formatDuration, formatBytes, prettyJson, encode: encodeURIComponent, runSegment, cut: () => undefined };
// The list pages' times (when.ts), kept apart so they can switch to shared helpers in one place.
const listHelpers = { absoluteTime, relativeTime };

/** Renders a viewer template (views/<name>.ejs); every `<%= %>` is HTML-escaped. */
export function render(name: string, data: Record<string, unknown>): Promise<string> {
  const views = packageDir('views', 'runs.ejs');
  return ejs.renderFile(path.join(views, `${name}.ejs`), { ...helpers, ...listHelpers, ...data }, { async: false, cache: process.env.NODE_ENV !== 'development', rmWhitespace: false });
}
