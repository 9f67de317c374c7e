import type { StoredError } from '../errors.js';
import type { RunInfo, RunStatus, StepStatus, WaitStatus, LogLevel } from '../types.js';
import { BOUND, errorColumn, jsonColumn, readJson } from './bounded.js';
import type { TimelineLimits, TruncatedValue } from './bounded.js';
import type { ReadDb } from './db.js';
import type { RunTags } from '../tags.js';
import { signalRows, toSignals } from '../signals/read.js';
import { logStepNames } from './step-names.js';
import type { TimelineSignal } from '../signals/read.js';

export type { TimelineLimits, TruncatedValue } from './bounded.js';
export type { TimelineSignal } from '../signals/read.js';

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
  error_text: string | null;
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
  scheduled_for: Date | null;
  replay_of: string | null;
  pause_requested: boolean;
  version: string | null;
  pinned_version: string | null;
  deadline_at?: Date | null;
  start_by?: Date | null;
  tags?: RunTags | null;
  child_run_ids?: string[] | null;
}

export function runColumns(bounded = false): string {
  const bound = bounded ? BOUND : null;
  return `id, run_id, workflow_name, status, queue_name, priority, ${jsonColumn('input', 'input_text', bound)},
  ${jsonColumn('output', 'output_text', bound)}, ${errorColumn('error', 'error_text', bounded)}, idempotency_key, parent_run_id,
  wake_at, lease_owner, lease_expires_at, attempts, created_at, updated_at, started_at, interrupted_at, completed_at, failed_at, cancelled_at, scheduled_for,
  replay_of, pause_requested, version, pinned_version, deadline_at, start_by, tags`;
}

export function toRunInfo(row: RunRow): RunInfo {
  return {
    runId: row.run_id,
    workflow: row.workflow_name,
    status: row.status,
    input: parse(row.input_text),
    output: parse(row.output_text),
    error: (parse(row.error_text) as StoredError | undefined) ?? null,
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
    scheduledFor: date(row.scheduled_for),
    replayOf: row.replay_of ?? null,
    pauseRequested: row.pause_requested === true,
    version: row.version ?? null,
    pinnedVersion: row.pinned_version ?? null,
    deadlineAt: date(row.deadline_at ?? null),
    startBy: date(row.start_by ?? null),
    tags: row.tags ?? {},
  };
}

