import { DataTypes, Model, literal } from 'sequelize';
import type { ModelAttributes, ModelStatic, Sequelize } from 'sequelize';
import { RUN_STATUSES } from '../run-status.js';
import { defineMetricModels } from './metric-models.js';
import type { MetricModels } from './metric-models.js';
import type { BulkAction, LogLevel, OperationStatus, ScheduleCatchUp, ScheduleOrigin, ScheduleOverlap, StepStatus, WaitStatus } from '../types.js';

/**
 * Sequelize models of every durable-flow table, column for column (test/integration/models.test.ts
 * compares them with a freshly migrated database), for reading runs, steps, waits, events and logs
 * with the ORM the host app already uses. Writes that matter for correctness go through the engine
 * (leases and fencing live there), so treat these as read models.
 *
 * Defaults: a constant default of the table is the model's `defaultValue`, `now()` is `DataTypes.NOW`,
 * and a default only the database can compute (`pg_current_snapshot()`, `pg_current_xact_id()`) is the
 * same SQL as a literal, so an INSERT through the model asks the database for it.
 *
 * Sequelize writes into the attribute objects it is given (each one's `field`), so every attribute
 * is a fresh object: the helpers below are functions, never shared constants.
 */
export interface DurableFlowModels extends MetricModels {
  WorkflowRun: ModelStatic<Model>;
  WorkflowStep: ModelStatic<Model>;
  WorkflowEvent: ModelStatic<Model>;
  WorkflowWait: ModelStatic<Model>;
  WorkflowLog: ModelStatic<Model>;
  /** `cancelOn`: an event of this name whose payload contains `match` cancels the run. */
  CancelTrigger: ModelStatic<Model>;
  /** One row: until when some process wants live changes. */
  Live: ModelStatic<Model>;
  /** Random values durable-flow keeps for itself (the viewer's CSRF key). */
  Secret: ModelStatic<Model>;
  /** Cron schedules (migration 004): the next slot, the last run, the slots skipped. */
  Schedule: ModelStatic<Model>;
  /** Workflows whose runs are not claimed (flow.pauseWorkflow), migration 007. */
  WorkflowPause: ModelStatic<Model>;
  /** Bulk operations (flow.bulk): their filter, progress and cursor. */
  Operation: ModelStatic<Model>;
  /** The audit trail of operator actions. */
  AuditEntry: ModelStatic<Model>;
  /** Signals sent to runs (flow.signal), migration 009: buffered until a waitForSignal step consumes one. */
  Signal: ModelStatic<Model>;
  /** The migrations applied, by version. */
  Migration: ModelStatic<Model>;
  /** Event triggers (the workflow option `on`), migration 014: synced from the registered workflows. */
  EventTrigger: ModelStatic<Model>;
  /** Pending starts of event triggers whose workflow's start needs its code (a worker of it makes the run), migration 014. */
  TriggerStart: ModelStatic<Model>;
}

// The values each CHECK constraint allows (migrations 001 and 002), as the TypeScript unions spell them.
const STEP_STATUSES: StepStatus[] = ['pending', 'running', 'succeeded', 'sleeping', 'waiting', 'retrying', 'failed', 'cancelled'];
const WAIT_STATUSES: WaitStatus[] = ['pending', 'matched', 'timed_out', 'cancelled'];
const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];
const OVERLAP_POLICIES: ScheduleOverlap[] = ['skip', 'allow', 'buffer_one', 'cancel_other'];
const CATCH_UP_POLICIES: ScheduleCatchUp[] = ['latest', 'none', 'all'];
const SCHEDULE_ORIGINS: ScheduleOrigin[] = ['api', 'workflow'];
const BULK_ACTIONS: BulkAction[] = ['cancel', 'retry', 'replay'];
const OPERATION_STATUSES: OperationStatus[] = ['running', 'completed', 'failed'];

