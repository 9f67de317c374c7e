import type { ChangeSubscriber } from '../changes/feed.js';
import type { ResolvedOptions } from '../config.js';
import type { Reader } from '../read/reader.js';
import type { Schedules } from '../schedules/schedules.js';
import type { EventRecord, NotifyOptions, OperatorOptions } from '../types.js';
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
  startRun(definition: WorkflowDefinition, input: unknown): Promise<string>;
  /** The Schedules page's buttons (its reads are ViewerReads' `schedules`). */
  readonly schedules: Pick<Schedules, 'pause' | 'resume' | 'trigger'>;
  cancel(runId: string, options?: OperatorOptions): Promise<boolean>;
  retry(runId: string, options?: OperatorOptions): Promise<void>;
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
  | 'csrfKey'
>;
