import { describe, expect, it } from 'vitest';
import { createdAt } from '../helpers/db.js';

describe('test database names (global set-up drops only old leftovers)', () => {
  it("reads the creation time of the tests' and the benchmarks' databases, and of no other name", () => {
    const at = Date.UTC(2026, 11, 4, 2, 37, 54);
    const time = at.toString(36);
    expect(createdAt(`df_lists_${time}_20c176de`)).toBe(at); // test/helpers/db.ts databaseName
    expect(createdAt(`df_tp_${time}_a1b2c3`)).toBe(at); // bench/anchors/common.ts createDb
    expect(createdAt('df_lists')).toBeNull();
    expect(createdAt(`df_tp_${time}_xyz`)).toBeNull();
    expect(createdAt(`app_${time}_20c176de`)).toBeNull();
  });
});
