import type pg from 'pg';
import type { Tables } from '../db/tables.js';
import type { StoredError } from '../errors.js';
import type { RunInfo, RunStatus, StepStatus, WaitStatus, LogLevel } from '../types.js';

function parse(text: string | null): unknown {
  return text === null ? undefined : JSON.parse(text);
}

const date = (value: Date | string | null): Date | null => (value === null ? null : new Date(value));

export interface RunRow {
  id: string;
  run_id: string;
  workflow_name: string;
  status: RunStatus;
  queue_name: string;
  priority: number;
  input_text: string | null;
  output_text: string | null;
  error: StoredError | null;
  idempotency_key: string | null;
  parent_run_id: string | null;
  wake_at: Date | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  attempts: number;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  interrupted_at: Date | null;
  completed_at: Date | null;
  failed_at: Date | null;
  cancelled_at: Date | null;
  child_run_ids?: string[] | null;
}

export const runColumns = `id, run_id, workflow_name, status, queue_name, priority, input::text AS input_text,
  output::text AS output_text, error, idempotency_key, parent_run_id, wake_at, lease_owner, lease_expires_at,
  attempts, created_at, updated_at, started_at, interrupted_at, completed_at, failed_at, cancelled_at`;

export function toRunInfo(row: RunRow): RunInfo {
  return {
    runId: row.run_id,
    workflow: row.workflow_name,
    status: row.status,
    input: parse(row.input_text),
    output: parse(row.output_text),
    error: row.error,
    queue: row.queue_name,
    priority: row.priority,
    idempotencyKey: row.idempotency_key,
    parentRunId: row.parent_run_id,
    childRunIds: row.child_run_ids ?? [],
    attempts: row.attempts,
    wakeAt: date(row.wake_at),
    lease: row.lease_owner ? { owner: row.lease_owner, expiresAt: date(row.lease_expires_at) } : null,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    startedAt: date(row.started_at),
    interruptedAt: date(row.interrupted_at),
    completedAt: date(row.completed_at),
    failedAt: date(row.failed_at),
    cancelledAt: date(row.cancelled_at),
  };
}

export async function getRunRow(pool: pg.Pool, t: Tables, runId: string): Promise<RunRow | null> {
  const { rows } = await pool.query<RunRow>(
    `SELECT ${runColumns},
            (SELECT coalesce(array_agg(c.run_id ORDER BY c.id), '{}') FROM ${t.runs} c WHERE c.parent_run_id = r.run_id) AS child_run_ids
     FROM ${t.runs} r WHERE run_id = $1`,
    [runId],
  );
  return rows[0] ?? null;
}

