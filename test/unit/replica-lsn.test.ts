import { describe, expect, it } from 'vitest';
import { compareLsn, isLsn } from '../../lib/read/replica.js';

describe('WAL positions (read/replica.ts)', () => {
  it('recognises what Postgres prints and nothing else', () => {
    expect(isLsn('0/3000000')).toBe(true);
    expect(isLsn('16/B374D848')).toBe(true);
    for (const bad of ['', '0/', '/1', '0/3000000; drop', '123456789/0', 'G/0', undefined, 42]) expect(isLsn(bad), String(bad)).toBe(false);
  });

  it('orders them by both halves, the low one as a number, not as text', () => {
    expect(compareLsn('0/9', '0/10')).toBe(-1);
    expect(compareLsn('0/FFFFFFFF', '1/0')).toBe(-1);
    expect(compareLsn('2/0', '1/FFFFFFFF')).toBe(1);
    expect(compareLsn('16/b374d848', '16/B374D848')).toBe(0);
  });
});
