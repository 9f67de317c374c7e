/** The list pages' times (issue #11 point 8): relative in the cell, absolute on hover, a year when not this year. */
import { describe, expect, it } from 'vitest';
import { absoluteTime, relativeTime } from '../../lib/http/when.js';

const now = Date.parse('2026-12-02T16:00:00.000Z');

describe('list times', () => {
  it('say how long ago, or how soon, in the largest whole unit', () => {
    const at = (ms: number) => new Date(now + ms);
    expect(relativeTime(at(-2_000), now)).toBe('just now');
    expect(relativeTime(at(-42_000), now)).toBe('42s ago');
    expect(relativeTime(at(-5 * 60_000 - 59_000), now)).toBe('5m ago');
    expect(relativeTime(at(-3 * 3_600_000), now)).toBe('3h ago');
    expect(relativeTime(at(-6 * 86_400_000), now)).toBe('6d ago');
    expect(relativeTime(at(5 * 60_000), now)).toBe('in 5m');
    expect(relativeTime(null, now)).toBe('—');
  });

  it('past a week, or further ahead, give the date, with its year only when it is not this year', () => {
    expect(relativeTime('2026-03-04T05:06:07Z', now)).toBe('Mar 4');
    expect(relativeTime('2025-12-31T23:00:00Z', now)).toBe('Dec 31 2025');
    expect(relativeTime('2027-01-01T00:00:00Z', now)).toBe('Jan 1 2027');
  });

  it('give the absolute time with seconds, in UTC, with the year when it is not this year', () => {
    expect(absoluteTime('2026-03-04T05:06:07Z', now)).toBe('Mar 4, 05:06:07 UTC');
    expect(absoluteTime('2027-01-01T00:00:00Z', now)).toBe('Jan 1 2027, 00:00:00 UTC');
    expect(absoluteTime('2024-02-29T12:00:00Z', now)).toBe('Feb 29 2024, 12:00:00 UTC');
    expect(absoluteTime(undefined, now)).toBe('—');
  });
});
