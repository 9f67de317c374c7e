// The public types of the operator tools (lib/operator/facade.ts), re-exported by lib/types.ts.
import type { StoredError } from '../errors.js';
import type { TimeInput } from '../duration.js';
import type { RunStatus } from '../run-status.js';

/** What flow.bulk() does to each run its filter selects. */
export type BulkAction = 'cancel' | 'retry' | 'replay';

/** A bulk operation's state: `running` until every selected run is done. */
export type OperationStatus = 'running' | 'completed' | 'failed';

/** Who does an operator action, and why: recorded in the audit trail. */
export interface OperatorOptions {
  /** Who acts (a user name, a service). The viewer passes its signed-in user. Default: none (null). */
  actor?: string;
  /** Why: shown in the audit trail. Default: none (null). */
  reason?: string;
}

/** flow.repin(): which runs pinned to the old version move (default: those of every workflow). */
export interface RepinOptions extends OperatorOptions {
  workflow?: string;
}

/** flow.replay() and flow.rerunFrom(): the new run's input (default: the original run's). */
export interface ReplayOptions extends OperatorOptions {
  input?: unknown;
}

/** The actions the audit trail records. */
export type AuditAction =
  | 'cancel'
  | 'retry'
  | 'replay'
  | 'rerun_from'
  | 'pause'
  | 'resume'
  | 'pause_workflow'
  | 'resume_workflow'
  | 'resolve_wait'
  | 'complete_step'
  | 'bulk'
  | 'schedule_pause'
  | 'schedule_resume'
  | 'schedule_trigger'
  | 'schedule_backfill'
  | 'schedule_delete'
  | 'repin';

/** One entry of the audit trail (flow.audit()). */
export interface AuditEntry {
  id: string;
  /** On the database clock (as the flow sees it). */
  at: Date;
  actor: string | null;
  action: AuditAction;
  workflow: string | null;
  runId: string | null;
  stepName: string | null;
  /** The bulk operation this entry belongs to (its own entry, and one per run it acted on). */
  operationId: string | null;
  reason: string | null;
  /** What the action did beyond its name: the new run of a replay, the status a run had, … */
  details: Record<string, unknown>;
}

/** flow.audit(): which entries, newest first. */
export interface AuditQuery {
  runId?: string;
  workflow?: string;
  operationId?: string;
  action?: AuditAction;
  actor?: string;
  /** Entries before this id (paging: pass the last id of the previous page). */
  before?: string;
  /** Default 100, at most 1000. */
  limit?: number;
}

/** Which runs a bulk operation acts on: every given field must match. */
export interface BulkFilter {
  workflow?: string;
  status?: RunStatus;
  createdAfter?: TimeInput;
  createdBefore?: TimeInput;
  /** The `code` of the run's stored error. */
  errorCode?: string;
}

/** A bulk operation's progress (flow.operation()). */
export interface OperationInfo {
  id: string;
  action: BulkAction;
  status: OperationStatus;
  /** Runs the filter selected when the operation was made. */
  total: number;
  /** Runs acted on so far (including those it could not act on: `failed`). */
  done: number;
  /** Runs the action did not apply to (a retry of a run no longer failed, …). */
  failed: number;
  filter: Record<string, unknown>;
  actor: string | null;
  reason: string | null;
  error: StoredError | null;
  createdAt: Date;
  updatedAt: Date;
  completedAt: Date | null;
}
