import { DateTime } from 'luxon';

/**
 * How the viewer writes times. Every page is rendered against one `now` (the database clock as the
 * flow sees it: `Date.now()` plus the flow's clock offset), so "3 min ago" and "running for 3m" on a
 * page agree with each other and with the times the runtime stored. All times are shown in UTC.
 */

type TimeValue = Date | string | number | null | undefined;

function millis(value: Date | string | number): number {
  return value instanceof Date ? value.getTime() : new Date(value).getTime();
}

/**
 * `Mar 4, 05:06:07 UTC`; with the year when it is not the year of `now` (`Jan 1, 2027 14:03:05 UTC`);
 * `—` for none.
 */
export function formatTime(value: TimeValue, now: number = Date.now()): string {
  if (value === null || value === undefined || value === '') return '—';
  const at = DateTime.fromMillis(millis(value), { zone: 'utc' });
  if (!at.isValid) return '—';
  const sameYear = at.year === DateTime.fromMillis(now, { zone: 'utc' }).year;
  return at.toFormat(sameYear ? "LLL d, HH:mm:ss 'UTC'" : "LLL d, yyyy HH:mm:ss 'UTC'");
}

/** The ISO 8601 form for `<time datetime>` and JSON; '' for none. */
export function isoTime(value: TimeValue): string {
  if (value === null || value === undefined || value === '') return '';
  const ms = millis(value);
  return Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}

/** The largest whole unit of an amount of time: `12 s`, `3 min`, `5 h`, `2 days`, `3 months`, `2 years`. */
function amount(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h`;
  const days = Math.floor(hours / 24);
  if (days < 60) return days === 1 ? '1 day' : `${days} days`;
  const months = Math.floor(days / 30.44);
  if (months < 24) return `${months} months`;
  return `${Math.floor(days / 365.25)} years`;
}

/** `just now`, `3 min ago`, `in 2 days` (relative to `now`); `—` for none. */
export function formatRelative(value: TimeValue, now: number = Date.now()): string {
  if (value === null || value === undefined || value === '') return '—';
  const ms = millis(value);
  if (Number.isNaN(ms)) return '—';
  const diff = ms - now;
  if (Math.abs(diff) < 1000) return 'just now';
  return diff < 0 ? `${amount(-diff)} ago` : `in ${amount(diff)}`;
}

/** `42s`, `7m`, `3h`, `3h 12m`, `2d 4h` (to `now` when unfinished); `—` without a start. */
export function formatDuration(start: TimeValue, end?: TimeValue, now: number = Date.now()): string {
  if (start === null || start === undefined || start === '') return '—';
  const ms = Math.max(0, (end === null || end === undefined || end === '' ? now : millis(end)) - millis(start));
  if (ms < 1000) return `${ms}ms`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  const days = Math.floor(hours / 24);
  return hours % 24 === 0 ? `${days}d` : `${days}d ${hours % 24}h`;
}

/**
 * A `<time>` element (HTML, for `<%- %>`): the relative time shown and the absolute one on hover, or
 * with `show: 'absolute'` the other way round; `—` for none. Its text is only digits, letters and the
 * ISO form of a date, so it needs no escaping.
 */
export function timeTag(value: TimeValue, now: number = Date.now(), show: 'relative' | 'absolute' = 'relative'): string {
  const iso = isoTime(value);
  if (!iso) return '—';
  const absolute = formatTime(value, now);
  const relative = formatRelative(value, now);
  const [text, title] = show === 'relative' ? [relative, absolute] : [absolute, relative];
  return `<time datetime="${iso}" title="${title}">${text}</time>`;
}

/** The time helpers of one page, bound to its `now` (what render() gives every template). */
export function timeHelpers(now: number) {
  return {
    formatTime: (value: TimeValue) => formatTime(value, now),
    formatRelative: (value: TimeValue) => formatRelative(value, now),
    formatDuration: (start: TimeValue, end?: TimeValue) => formatDuration(start, end, now),
    timeTag: (value: TimeValue, show: 'relative' | 'absolute' = 'relative') => timeTag(value, now, show),
    isoTime,
    now,
  };
}
