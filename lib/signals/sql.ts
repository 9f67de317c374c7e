import type { Statement } from '../db/sql/statement.js';
import type { Tables } from '../db/tables.js';
import { nowSql } from '../db/tables.js';

/** The event name recorded on the waits of step.waitForSignal (their `signal_name` says which signal; no event matches them). */
export const SIGNAL_WAIT_EVENT = 'durable_flow.signal';
/** Longest signal name (as long as an event name). */
export const MAX_SIGNAL_NAME = 255;

/**
 * flow.signal, statement 1: the run's row lock, FOR NO KEY UPDATE (the lock commitBatch takes for a
 * suspension). A statement of its own: the next one reads the run's waits in a snapshot taken once the
 * lock is granted, so it sees the waits of a suspension that committed while this one waited for it.
 */
const lockRunSql = (t: Tables): string => `
SELECT id::text, status FROM ${t.runs} WHERE run_id = $1 FOR NO KEY UPDATE`;

/**
 * flow.signal, statement 2, with the run locked: the signal of the same id already stored, if any;
 * otherwise (and when `$6`, the run not finished) the new signal, and the run made due now if it is
 * suspended (not leased, not paused) with a pending wait for this signal. A run a worker holds finds
 * the signal at its next suspension. `$1` run (database id), `$2` name, `$3` payload, `$4` id or NULL,
 * `$5` clock offset, `$6` store it.
 */
const storeSignalSql = (t: Tables): string => `
WITH existing AS (
  SELECT g.id, g.name, g.payload = $3::jsonb AS same_payload FROM ${t.signals} g
  WHERE $4::text IS NOT NULL AND g.workflow_run_id = $1 AND g.signal_id = $4
), ins AS (
  INSERT INTO ${t.signals} (workflow_run_id, name, payload, signal_id, created_at)
  SELECT $1, $2, $3::jsonb, $4, ${nowSql('$5')}
  WHERE $6::boolean AND NOT EXISTS (SELECT 1 FROM existing)
  RETURNING id
), woken AS (
  UPDATE ${t.runs} r SET status = 'ready', wake_at = ${nowSql('$5')}, updated_at = clock_timestamp()
  WHERE r.id = $1 AND EXISTS (SELECT 1 FROM ins) AND r.lease_owner IS NULL AND r.status IN ('waiting', 'sleeping', 'retrying')
    AND EXISTS (SELECT 1 FROM ${t.waits} w WHERE w.workflow_run_id = $1 AND w.status = 'pending' AND w.signal_name = $2)
  RETURNING r.id
)
SELECT (SELECT id::text FROM ins) AS id, (SELECT count(*) FROM woken)::int AS woken,
       (SELECT id::text FROM existing) AS existing_id, (SELECT name FROM existing) AS existing_name,
       (SELECT same_payload FROM existing) AS same_payload`;

/**
 * A suspension (its run locked by commitBatch): per signal name `$2[i]`, the `$3[i]` oldest signals of
 * run `$1` no wait has consumed, with their time on the flow's clock (ms). No signal row lock: every
 * consumption happens in a suspension of its run, under the run's row lock.
 */
const bufferedSignalsSql = (t: Tables): string => `
SELECT g.id::text, g.name, extract(epoch FROM g.created_at)::float8 * 1000 AS at_ms
FROM unnest($2::text[], $3::int[]) AS n(name, k)
CROSS JOIN LATERAL (
  SELECT s.id, s.name, s.created_at FROM ${t.signals} s
  WHERE s.workflow_run_id = $1 AND s.name = n.name AND s.consumed_by_step_id IS NULL
  ORDER BY s.id LIMIT n.k
) g
ORDER BY g.id`;

/**
 * A suspension: each signal `$1[i].signal` consumed by wait `$1[i].wait_id`, whose step succeeds with
 * the signal's payload (every replay returns it). Returns the steps settled, with their results.
 * `$2` clock offset.
 */
const consumeSignalsSql = (t: Tables): string => `
WITH x AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(wait_id bigint, signal bigint)
), g AS (
  UPDATE ${t.signals} g SET consumed_by_step_id = w.workflow_step_id, consumed_at = ${nowSql('$2')}
  FROM x JOIN ${t.waits} w ON w.id = x.wait_id AND w.status = 'pending'
  WHERE g.id = x.signal AND g.consumed_by_step_id IS NULL
  RETURNING g.consumed_by_step_id AS step_id, g.payload, x.wait_id
), w AS (
  UPDATE ${t.waits} w SET status = 'matched', updated_at = clock_timestamp()
  FROM g WHERE w.id = g.wait_id
)
UPDATE ${t.steps} s SET status = 'succeeded', result = g.payload, completed_at = ${nowSql('$2')},
       attempts = s.attempts + 1, updated_at = clock_timestamp()
FROM g WHERE s.id = g.step_id
RETURNING s.name, s.result::text AS payload`;

/**
 * A run's signals for its timeline, oldest first, with the step that consumed each (if any). `$2`/`$3`
 * bound a payload shown (see read/bounded.ts) when given.
 */
export const runSignalsSql = (t: Tables, payloadColumn: string): string => `
SELECT g.id::text, g.name, g.signal_id, ${payloadColumn}, g.consumed_by_step_id::text AS step_id, s.name AS step_name,
       g.consumed_at, g.created_at
FROM ${t.signals} g LEFT JOIN ${t.steps} s ON s.id = g.consumed_by_step_id
WHERE g.workflow_run_id = $1 ORDER BY g.id`;

export interface SignalStatements {
  lockRun: Statement;
  storeSignal: Statement;
  bufferedSignals: Statement;
  consumeSignals: Statement;
}

const cache = new WeakMap<Tables, SignalStatements>();

/** The signal statements of one flow's schema, rendered once and prepared by name (as db/sql/index.ts does). */
export function signalStatements(t: Tables): SignalStatements {
  let statements = cache.get(t);
  if (!statements) {
    const prefix = `durable_flow_${t.schema}_signal_`;
    const texts = { lockRun: lockRunSql(t), storeSignal: storeSignalSql(t), bufferedSignals: bufferedSignalsSql(t), consumeSignals: consumeSignalsSql(t) };
    statements = Object.fromEntries(Object.entries(texts).map(([key, text]) => [key, { name: `${prefix}${key}`, text }])) as unknown as SignalStatements;
    cache.set(t, statements);
  }
  return statements;
}
