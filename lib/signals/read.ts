import { BOUND, jsonColumn, readJson } from '../read/bounded.js';
import type { TruncatedValue } from '../read/bounded.js';
import type { ReadDb } from '../read/db.js';
import { runSignalsSql } from './sql.js';

/** A signal sent to a run (flow.signal): consumed by a step.waitForSignal (`stepId`), or still buffered. */
export interface TimelineSignal {
  id: string;
  name: string;
  /** The sender's id (flow.signal's `id` option), if it gave one. */
  signalId: string | null;
  payload: unknown;
  /** The step that consumed it (its result is the payload); null while it is buffered. */
  stepId: string | null;
  stepName: string | null;
  consumedAt: Date | null;
  createdAt: Date;
}

export interface SignalRow {
  id: string;
  name: string;
  signal_id: string | null;
  step_id: string | null;
  step_name: string | null;
  consumed_at: Date | null;
  created_at: Date;
}

/**
 * The signals of run `run` (database id), oldest first, as rows for toSignals. `params` are the
 * timeline's: `[run]`, or bounded `[run, valueBytes, previewChars]`.
 */
export function signalRows(db: ReadDb, params: unknown[]): Promise<SignalRow[]> {
  const bound = params.length > 1 ? BOUND : null;
  return db.select<SignalRow>(runSignalsSql(db.tables, jsonColumn('g.payload', 'payload_text', bound)), params.slice(0, bound ? 3 : 1));
}

/** The rows of signalRows as the timeline shows them (a payload over a bounded timeline's limit noted in `truncated`). */
export function toSignals(rows: SignalRow[], truncated: TruncatedValue[]): TimelineSignal[] {
  return rows.map((row) => ({
    id: String(row.id),
    name: row.name,
    signalId: row.signal_id,
    payload: readJson(row, 'payload_text', `signals.${row.id}.payload`, truncated) ?? null,
    stepId: row.step_id === null ? null : String(row.step_id),
    stepName: row.step_name,
    consumedAt: row.consumed_at === null ? null : new Date(row.consumed_at),
    createdAt: new Date(row.created_at),
  }));
}