export interface TimelineStep {
  id: string;
  name: string;
  kind: string;
  status: StepStatus;
  attempts: number;
  position: number | null;
  result: unknown;
  error: StoredError | null;
  cursor: unknown;
  metadata: Record<string, unknown>;
  startedAt: Date | null;
  completedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface TimelineWait {
  id: string;
  stepId: string;
  eventId: string | null;
  event: string;
  status: WaitStatus;
  match: unknown;
  allowPastEvents: boolean;
  timeoutAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface TimelineEvent {
  id: string;
  eventId: string | null;
  name: string;
  payload: unknown;
  source: string | null;
  occurredAt: Date;
}

export interface TimelineLog {
  id: string;
  stepId: string | null;
  level: LogLevel;
  message: string;
  data: Record<string, unknown>;
  createdAt: Date;
}

export interface TimelineItem {
  type: 'step' | 'wait' | 'event' | 'log';
  /** `"<type>-<record id>"`. */
  id: string;
  name: string;
  status: string | null;
  timestamp: Date;
  stepId: string | null;
  runLevel: boolean;
  record: TimelineStep | TimelineWait | TimelineEvent | TimelineLog;
}

export interface Timeline {
  run: RunInfo;
  steps: { step: TimelineStep; logs: TimelineLog[]; waits: TimelineWait[]; events: TimelineEvent[] }[];
  runLogs: TimelineLog[];
  items: TimelineItem[];
}

const TYPE_ORDER = { step: 0, wait: 1, event: 2, log: 3 } as const;

/** The whole story of a run: its steps (each with its logs, waits and matched events), run-level logs, and a flat chronological list. */
export async function loadTimeline(pool: pg.Pool, t: Tables, runId: string): Promise<Timeline | null> {
  const row = await getRunRow(pool, t, runId);
  if (!row) return null;
  const [steps, waits, logs] = await Promise.all([
    pool.query(
      `SELECT id, name, kind, status, attempts, position, result::text AS result_text, error, cursor, metadata,
              started_at, completed_at, created_at, updated_at
       FROM ${t.steps} WHERE workflow_run_id = $1 ORDER BY coalesce(position, 2147483647), created_at, id`,
      [row.id],
    ),
    pool.query(
      `SELECT w.id, w.workflow_step_id, w.workflow_event_id, w.event_name, w.status, w.match, w.allow_past_events,
              w.timeout_at, w.created_at, w.updated_at,
              e.event_id AS e_event_id, e.name AS e_name, e.payload AS e_payload, e.source AS e_source, e.occurred_at AS e_occurred_at
       FROM ${t.waits} w LEFT JOIN ${t.events} e ON e.id = w.workflow_event_id
       WHERE w.workflow_run_id = $1 ORDER BY w.created_at, w.id`,
      [row.id],
    ),
    pool.query(
      `SELECT id, workflow_step_id, level, message, data, created_at FROM ${t.logs}
       WHERE workflow_run_id = $1 ORDER BY created_at, id`,
      [row.id],
    ),
  ]);
  const stepList: TimelineStep[] = steps.rows.map((s) => ({
    id: String(s.id),
    name: s.name,
    kind: s.kind,
    status: s.status,
    attempts: s.attempts,
    position: s.position,
    result: parse(s.result_text),
    error: s.error,
    cursor: s.cursor,
    metadata: s.metadata,
    startedAt: date(s.started_at),
    completedAt: date(s.completed_at),
    createdAt: new Date(s.created_at),
    updatedAt: new Date(s.updated_at),
  }));
  const events = new Map<string, TimelineEvent>();
  const waitList: TimelineWait[] = waits.rows.map((w) => {
    if (w.workflow_event_id !== null && !events.has(String(w.workflow_event_id))) {
      events.set(String(w.workflow_event_id), {
        id: String(w.workflow_event_id),
        eventId: w.e_event_id,
        name: w.e_name,
        payload: w.e_payload,
        source: w.e_source,
        occurredAt: new Date(w.e_occurred_at),
      });
    }
    return {
      id: String(w.id),
      stepId: String(w.workflow_step_id),
      eventId: w.workflow_event_id === null ? null : String(w.workflow_event_id),
      event: w.event_name,
      status: w.status,
      match: w.match,
      allowPastEvents: w.allow_past_events,
      timeoutAt: date(w.timeout_at),
      createdAt: new Date(w.created_at),
      updatedAt: new Date(w.updated_at),
    };
  });
  const logList: TimelineLog[] = logs.rows.map((l) => ({
    id: String(l.id),
    stepId: l.workflow_step_id === null ? null : String(l.workflow_step_id),
    level: l.level,
    message: l.message,
    data: l.data,
    createdAt: new Date(l.created_at),
  }));
  const entries = stepList.map((step) => {
    const stepWaits = waitList.filter((w) => w.stepId === step.id);
    return {
      step,
      logs: logList.filter((l) => l.stepId === step.id),
      waits: stepWaits,
      events: stepWaits.flatMap((w) => (w.eventId && events.has(w.eventId) ? [events.get(w.eventId)!] : [])),
    };
  });
  const items: TimelineItem[] = [];
  for (const step of stepList) {
    items.push({ type: 'step', id: `step-${step.id}`, name: step.name, status: step.status, timestamp: step.startedAt ?? step.createdAt, stepId: step.id, runLevel: false, record: step });
  }
  for (const wait of waitList) {
    items.push({ type: 'wait', id: `wait-${wait.id}`, name: wait.event, status: wait.status, timestamp: wait.createdAt, stepId: wait.stepId, runLevel: false, record: wait });
  }
  for (const event of events.values()) {
    const stepId = [...waitList].reverse().find((w) => w.eventId === event.id)?.stepId ?? null;
    items.push({ type: 'event', id: `event-${event.id}`, name: event.name, status: null, timestamp: event.occurredAt, stepId, runLevel: stepId === null, record: event });
  }
  for (const log of logList) {
    items.push({ type: 'log', id: `log-${log.id}`, name: log.message, status: null, timestamp: log.createdAt, stepId: log.stepId, runLevel: log.stepId === null, record: log });
  }
  items.sort(
    (a, b) =>
      a.timestamp.getTime() - b.timestamp.getTime() ||
      TYPE_ORDER[a.type] - TYPE_ORDER[b.type] ||
      Number(a.record.id) - Number(b.record.id),
  );
  return { run: toRunInfo(row), steps: entries, runLogs: logList.filter((l) => l.stepId === null), items };
}
