import { Duration, DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { toDate, toMilliseconds } from '../../lib/duration.js';
import { encodeJson } from '../../lib/json.js';

describe('durations', () => {
  it('accepts milliseconds, words, ISO 8601, objects and luxon Durations', () => {
    expect(toMilliseconds(5000, 'x')).toBe(5000);
    expect(toMilliseconds('30 seconds', 'x')).toBe(30_000);
    expect(toMilliseconds('5m', 'x')).toBe(300_000);
    expect(toMilliseconds('1.5 hours', 'x')).toBe(5_400_000);
    expect(toMilliseconds('7 days', 'x')).toBe(604_800_000);
    expect(toMilliseconds('PT5M', 'x')).toBe(300_000);
    expect(toMilliseconds({ minutes: 5 }, 'x')).toBe(300_000);
    expect(toMilliseconds(Duration.fromObject({ days: 30 }), 'x')).toBe(30 * 86_400_000);
    expect(toMilliseconds(0, 'x', { allowZero: true })).toBe(0);
  });

  it('refuses non-positive, unparseable and absurd durations, naming the value', () => {
    expect(() => toMilliseconds(-5, '`leaseTtl`')).toThrow('Expected `leaseTtl` to be a positive duration');
    expect(() => toMilliseconds(0, 'x')).toThrow(/got `0` \(number\)/);
    expect(() => toMilliseconds('soon', 'x')).toThrow(/got `"soon"` \(string\)/);
    expect(() => toMilliseconds('5 fortnights', 'x')).toThrow(/positive duration/);
    expect(() => toMilliseconds({ minutes: 'x' }, 'x')).toThrow(/positive duration/);
    expect(() => toMilliseconds(NaN, 'x')).toThrow(/positive duration/);
    expect(() => toMilliseconds('40000 days', 'x')).toThrow(/at most 100 years/);
  });

  it('parses times', () => {
    expect(toDate('2026-01-02T03:04:05Z', 'x').toISOString()).toBe('2026-01-02T03:04:05.000Z');
    expect(toDate(DateTime.fromISO('2026-01-02T03:04:05Z'), 'x').getTime()).toBe(Date.parse('2026-01-02T03:04:05Z'));
    expect(() => toDate('tomorrow', 'the time')).toThrow(/Expected the time to be a Date/);
  });
});

describe('JSON values', () => {
  it('encodes what round-trips and returns undefined for undefined', () => {
    expect(encodeJson({ a: [1, 'x', null, true], d: new Date(0) }, 'v', 1000)).toBe('{"a":[1,"x",null,true],"d":"1970-01-01T00:00:00.000Z"}');
    expect(encodeJson(undefined, 'v', 10)).toBeUndefined();
    expect(encodeJson('😀', 'v', 10)).toBe('"😀"');
  });

  it('names where a value cannot be stored', () => {
    expect(() => encodeJson({ a: { b: [1, 2n] } }, 'The result', 1000)).toThrow('The result cannot be stored as JSON: $.a.b[1] is a BigInt');
    expect(() => encodeJson({ f: () => 1 }, 'v', 1000)).toThrow('$.f is a function');
    expect(() => encodeJson({ s: new Set([1]) }, 'v', 1000)).toThrow('$.s is a Set');
    expect(() => encodeJson({ ['k\u0000']: 1 }, 'v', 1000)).toThrow(/key "k\\u0000" contains the character \\u0000/);
    expect(() => encodeJson(Infinity, 'v', 1000)).toThrow('$ is Infinity');
    expect(() => encodeJson(new Uint8Array(2), 'v', 1000)).toThrow(/base64/);
    let deep: unknown = 1;
    for (let i = 0; i < 70; i++) deep = [deep];
    expect(() => encodeJson(deep, 'v', 10_000)).toThrow(/nested more than 64 levels/);
    expect(() => encodeJson('x'.repeat(100), 'v', 50)).toThrow(/102 bytes of JSON, over the limit of 50 bytes/);
  });
});