const bigId = () => ({ type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true });
const now = (field: string) => ({ type: DataTypes.DATE, allowNull: false, defaultValue: DataTypes.NOW, field });
const createdAt = () => ({ createdAt: now('created_at') });
const timestamps = () => ({ ...createdAt(), updatedAt: now('updated_at') });
const time = (field: string) => ({ type: DataTypes.DATE, field });
const text = (field: string) => ({ type: DataTypes.TEXT, field });
const required = <T extends object>(attribute: T) => ({ ...attribute, allowNull: false });
const count = () => ({ type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
const jsonObject = () => ({ type: DataTypes.JSONB, allowNull: false, defaultValue: {} });
const oneOf = (values: string[]) => ({ type: DataTypes.TEXT, allowNull: false, validate: { isIn: [values] } });
const status = (values: string[], defaultValue: string) => ({ ...oneOf(values), defaultValue });
const runFk = () => ({ type: DataTypes.BIGINT, allowNull: false, field: 'workflow_run_id' });

const runAttributes = (): ModelAttributes => ({
  id: bigId(),
  runId: required(text('run_id')),
  workflowName: required(text('workflow_name')),
  status: status([...RUN_STATUSES], 'enqueued'),
  queueName: { ...required(text('queue_name')), defaultValue: 'default' },
  priority: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
  input: DataTypes.JSONB,
  output: DataTypes.JSONB,
  error: DataTypes.JSONB,
  idempotencyKey: text('idempotency_key'),
  parentRunId: text('parent_run_id'),
  parentStepName: text('parent_step_name'),
  concurrencyKey: text('concurrency_key'),
  concurrencyLimit: { type: DataTypes.INTEGER, field: 'concurrency_limit' },
  /** Blocked by its concurrency limit: no wake_at until a run of its key frees a slot. */
  concurrencyWaiting: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false, field: 'concurrency_waiting' },
  /** Some wait watches this run (step.invoke, step.waitForWorkflow). */
  watched: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
  wakeAt: time('wake_at'),
  leaseOwner: text('lease_owner'),
  leaseEpoch: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0, field: 'lease_epoch' },
  leaseExpiresAt: time('lease_expires_at'),
  claimCount: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0, field: 'claim_count' },
  attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
  /** The snapshot the run was created in. */
  createdSnapshot: { ...required(text('created_snapshot')), defaultValue: literal('(pg_current_snapshot())::text') },
  /** The low-water mark of the executions since the run last stopped cleanly (migration 002). */
  resumeSnapshot: text('resume_snapshot'),
  startedAt: time('started_at'),
  interruptedAt: time('interrupted_at'),
  completedAt: time('completed_at'),
  failedAt: time('failed_at'),
  cancelledAt: time('cancelled_at'),
  /** The slot a schedule started the run for (migration 004). */
  scheduledFor: time('scheduled_for'),
  /** flow.pause() of a run a worker holds: it pauses when its execution next stops (migration 007). */
  pauseRequested: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false, field: 'pause_requested' },
  /** Its wake_at, set aside while its workflow is paused (flow.pauseWorkflow). */
  heldWakeAt: time('held_wake_at'),
  /** The run this one replays (flow.replay, flow.rerunFrom). */
  replayOf: text('replay_of'),
  /** The version of the flow that started the run (migration 008). */
  version: text('version'),
  /** Set for a run of a `versioning: 'pinned'` workflow: only workers of this version claim it. */
  pinnedVersion: text('pinned_version'),
  /** Its `timeout`'s deadline (migration 011): not finished by then, it fails with RUN_TIMEOUT. */
  deadlineAt: time('deadline_at'),
  /** Its `startBy` (migration 011): not started by then, it is cancelled with DEADLINE_EXCEEDED. */
  startBy: time('start_by'),
  /** Start control (migration 012): the singleton key of the run ('' for the workflow's one singleton). */
  singletonKey: text('singleton_key'),
  /** The rate-limit key its start was counted under; admittedAt: when it was accepted (NULL: RATE_LIMITED). */
  rateLimitKey: text('rate_limit_key'),
  admittedAt: time('admitted_at'),
  /** The debounce key of its burst, and the latest it may begin (its first start plus maxWait). */
  debounceKey: text('debounce_key'),
  debounceDeadline: time('debounce_deadline'),
  /** `throttle` (migration 013): the key it begins under, the limit and period; throttleWaiting: parked for the window. */
  throttleKey: text('throttle_key'),
  throttleLimit: { type: DataTypes.INTEGER, field: 'throttle_limit' },
  throttlePeriodMs: { type: DataTypes.BIGINT, field: 'throttle_period_ms' },
  throttleWaiting: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false, field: 'throttle_waiting' },
  /** Its `tags` (migration 015): string keys to string values, `{}` without any. */
  tags: jsonObject(),
  /** start()'s OpenTelemetry context, a propagation carrier (migration 017, lib/tracing/); null without one. */
  traceContext: { type: DataTypes.JSONB, field: 'trace_context' },
  ...timestamps(),
});

