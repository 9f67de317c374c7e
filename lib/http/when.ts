import { DateTime } from 'luxon';

/**
 * The list pages' times until the shared time helpers of the run page land: `absoluteTime` with the
 * year when it is not this year, `relativeTime` for the cell (its absolute time goes on hover, see
 * views/partials/when.ejs). Both in UTC, like the rest of the viewer.
 */
export function absoluteTime(value: Date | string | null | undefined, now = Date.now()): string {
  if (!value) return '—';
  const time = DateTime.fromJSDate(new Date(value), { zone: 'utc' });
  const thisYear = time.year === DateTime.fromMillis(now, { zone: 'utc' }).year;
  return time.toFormat(thisYear ? "LLL d, HH:mm:ss 'UTC'" : "LLL d yyyy, HH:mm:ss 'UTC'");
}

/** `just now`, `42s ago`, `5m ago`, `3h ago`, `6d ago`, `in 5m`; past a week, the date (with its year when not this one). */
export function relativeTime(value: Date | string | null | undefined, now = Date.now()): string {
  if (!value) return '—';
  const ms = now - new Date(value).getTime();
  const seconds = Math.round(Math.abs(ms) / 1000);
  const say = (amount: string) => (ms >= 0 ? `${amount} ago` : `in ${amount}`);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return say(`${seconds}s`);
  if (seconds < 3600) return say(`${Math.floor(seconds / 60)}m`);
  if (seconds < 86_400) return say(`${Math.floor(seconds / 3600)}h`);
  if (seconds < 7 * 86_400) return say(`${Math.floor(seconds / 86_400)}d`);
  const time = DateTime.fromJSDate(new Date(value), { zone: 'utc' });
  return time.toFormat(time.year === DateTime.fromMillis(now, { zone: 'utc' }).year ? 'LLL d' : 'LLL d yyyy');
}
