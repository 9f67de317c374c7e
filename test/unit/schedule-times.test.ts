import { describe, expect, it } from 'vitest';
import { zonedTime } from '../../lib/http/schedules-page.js';

const NOW = Date.parse('2026-12-03T15:00:00Z');
const shown = (iso: string, zone: string) => zonedTime(new Date(iso), zone, NOW);

describe("the Schedules page's fire times", () => {
  it("are written in the schedule's zone, then in UTC", () => {
    expect(shown('2026-12-07T08:00:00Z', 'Europe/Berlin')).toEqual({
      iso: '2026-12-07T08:00:00.000Z',
      text: 'Mon 7 Dec 09:00 Europe/Berlin (08:00 UTC)',
      local: 'Mon 7 Dec 09:00 Europe/Berlin',
      utc: '08:00 UTC',
      relative: 'in 3 days',
    });
    // Summer time: the same 09:00 is 07:00 UTC.
    expect(shown('2026-06-01T07:00:00Z', 'Europe/Berlin').text).toBe('Mon 1 Jun 09:00 Europe/Berlin (07:00 UTC)');
    // A zone at offset 0 that is not UTC still says both.
    expect(shown('2026-12-07T09:00:00Z', 'Europe/London').text).toBe('Mon 7 Dec 09:00 Europe/London (09:00 UTC)');
  });

  it('give the UTC date when it is another day, the year when it is another year, seconds when there are some', () => {
    expect(shown('2026-12-07T23:30:00Z', 'Europe/Berlin').text).toBe('Tue 8 Dec 00:30 Europe/Berlin (Mon 7 Dec 23:30 UTC)');
    expect(shown('2026-12-08T02:00:00Z', 'America/New_York').text).toBe('Mon 7 Dec 21:00 America/New_York (Tue 8 Dec 02:00 UTC)');
    expect(shown('2027-01-04T08:00:00Z', 'Europe/Berlin').text).toBe('Mon 4 Jan 2027 09:00 Europe/Berlin (08:00 UTC)');
    expect(shown('2026-12-31T23:30:00Z', 'Europe/Berlin').text).toBe('Fri 1 Jan 2027 00:30 Europe/Berlin (Thu 31 Dec 23:30 UTC)');
    expect(shown('2026-12-07T08:00:30Z', 'Asia/Kolkata').text).toBe('Mon 7 Dec 13:30:30 Asia/Kolkata (08:00:30 UTC)');
  });

  it('say UTC once for a UTC schedule', () => {
    for (const zone of ['UTC', 'Etc/UTC']) {
      expect(shown('2026-12-07T08:15:00Z', zone)).toMatchObject({ text: 'Mon 7 Dec 08:15 UTC', utc: null });
    }
  });
});
