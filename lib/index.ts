/**
 * durable-flow: durable workflows for Express apps, with Postgres as the only infrastructure.
 * This is the package's one entry; the test harness lives in `durable-flow/testing`.
 */
export { DurableFlow } from './flow.js';
export type { Workflow } from './flow.js';
export {
  DurableFlowError,
  NonRetriableError,
  WaitTimeoutError,
  ChildWorkflowFailedError,
  SerializationError,
  NonDeterminismError,
  StepTimeoutError,
  LeaseLostError,
} from './errors.js';
export { RetryAfterError } from './retry-after.js';
export type { DurableFlowErrorCode, StoredError } from './errors.js';
export type { DurableFlowOptions, Logger } from './config.js';
export type { MigrateResult } from './db/migrator.js';
export type { DurableFlowModels } from './db/models.js';
export type { Change, ChangeType, ChangeSubscriber } from './changes/feed.js';
export type { Worker, WorkerOptions, StopOptions } from './worker/worker.js';
export type { AuthorizeResult, RouterOptions } from './http/options.js';
export type { LiveHandle, LiveOptions } from './http/live.js';
export { signatureHeader, verifySignature, SIGNATURE_HEADER } from './http/ingest.js';
export type { Timeline, TimelineItem, TimelineStep, TimelineWait, TimelineEvent, TimelineLog, TimelineSignal } from './read/timeline.js';
export type {
  Backoff,
  BackoffOptions,
  DurationInput,
  EventRecord,
  LogLevel,
  NotifyOptions,
  ResultOptions,
  RunHandle,
  RunInfo,
  RunStatus,
  ScheduleCatchUp,
  ScheduleInfo,
  ScheduleOptions,
  ScheduleOverlap,
  SkippedSlot,
  SentEvent,
  SignalOptions,
  StartOptions,
  StepApi,
  StepContext,
  StepRunOptions,
  StepStatus,
  TimeInput,
  WaitForEventOptions,
  WaitForSignalOptions,
  WaitAnyResult,
  WaitBranch,
  WaitGroupOptions,
  WaitStatus,
  WorkflowContext,
  WorkflowHandler,
  WorkflowLog,
  WorkflowOptions,
  WorkflowSchedule,
  ScheduleOrigin,
  SingletonOptions,
  RateLimitOptions,
  DebounceOptions,
  ThrottleOptions,
} from './types.js';
export type { EventTrigger } from './triggers/types.js';
export type { RunTags } from './tags.js';
export type {
  AuditAction,
  AuditEntry,
  AuditQuery,
  BulkAction,
  BulkFilter,
  OperationInfo,
  OperationStatus,
  OperatorOptions,
  RepinOptions,
  ReplayOptions,
} from './operator/types.js';
export type { Schedules } from './schedules/schedules.js';
export type { CheckOptions, CheckResult, Divergence } from './check/check.js';
export type { FlowMetrics, MetricsRange } from './metrics/flow-metrics.js';
