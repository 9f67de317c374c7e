import type { ReadDb } from './db.js';

/**
 * The names of the steps some logs belong to, by step id: those of `shown` (a page of steps) as they
 * are, the others read by id (a run of 10,000 steps shows 100, its logs belong to any of them).
 */
export async function logStepNames(db: ReadDb, logs: { stepId: string | null }[], shown: { id: string; name: string }[]): Promise<Record<string, string>> {
  const names: Record<string, string> = Object.fromEntries(shown.map((s) => [s.id, s.name]));
  const missing = [...new Set(logs.flatMap((l) => (l.stepId !== null && !Object.hasOwn(names, l.stepId) ? [l.stepId] : [])))];
  if (missing.length > 0) {
    const rows = await db.select<{ id: string; name: string }>(`SELECT id::text AS id, name FROM ${db.tables.steps} WHERE id = ANY($1::bigint[])`, [missing]);
    for (const row of rows) names[row.id] = row.name;
  }
  return names;
}
