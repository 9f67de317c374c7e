import { Duration, DateTime } from 'luxon';
import { DurableFlowError } from './errors.js';

/**
 * A duration as users write it: milliseconds, `'5 minutes'`, `'1.5 hours'`, `'PT5M'` (ISO 8601),
 * `{ minutes: 5 }` or a luxon `Duration`.
 */
export type DurationInput = number | string | Record<string, number> | Duration;

/** A point in time: a `Date`, an ISO 8601 string, epoch milliseconds or a luxon `DateTime`. */
export type TimeInput = Date | string | number | DateTime;

/** The longest duration accepted anywhere: 100 years. Longer values are almost certainly a unit mistake. */
const MAX_DURATION_MS = 100 * 365.25 * 24 * 3600 * 1000;

const UNITS: Record<string, string> = {
  ms: 'milliseconds', msec: 'milliseconds', msecs: 'milliseconds', millisecond: 'milliseconds', milliseconds: 'milliseconds',
  s: 'seconds', sec: 'seconds', secs: 'seconds', second: 'seconds', seconds: 'seconds',
  m: 'minutes', min: 'minutes', mins: 'minutes', minute: 'minutes', minutes: 'minutes',
  h: 'hours', hr: 'hours', hrs: 'hours', hour: 'hours', hours: 'hours',
  d: 'days', day: 'days', days: 'days',
  w: 'weeks', week: 'weeks', weeks: 'weeks',
  // luxon's casual conversion: a month is 30 days, a year 365 days.
  mo: 'months', month: 'months', months: 'months',
  y: 'years', yr: 'years', yrs: 'years', year: 'years', years: 'years',
};

function describe(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`;
  if (value === null) return '`null`';
  if (typeof value === 'object') {
    try {
      return `\`${JSON.stringify(value)}\` (${value.constructor?.name ?? 'object'})`;
    } catch {
      return '(object)';
    }
  }
  return `\`${String(value)}\` (${typeof value})`;
}

function invalid(what: string, value: unknown, expected: string): DurableFlowError {
  return new DurableFlowError('INVALID_ARGUMENT', `Expected ${what} to be ${expected}, got ${describe(value)}`);
}

const EXPECTED =
  "a positive duration such as 5000 (ms), '30 seconds', '5 minutes', '1 day', 'PT5M' or { minutes: 5 }";

/**
 * Parses a duration to milliseconds. Throws a `DurableFlowError` naming `what`, the value and what was
 * expected when the value is not a positive duration (or not a non-negative one when `allowZero`).
 */
export function toMilliseconds(value: unknown, what: string, options: { allowZero?: boolean } = {}): number {
  let ms: number | undefined;
  if (typeof value === 'number') {
    ms = value;
  } else if (Duration.isDuration(value)) {
    ms = value.isValid ? value.toMillis() : undefined;
  } else if (typeof value === 'string') {
    const text = value.trim();
    const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]+)$/.exec(text);
    if (match) {
      const unit = UNITS[match[2]!.toLowerCase()];
      if (unit) ms = Duration.fromObject({ [unit]: Number(match[1]) }).toMillis();
    } else if (/^P/i.test(text)) {
      const parsed = Duration.fromISO(text.toUpperCase());
      ms = parsed.isValid ? parsed.toMillis() : undefined;
    }
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    try {
      const parsed = Duration.fromObject(value as Record<string, number>);
      ms = parsed.isValid ? parsed.toMillis() : undefined;
    } catch {
      ms = undefined;
    }
  }
  if (ms === undefined || !Number.isFinite(ms)) throw invalid(what, value, EXPECTED);
  if (ms < 0 || (ms === 0 && !options.allowZero)) throw invalid(what, value, EXPECTED);
  if (ms > MAX_DURATION_MS) throw invalid(what, value, 'a duration of at most 100 years');
  return Math.round(ms);
}

/** Parses a point in time. Throws a `DurableFlowError` naming `what` when it is not one. */
export function toDate(value: unknown, what: string): Date {
  let date: Date | undefined;
  if (value instanceof Date) date = value;
  else if (DateTime.isDateTime(value)) date = value.isValid ? value.toJSDate() : undefined;
  else if (typeof value === 'number') date = new Date(value);
  else if (typeof value === 'string') {
    const parsed = DateTime.fromISO(value, { zone: 'utc' });
    date = parsed.isValid ? parsed.toJSDate() : undefined;
  }
  if (!date || Number.isNaN(date.getTime())) {
    throw invalid(what, value, 'a Date, an ISO 8601 string, epoch milliseconds or a luxon DateTime');
  }
  return date;
}