const stepAttributes = (): ModelAttributes => ({
  id: bigId(),
  workflowRunId: runFk(),
  name: { type: DataTypes.TEXT, allowNull: false },
  kind: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'run' },
  status: status(STEP_STATUSES, 'pending'),
  attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
  position: DataTypes.INTEGER,
  result: DataTypes.JSONB,
  error: DataTypes.JSONB,
  cursor: DataTypes.JSONB,
  metadata: jsonObject(),
  /** The snapshot of the execution that stored this step (see docs/ARCHITECTURE.md, "No lost wake-up"). */
  execSnapshot: text('exec_snapshot'),
  startedAt: time('started_at'),
  completedAt: time('completed_at'),
  ...timestamps(),
});

const eventAttributes = (): ModelAttributes => ({
  id: bigId(),
  eventId: text('event_id'),
  name: { type: DataTypes.TEXT, allowNull: false },
  payload: jsonObject(),
  source: DataTypes.TEXT,
  /** The storing transaction's id (xid8), read as its decimal text. */
  txid: { type: DataTypes.TEXT, allowNull: false, defaultValue: literal('pg_current_xact_id()') },
  occurredAt: now('occurred_at'),
  ...timestamps(),
});

const waitAttributes = (): ModelAttributes => ({
  id: bigId(),
  workflowRunId: runFk(),
  workflowStepId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_step_id' },
  workflowEventId: { type: DataTypes.BIGINT, field: 'workflow_event_id' },
  eventName: required(text('event_name')),
  status: status(WAIT_STATUSES, 'pending'),
  match: jsonObject(),
  allowPastEvents: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false, field: 'allow_past_events' },
  /** Set for step.invoke / step.waitForWorkflow: the wait ends when this run finishes. */
  watchedRunId: text('watched_run_id'),
  /** Set for step.waitForSignal: the signal's name (its event name is 'durable_flow.signal'). */
  signalName: text('signal_name'),
  /** A branch of step.waitAny / waitAll: its key ('' for a plain wait), its step's mode, sleep or not, and its value once matched. */
  branch: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
  groupMode: { type: DataTypes.TEXT, field: 'group_mode', validate: { isIn: [['any', 'all']] } },
  isSleep: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false, field: 'is_sleep' },
  result: { type: DataTypes.JSONB },
  sinceSnapshot: text('since_snapshot'),
  timeoutAt: time('timeout_at'),
  ...timestamps(),
});

const logAttributes = (): ModelAttributes => ({
  id: bigId(),
  workflowRunId: runFk(),
  workflowStepId: { type: DataTypes.BIGINT, field: 'workflow_step_id' },
  key: { type: DataTypes.TEXT, allowNull: false },
  level: oneOf(LOG_LEVELS),
  message: { type: DataTypes.TEXT, allowNull: false },
  data: jsonObject(),
  ...timestamps(),
});