export async function getRunRow(db: ReadDb, runId: string, limits?: TimelineLimits): Promise<RunRow | null> {
  const t = db.tables;
  const rows = await db.select<RunRow>(
    `SELECT ${runColumns(limits !== undefined)},
            (SELECT coalesce(array_agg(c.run_id ORDER BY c.id), '{}') FROM ${t.runs} c WHERE c.parent_run_id = r.run_id) AS child_run_ids
     FROM ${t.runs} r WHERE run_id = $1`,
    limits ? [runId, limits.valueBytes, limits.previewChars] : [runId],
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
  /** A wait of step.waitForSignal: the signal's name (`event` is then 'durable_flow.signal'). */
  signal: string | null;
  /** A branch of step.waitAny / waitAll: its key and its step's mode (null for a plain wait); `sleep` for a sleep branch. */
  branch: { key: string; mode: 'any' | 'all'; sleep: boolean; value: unknown } | null;
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
  type: 'step' | 'wait' | 'event' | 'log' | 'signal';
  /** `"<type>-<record id>"`. */
  id: string;
  name: string;
  status: string | null;
  timestamp: Date;
  stepId: string | null;
  runLevel: boolean;
  record: TimelineStep | TimelineWait | TimelineEvent | TimelineLog | TimelineSignal;
}

export interface Timeline {
  run: RunInfo;
  steps: { step: TimelineStep; logs: TimelineLog[]; waits: TimelineWait[]; events: TimelineEvent[]; signals: TimelineSignal[] }[];
  runLogs: TimelineLog[];
  /** Signals sent to the run (flow.signal), oldest first: consumed by a step, or buffered. */
  signals: TimelineSignal[];
  items: TimelineItem[];
  /** Bounded timelines only (`limits` given): the values left out, and how many logs the run has in all. */
  truncated?: TruncatedValue[];
  logCount?: number;
  logsNext?: string | null;
  /** Bounded timelines paged by steps (`limits.steps`): the run's steps in all, and the first one's place. */
  stepCount?: number;
  stepsOffset?: number;
  /** With step pages: the names of the steps of the logs shown, on this page or another (the logs page). */
  logSteps?: Record<string, string>;
}

/** A run's steps in their order (position, then creation); a page of them picks its ids first (values computed for those alone). */
const STEP_ORDER = 'coalesce(position, 2147483647), created_at, id';

const TYPE_ORDER = { step: 0, wait: 1, event: 2, signal: 3, log: 4 } as const;

/** Rows of a timeline's statements (ids as text; a bounded JSON value's `<alias>_bytes`/`_preview` beside it, see bounded.ts). */
interface StepRow {
  id: string;
  name: string;
  kind: string;
  status: StepStatus;
  attempts: number;
  position: number | null;
  metadata: Record<string, unknown>;
  started_at: Date | null;
  completed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

interface WaitRow {
  id: string;
  workflow_step_id: string;
  workflow_event_id: string | null;
  event_name: string;
  status: WaitStatus;
  allow_past_events: boolean;
  signal_name: string | null;
  branch: string;
  group_mode: 'any' | 'all' | null;
  is_sleep: boolean;
  timeout_at: Date | null;
  created_at: Date;
  updated_at: Date;
  e_event_id: string | null;
  e_name: string;
  e_source: string | null;
  e_occurred_at: Date;
}

interface LogRow {
  id: string;
  workflow_step_id: string | null;
  level: LogLevel;
  message: string;
  message_bytes?: number | null;
  created_at: Date;
}

/**
 * The whole story of a run: its steps (each with its logs, waits and matched events), run-level logs,
 * and a flat chronological list. With `limits`, bounded for display (see TimelineLimits).
 */
export async function loadTimeline(db: ReadDb, runId: string, limits?: TimelineLimits): Promise<Timeline | null> {
  const t = db.tables;
  const row = await getRunRow(db, runId, limits);
  if (!row) return null;
  const b = limits !== undefined;
  const bound = b ? BOUND : null;
  const params = limits ? [row.id, limits.valueBytes, limits.previewChars] : [row.id];
  const message = b
    ? `CASE WHEN octet_length(message) <= $2 THEN message ELSE left(message, $3) END AS message,
       CASE WHEN octet_length(message) > $2 THEN octet_length(message) END AS message_bytes`
    : 'message';
  const paged = limits?.steps === undefined ? null : { limit: Math.max(1, Math.floor(limits.steps)), offset: Math.max(0, Math.floor(limits.stepsOffset ?? 0)) };
  const [steps, waits, logs, logCount, signalList, stepCount] = await Promise.all([
    db.select<StepRow>(
      `SELECT id, name, kind, status, attempts, position, ${jsonColumn('result', 'result_text', bound)}, ${errorColumn('error', 'error_text', b)},
              ${jsonColumn('cursor', 'cursor_text', bound)}, metadata, started_at, completed_at, created_at, updated_at
       FROM ${t.steps} WHERE workflow_run_id = $1${
         paged ? ` AND id IN (SELECT id FROM ${t.steps} WHERE workflow_run_id = $1 ORDER BY ${STEP_ORDER} LIMIT ${paged.limit} OFFSET ${paged.offset})` : ''
       } ORDER BY ${STEP_ORDER}`,
      params,
    ),
    db.select<WaitRow>(
      `SELECT w.id, w.workflow_step_id, w.workflow_event_id, w.event_name, w.status, ${jsonColumn('w.match', 'match_text', bound)},
              w.allow_past_events, w.signal_name, w.branch, w.group_mode, w.is_sleep, ${jsonColumn('w.result', 'branch_result_text', bound)}, w.timeout_at, w.created_at, w.updated_at, e.event_id AS e_event_id, e.name AS e_name,
              ${jsonColumn('e.payload', 'e_payload_text', bound)}, e.source AS e_source, e.occurred_at AS e_occurred_at
       FROM ${t.waits} w LEFT JOIN ${t.events} e ON e.id = w.workflow_event_id
       WHERE w.workflow_run_id = $1 ORDER BY w.created_at, w.id`,
      params,
    ),
    db.select<LogRow>(
      `SELECT id, workflow_step_id, level, ${message}, ${jsonColumn('data', 'data_text', bound)}, created_at FROM ${t.logs}
       WHERE workflow_run_id = $1
       ${limits ? `AND ($5::bigint IS NULL OR (created_at, id) > (SELECT created_at, id FROM ${t.logs} WHERE id = $5 AND workflow_run_id = $1))` : ''}
       ORDER BY created_at, id${limits ? ' LIMIT $4' : ''}`,
      // One more than shown: whether there is a next page.
      limits ? [...params, limits.logs + 1, limits.logsAfter ?? null] : params,
    ),
    limits ? db.select<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.logs} WHERE workflow_run_id = $1`, [row.id]) : null,
    signalRows(db, params),
    paged ? db.select<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.steps} WHERE workflow_run_id = $1`, [row.id]) : null,
  ]);
  const truncated: TruncatedValue[] = [];
  if (limits) {
    for (const [alias, path] of [['input_text', 'run.input'], ['output_text', 'run.output'], ['error_text', 'run.error']] as const) {
      readJson(row, alias, path, truncated);
    }
  }
  const stepList: TimelineStep[] = steps.map((s) => ({
    id: String(s.id),
    name: s.name,
    kind: s.kind,
    status: s.status,
    attempts: s.attempts,
    position: s.position,
    result: readJson(s, 'result_text', `steps.${s.id}.result`, truncated),
    error: (readJson(s, 'error_text', `steps.${s.id}.error`, truncated) as StoredError | undefined) ?? null,
    cursor: readJson(s, 'cursor_text', `steps.${s.id}.cursor`, truncated) ?? null,
    metadata: s.metadata,
    startedAt: date(s.started_at),
    completedAt: date(s.completed_at),
    createdAt: new Date(s.created_at),
    updatedAt: new Date(s.updated_at),
  }));
  const events = new Map<string, TimelineEvent>();
  const waitList: TimelineWait[] = waits.map((w) => {
    if (w.workflow_event_id !== null && !events.has(String(w.workflow_event_id))) {
      events.set(String(w.workflow_event_id), {
        id: String(w.workflow_event_id),
        eventId: w.e_event_id,
        name: w.e_name,
        payload: readJson(w, 'e_payload_text', `events.${w.workflow_event_id}.payload`, truncated) ?? null,
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
      match: readJson(w, 'match_text', `waits.${w.id}.match`, truncated) ?? null,
      allowPastEvents: w.allow_past_events,
      signal: w.signal_name,
      branch:
        w.group_mode === null
          ? null
          : { key: w.branch, mode: w.group_mode, sleep: w.is_sleep, value: readJson(w, 'branch_result_text', `waits.${w.id}.result`, truncated) ?? null },
      timeoutAt: date(w.timeout_at),
      createdAt: new Date(w.created_at),
      updatedAt: new Date(w.updated_at),
    };
  });
  const signals = toSignals(signalList, truncated);
  const more = limits !== undefined && logs.length > limits.logs;
  const logList: TimelineLog[] = logs.slice(0, limits?.logs).map((l) => {
    if (l.message_bytes !== undefined && l.message_bytes !== null) truncated.push({ path: `logs.${l.id}.message`, bytes: Number(l.message_bytes), preview: l.message });
    return {
      id: String(l.id),
      stepId: l.workflow_step_id === null ? null : String(l.workflow_step_id),
      level: l.level,
      message: l.message,
      data: (readJson(l, 'data_text', `logs.${l.id}.data`, truncated) as Record<string, unknown> | undefined) ?? {},
      createdAt: new Date(l.created_at),
    };
  });
  // By step, in one pass each (a run of thousands of steps is not read once per step).
  const byStep = <T extends { stepId: string | null }>(list: T[]) => {
    const map = new Map<string, T[]>();
    for (const item of list) if (item.stepId !== null) (map.get(item.stepId) ?? map.set(item.stepId, []).get(item.stepId)!).push(item);
    return map;
  };
  const [waitsOf, logsOf, signalsOf] = [byStep(waitList), byStep(logList), byStep(signals)];
  const entries = stepList.map((step) => {
    const stepWaits = waitsOf.get(step.id) ?? [];
    return {
      step,
      logs: logsOf.get(step.id) ?? [],
      waits: stepWaits,
      events: stepWaits.flatMap((w) => (w.eventId && events.has(w.eventId) ? [events.get(w.eventId)!] : [])),
      signals: signalsOf.get(step.id) ?? [],
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
  for (const signal of signals) {
    items.push({ type: 'signal', id: `signal-${signal.id}`, name: signal.name, status: signal.stepId ? 'consumed' : 'buffered', timestamp: signal.createdAt, stepId: signal.stepId, runLevel: signal.stepId === null, record: signal });
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
  return {
    run: toRunInfo(row),
    steps: entries,
    runLogs: logList.filter((l) => l.stepId === null),
    signals,
    items,
    ...(limits ? { truncated, logCount: logCount![0]!.n, logsNext: more ? logList[logList.length - 1]!.id : null } : {}),
    ...(paged ? { stepCount: stepCount![0]!.n, stepsOffset: paged.offset, logSteps: await logStepNames(db, logList, stepList) } : {}),
  };
}
