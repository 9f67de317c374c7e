import type { ChangeSubscriber } from '../changes/feed.js';
import type { ResolvedOptions } from '../config.js';
import type { Reader } from '../read/reader.js';
import type { FlowMetrics } from '../metrics/flow-metrics.js';
import type { Schedules } from '../schedules/schedules.js';
import type { BulkAction, BulkFilter, EventRecord, NotifyOptions, OperationInfo, OperatorOptions, RepinOptions, ReplayOptions, RunHandle } from '../types.js';
import type { WorkflowDefinition } from '../workflow/definition.js';

/**
 * What the viewer, the event ingest and the live channel need of the flow that mounts them. `DurableFlow`
 * satisfies it; declaring it here lets http/ depend on these few members instead of on the facade
 * (which imports http/ to build the router).
 */
export interface ViewerBackend {
  readonly options: Pick<ResolvedOptions, 'logger' | 'maxPayloadSize'>;
  /** The flow's clock is the database's shifted by this (0 outside the test harness). */
  readonly clockOffsetMs: number;
  /** The workflows registered in this process, by name. */
  readonly definitions: ReadonlyMap<string, WorkflowDefinition>;
  /** The flow's version (its runs of pinned workflows are pinned to it). */
  readonly version: string;
  startRun(definition: WorkflowDefinition, input: unknown): Promise<string>;
  /** `GET <mount>/metrics` and the Metrics page (lib/metrics/). */
  readonly metrics: Pick<FlowMetrics, 'text' | 'contentType' | 'series'>;
  /** The Schedules page's buttons (its reads are ViewerReads' `schedules`). */
  readonly schedules: Pick<Schedules, 'pause' | 'resume' | 'trigger'>;
  cancel(runId: string, options?: OperatorOptions): Promise<boolean>;
  retry(runId: string, options?: OperatorOptions): Promise<void>;
  // The operator tools of the run, Workflows and Audit pages (lib/operator/facade.ts).
  replay(runId: string, options?: ReplayOptions): Promise<RunHandle>;
  rerunFrom(runId: string, stepName: string, options?: ReplayOptions): Promise<RunHandle>;
  pause(runId: string, options?: OperatorOptions): Promise<boolean>;
  resume(runId: string, options?: OperatorOptions): Promise<boolean>;
  pauseWorkflow(name: string, options?: OperatorOptions): Promise<boolean>;
  resumeWorkflow(name: string, options?: OperatorOptions): Promise<boolean>;
  resolveWait(runId: string, stepName: string, payload?: unknown, options?: OperatorOptions): Promise<void>;
  completeStep(runId: string, stepName: string, result?: unknown, options?: OperatorOptions): Promise<void>;
  bulk(action: BulkAction, filter: BulkFilter, options?: OperatorOptions): Promise<{ operationId: string; total: number }>;
  operation(operationId: string): Promise<OperationInfo>;
  repin(fromVersion: string, options?: RepinOptions): Promise<number>;
  notify(name: string, payload?: unknown, options?: NotifyOptions): Promise<EventRecord>;
  /** Stores validated events in one statement and one transaction, all or nothing (signed ingest). */
  notifyMany(events: { name: string; payload: unknown; id?: string | undefined }[], source: string): Promise<EventRecord[]>;
  /** Every committed change, from any process; returns the unsubscribe function. */
  onChange(fn: ChangeSubscriber): () => void;
}

/** The reads the viewer makes: a narrow part of the read side (lib/read/reader.ts). */
export type ViewerReads = Pick<
  Reader,
  | 'timeline'
  | 'listRuns'
  | 'countByStatus'
  | 'workflowStats'
  | 'workflowNames'
  | 'runSummaries'
  | 'eventMatches'
  | 'listEvents'
  | 'eventPayload'
  | 'value'
  | 'schedules'
  | 'audit'
  | 'workflowPauses'
  | 'pinnedElsewhere'
  | 'runWaitDetail'
  | 'failureGroups'
  | 'csrfKey'
  | 'routing'
>;