const scheduleAttributes = (): ModelAttributes => ({
  name: { type: DataTypes.TEXT, primaryKey: true },
  workflowName: required(text('workflow_name')),
  cron: { type: DataTypes.TEXT, allowNull: false },
  timezone: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'UTC' },
  input: DataTypes.JSONB,
  overlap: status(OVERLAP_POLICIES, 'skip'),
  catchUp: { ...status(CATCH_UP_POLICIES, 'latest'), field: 'catch_up' },
  paused: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
  nextAt: time('next_at'),
  lastSlot: time('last_slot'),
  lastRunId: text('last_run_id'),
  bufferedSlot: time('buffered_slot'),
  /** Slots that started no run, newest first: [{ slot, reason, count?, until? }]. */
  skipped: { type: DataTypes.JSONB, allowNull: false, defaultValue: [] },
  /** 'workflow': from a workflow's `schedule` option; 'api': flow.schedules.create. */
  origin: status(SCHEDULE_ORIGINS, 'api'),
  ...timestamps(),
});

export function defineModels(sequelize: Sequelize, schema: string): DurableFlowModels {
  const options = (tableName: string, stamps: 'both' | 'created' | 'none' = 'both') => ({
    tableName,
    schema,
    timestamps: stamps !== 'none',
    updatedAt: stamps === 'both' ? 'updatedAt' : false,
    underscored: true,
  });
  const define = (name: string, attributes: ModelAttributes, table: string, stamps?: 'both' | 'created' | 'none') =>
    sequelize.define(`DurableFlow${name}`, attributes, options(table, stamps));

  const WorkflowRun = define('WorkflowRun', runAttributes(), 'durable_flow_workflow_runs');
  const WorkflowStep = define('WorkflowStep', stepAttributes(), 'durable_flow_workflow_steps');
  const WorkflowEvent = define('WorkflowEvent', eventAttributes(), 'durable_flow_workflow_events');
  const WorkflowWait = define('WorkflowWait', waitAttributes(), 'durable_flow_workflow_waits');
  const WorkflowLog = define('WorkflowLog', logAttributes(), 'durable_flow_workflow_logs');
  const CancelTrigger = define(
    'CancelTrigger',
    {
      id: bigId(),
      workflowRunId: runFk(),
      eventName: required(text('event_name')),
      match: jsonObject(),
      ...createdAt(),
    },
    'durable_flow_cancel_triggers',
    'created',
  );
  const Live = define(
    'Live',
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, validate: { isIn: [[1]] } },
      liveUntil: time('live_until'),
    },
    'durable_flow_live',
    'none',
  );
  const Secret = define(
    'Secret',
    { name: { type: DataTypes.TEXT, primaryKey: true }, value: { type: DataTypes.TEXT, allowNull: false }, ...createdAt() },
    'durable_flow_secrets',
    'created',
  );
  const Schedule = define('Schedule', scheduleAttributes(), 'durable_flow_schedules');
  const WorkflowPause = define(
    'WorkflowPause',
    { workflowName: { ...text('workflow_name'), primaryKey: true }, actor: DataTypes.TEXT, reason: DataTypes.TEXT, pausedAt: now('paused_at') },
    'durable_flow_workflow_pauses',
    'none',
  );
  const Operation = define(
    'Operation',
    {
      id: { type: DataTypes.TEXT, primaryKey: true },
      action: oneOf(BULK_ACTIONS),
      filter: jsonObject(),
      status: status(OPERATION_STATUSES, 'running'),
      total: count(),
      done: count(),
      failed: count(),
      maxRunId: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0, field: 'max_run_id' },
      cursor: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0 },
      actor: DataTypes.TEXT,
      reason: DataTypes.TEXT,
      error: DataTypes.JSONB,
      leaseOwner: text('lease_owner'),
      leaseExpiresAt: time('lease_expires_at'),
      completedAt: time('completed_at'),
      ...timestamps(),
    },
    'durable_flow_operations',
  );
  const AuditEntry = define(
    'AuditEntry',
    {
      id: bigId(),
      at: now('at'),
      actor: DataTypes.TEXT,
      action: { type: DataTypes.TEXT, allowNull: false },
      workflowName: text('workflow_name'),
      runId: text('run_id'),
      stepName: text('step_name'),
      operationId: text('operation_id'),
      reason: DataTypes.TEXT,
      details: jsonObject(),
    },
    'durable_flow_audit',
    'none',
  );
  const Signal = define(
    'Signal',
    {
      id: bigId(),
      workflowRunId: runFk(),
      name: { type: DataTypes.TEXT, allowNull: false },
      payload: jsonObject(),
      signalId: text('signal_id'),
      consumedByStepId: { type: DataTypes.BIGINT, field: 'consumed_by_step_id' },
      consumedAt: time('consumed_at'),
      ...createdAt(),
    },
    'durable_flow_signals',
    'created',
  );
  const Migration = define(
    'Migration',
    {
      version: { type: DataTypes.INTEGER, primaryKey: true },
      name: { type: DataTypes.TEXT, allowNull: false },
      appliedAt: now('applied_at'),
    },
    'durable_flow_migrations',
    'none',
  );

  const EventTrigger = define(
    'EventTrigger',
    {
      workflowName: { ...text('workflow_name'), primaryKey: true },
      position: { type: DataTypes.INTEGER, primaryKey: true },
      eventName: required(text('event_name')),
      match: jsonObject(),
      queueName: required(text('queue_name')),
      priority: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      timeoutMs: { type: DataTypes.BIGINT, field: 'timeout_ms' },
      concurrencyLimit: { type: DataTypes.INTEGER, field: 'concurrency_limit' },
      cancelOn: { type: DataTypes.JSONB, allowNull: false, defaultValue: [], field: 'cancel_on' },
      version: { type: DataTypes.TEXT, allowNull: false },
      pinned: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      deferred: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      ...timestamps(),
    },
    'durable_flow_event_triggers',
  );
  const TriggerStart = define(
    'TriggerStart',
    {
      id: bigId(),
      workflowName: required(text('workflow_name')),
      workflowEventId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_event_id' },
      payload: { type: DataTypes.JSONB, allowNull: false },
      attempts: count(),
      error: DataTypes.TEXT,
      ...createdAt(),
    },
    'durable_flow_trigger_starts',
    'created',
  );

  WorkflowRun.hasMany(WorkflowStep, { foreignKey: 'workflowRunId', as: 'steps' });
  WorkflowRun.hasMany(WorkflowWait, { foreignKey: 'workflowRunId', as: 'waits' });
  WorkflowRun.hasMany(WorkflowLog, { foreignKey: 'workflowRunId', as: 'logs' });
  WorkflowRun.hasMany(CancelTrigger, { foreignKey: 'workflowRunId', as: 'cancelTriggers' });
  WorkflowStep.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowStep.hasMany(WorkflowLog, { foreignKey: 'workflowStepId', as: 'logs' });
  WorkflowWait.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowWait.belongsTo(WorkflowStep, { foreignKey: 'workflowStepId', as: 'step' });
  WorkflowWait.belongsTo(WorkflowEvent, { foreignKey: 'workflowEventId', as: 'event' });
  WorkflowEvent.hasMany(WorkflowWait, { foreignKey: 'workflowEventId', as: 'waits' });
  WorkflowLog.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowLog.belongsTo(WorkflowStep, { foreignKey: 'workflowStepId', as: 'step' });
  CancelTrigger.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowRun.hasMany(Signal, { foreignKey: 'workflowRunId', as: 'signals' });
  Signal.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  Signal.belongsTo(WorkflowStep, { foreignKey: 'consumedByStepId', as: 'consumedBy' });

  return { ...defineMetricModels(define), WorkflowRun, WorkflowStep, WorkflowEvent, WorkflowWait, WorkflowLog, CancelTrigger, Live, Secret, Schedule, WorkflowPause, Operation, AuditEntry, Signal, Migration, EventTrigger, TriggerStart };
}
