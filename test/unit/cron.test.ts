import { describe, expect, it } from 'vitest';
import { parseCron } from '../../lib/schedules/cron.js';
import { dueSlots } from '../../lib/schedules/slots.js';

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());
const day = (from: string, to: string) => [new Date(from), new Date(to)] as const;

describe('cron fire times across DST', () => {
  it('a daily 02:30 job fires once, at 03:00, on the spring-forward day in Europe/Berlin', () => {
    const [from, to] = day('2026-03-28T23:00:00Z', '2026-03-30T22:00:00Z');
    expect(iso(parseCron('30 2 * * *', 'Europe/Berlin').between(from, to, 10))).toEqual([
      '2026-03-29T01:00:00.000Z', // 03:00 CEST: 02:30 does not exist that day
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
    ]);
  });

  it('a daily 02:30 job fires once, at 03:00, on the spring-forward day in America/New_York', () => {
    const [from, to] = day('2026-03-08T05:00:00Z', '2026-03-10T04:00:00Z');
    expect(iso(parseCron('30 2 * * *', 'America/New_York').between(from, to, 10))).toEqual([
      '2026-03-08T07:00:00.000Z', // 03:00 EDT
      '2026-03-09T06:30:00.000Z', // 02:30 EDT
    ]);
  });

  it('a daily 01:30 job fires once, not twice, on the fall-back day in Europe/Berlin', () => {
    const [from, to] = day('2026-10-24T22:00:00Z', '2026-10-25T23:00:00Z');
    expect(iso(parseCron('30 1 * * *', 'Europe/Berlin').between(from, to, 10))).toEqual(['2026-10-24T23:30:00.000Z']);
    // 02:30 is the repeated hour in Berlin (03:00 CEST → 02:00 CET): once too, at the first pass.
    expect(iso(parseCron('30 2 * * *', 'Europe/Berlin').between(from, to, 10))).toEqual(['2026-10-25T00:30:00.000Z']);
  });

  it('a daily 01:30 job fires once, not twice, on the fall-back day in America/New_York', () => {
    const [from, to] = day('2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z');
    expect(iso(parseCron('30 1 * * *', 'America/New_York').between(from, to, 10))).toEqual(['2026-11-01T05:30:00.000Z']);
  });

  it('an interval job keeps its real-time interval through the repeated hour', () => {
    const [from, to] = day('2026-11-01T05:00:00Z', '2026-11-01T07:00:00Z');
    // 01:00 EDT, 01:30 EDT, 01:00 EST, 01:30 EST: four real instants an hour apart in pairs.
    expect(iso(parseCron('*/30 * * * *', 'America/New_York').between(from, to, 10))).toEqual([
      '2026-11-01T05:00:00.000Z',
      '2026-11-01T05:30:00.000Z',
      '2026-11-01T06:00:00.000Z',
      '2026-11-01T06:30:00.000Z',
    ]);
  });
});

describe('cron expressions', () => {
  it('take 5 fields, or 6 with seconds first', () => {
    const from = new Date('2026-01-05T08:59:58Z'); // a Monday
    expect(iso(parseCron('0 9 * * 1-5', 'UTC').next(2, from))).toEqual(['2026-01-05T09:00:00.000Z', '2026-01-06T09:00:00.000Z']);
    expect(iso(parseCron('*/1 * * * * *', 'UTC').next(3, from))).toEqual([
      '2026-01-05T08:59:59.000Z',
      '2026-01-05T09:00:00.000Z',
      '2026-01-05T09:00:01.000Z',
    ]);
  });

  it('list [from, to): from included, to excluded, bounded by the limit', () => {
    const cron = parseCron('0 * * * *', 'UTC');
    const slots = cron.between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T03:00:00Z'), 100);
    expect(iso(slots)).toEqual(['2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', '2026-01-01T02:00:00.000Z']);
    expect(cron.between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-02T00:00:00Z'), 5)).toHaveLength(5);
  });

  it('refuse a bad expression naming it and what is expected', () => {
    expect(() => parseCron('61 * * * *', 'UTC')).toThrow(/Expected `cron` to be a cron expression of 5 fields .* got "61 \* \* \* \*"/);
    expect(() => parseCron('* * *', 'UTC')).toThrow(/got "\* \* \*"/);
    expect(() => parseCron('0 0 0 * * * *', 'UTC')).toThrow(/Expected `cron`/);
    expect(() => parseCron('', 'UTC')).toThrow(/got an empty string/);
    expect(() => parseCron(5, 'UTC')).toThrow(/got number/);
  });

  it('refuse a bad time zone naming it', () => {
    expect(() => parseCron('* * * * *', 'Mars/Olympus')).toThrow(/Expected `timezone` to be an IANA time zone .* got "Mars\/Olympus"/);
    expect(() => parseCron('* * * * *', 'Berlin', 'schedule.')).toThrow(/`schedule.timezone`/);
    expect(() => parseCron('* * * * *', 'Nowhere')).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});

describe('due slots after a long gap', () => {
  it('keep the newest slots exactly and count the older ones, skipping ahead over a huge gap', () => {
    const from = new Date('2026-01-01T00:00:00Z');
    const days = dueSlots(parseCron('* * * * *', 'UTC'), from, new Date('2026-01-03T00:00:00Z'));
    expect(days.recent.at(-1)!.toISOString()).toBe('2026-01-03T00:00:00.000Z');
    expect(days.recent.length + days.older!.count).toBe(2 * 1440 + 1);
    expect(days.older).toMatchObject({ first: from, approximate: false });
    const cron = parseCron('* * * * * *', 'UTC');
    const started = performance.now();
    const year = dueSlots(cron, from, new Date('2027-01-01T00:00:00Z'));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(year.recent.at(-1)!.toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(year.older!.approximate).toBe(true);
    expect(Math.abs(year.recent.length + year.older!.count - 365 * 86_400) / (365 * 86_400)).toBeLessThan(0.01);
    // Consecutive: the kept slots are the last seconds before `now`.
    expect(year.recent.map((d) => d.getTime() - year.recent[0]!.getTime())).toEqual(year.recent.map((_, i) => i * 1000));
  });
});
