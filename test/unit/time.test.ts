import { describe, expect, it } from 'vitest';
import { formatDuration, formatRelative, formatTime, isoTime, timeTag } from '../../lib/http/time.js';

const now = Date.parse('2026-12-02T16:00:00Z');

describe('viewer times', () => {
  it('writes the year only when it is not the year of now', () => {
    expect(formatTime('2026-03-04T05:06:07Z', now)).toBe('Mar 4, 05:06:07 UTC');
    expect(formatTime('2027-01-01T14:03:05Z', now)).toBe('Jan 1, 2027 14:03:05 UTC');
    expect(formatTime(new Date('2025-12-31T23:59:59Z'), now)).toBe('Dec 31, 2025 23:59:59 UTC');
    expect(formatTime(null, now)).toBe('—');
    expect(formatTime('not a date', now)).toBe('—');
  });

  it('says how long ago or how far ahead, in the largest whole unit', () => {
    expect(formatRelative(now - 400, now)).toBe('just now');
    expect(formatRelative(now - 12_000, now)).toBe('12 s ago');
    expect(formatRelative(now - 3 * 60_000 - 59_000, now)).toBe('3 min ago');
    expect(formatRelative(now + 5 * 3_600_000, now)).toBe('in 5 h');
    expect(formatRelative(now + 2 * 86_400_000, now)).toBe('in 2 days');
    expect(formatRelative(now - 86_400_000, now)).toBe('1 day ago');
    expect(formatRelative(now - 90 * 86_400_000, now)).toBe('2 months ago');
    expect(formatRelative(now + 800 * 86_400_000, now)).toBe('in 2 years');
    expect(formatRelative(undefined, now)).toBe('—');
  });

  it('measures durations to now when unfinished', () => {
    expect(formatDuration(now - 42_000, null, now)).toBe('42s');
    expect(formatDuration(now - 3 * 3_600_000 - 12 * 60_000, now, now)).toBe('3h 12m');
    expect(formatDuration(now - 52 * 3_600_000, now, now)).toBe('2d 4h');
    expect(formatDuration(now - 250, now, now)).toBe('250ms');
    expect(formatDuration(null, now, now)).toBe('—');
  });

  it('puts the absolute time on hover of a relative one, and the ISO form in datetime', () => {
    const at = '2027-01-01T14:03:05.000Z';
    expect(isoTime(at)).toBe(at);
    expect(timeTag(at, now)).toBe(`<time datetime="${at}" title="Jan 1, 2027 14:03:05 UTC">in 29 days</time>`);
    expect(timeTag(at, now, 'absolute')).toBe(`<time datetime="${at}" title="in 29 days">Jan 1, 2027 14:03:05 UTC</time>`);
    expect(timeTag(null, now)).toBe('—');
  });
});
