import { cast, col } from 'sequelize';
import { jsonColumn, readJson } from './bounded.js';
import type { TruncatedValue } from './bounded.js';
import type { ReadDb } from './db.js';
import type { TimelineEvent } from './timeline.js';

/** A wait an event matched: the run, its workflow and the waiting step. */
export interface MatchedWait {
  runId: string;
  workflow: string;
  step: string;
}

/** A stored event as the viewer lists it: as a timeline shows it, with the waits it matched. */
export interface ListedEvent extends TimelineEvent {
  matched: MatchedWait[];
}

/** The waits event `e` matched, as a JSON array of MatchedWait (oldest wait first). */
function matchedWaitsSql(t: ReadDb['tables']): string {
  return `coalesce((SELECT json_agg(json_build_object('runId', r.run_id, 'workflow', r.workflow_name, 'step', s.name) ORDER BY w.id)
                    FROM ${t.waits} w
                    JOIN ${t.runs} r ON r.id = w.workflow_run_id
                    JOIN ${t.steps} s ON s.id = w.workflow_step_id
                    WHERE w.workflow_event_id = e.id), '[]')`;
}

interface EventRow {
  id: string | number;
  event_id: string | null;
  name: string;
  source: string | null;
  occurred_at: Date;
  matched: MatchedWait[];
}

/** One event's name and the waits it matched (the notice after sending it), or null when there is none. */
export async function eventMatches(db: ReadDb, id: string): Promise<{ id: string; name: string; eventId: string | null; matched: MatchedWait[] } | null> {
  const rows = await db.select<Omit<EventRow, 'source' | 'occurred_at'>>(
    `SELECT e.id, e.name, e.event_id, ${matchedWaitsSql(db.tables)} AS matched FROM ${db.tables.events} e WHERE e.id = $1`,
    [id],
  );
  const e = rows[0];
  return e ? { id: String(e.id), name: e.name, eventId: e.event_id, matched: e.matched } : null;
}

/** Recent events (newest first, keyset on id), each with the waits it matched; payloads bounded by `limits`. */
export async function listEvents(
  db: ReadDb,
  filter: { name: string | null; beforeId: string | null; limit: number },
  limits: { valueBytes: number; previewChars: number },
): Promise<{ events: ListedEvent[]; truncated: TruncatedValue[]; next: string | null }> {
  const rows = await db.select<EventRow>(
    `SELECT e.id, e.event_id, e.name, ${jsonColumn('e.payload', 'payload_text', { limit: '$4', preview: '$5' })}, e.source, e.occurred_at,
            ${matchedWaitsSql(db.tables)} AS matched
     FROM ${db.tables.events} e
     WHERE ($1::text IS NULL OR e.name = $1) AND ($2::bigint IS NULL OR e.id < $2::bigint)
     ORDER BY e.id DESC
     LIMIT $3`,
    [filter.name, filter.beforeId, filter.limit + 1, limits.valueBytes, limits.previewChars],
  );
  const truncated: TruncatedValue[] = [];
  const events = rows.slice(0, filter.limit).map((e) => ({
    id: String(e.id),
    eventId: e.event_id,
    name: e.name,
    payload: readJson(e, 'payload_text', `events.${e.id}.payload`, truncated),
    source: e.source,
    occurredAt: e.occurred_at,
    matched: e.matched,
  }));
  const last = events[events.length - 1];
  return { events, truncated, next: rows.length > filter.limit && last ? last.id : null };
}

/** The whole payload of an event as JSON text, or null when there is no such event. */
export async function eventPayload(db: ReadDb, id: string): Promise<string | null> {
  const row = await db.models.WorkflowEvent.findOne({ attributes: [[cast(col('payload'), 'text'), 'payload']], where: { id } });
  return row ? String(row.get('payload')) : null;
}
