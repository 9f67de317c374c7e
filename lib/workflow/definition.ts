import type { ResolvedBackoff } from '../config.js';
import type { CancelOn, StepStatus, WaitStatus, WorkflowHandler } from '../types.js';

/** A registered workflow with its options resolved against the flow's defaults. */
export interface WorkflowDefinition {
  name: string;
  handler: WorkflowHandler<unknown, unknown>;
  retries: number;
  backoff: ResolvedBackoff;
  queue: string;
  priority: number;
  maxRecoveries: number;
  concurrency: { limit: number; key: ((input: any) => string | number) | undefined } | undefined;
  cancelOn: CancelOn[];
}

/** A step as the claim loaded it from the database. */
export interface HistoryStep {
  id: string;
  name: string;
  kind: string;
  status: StepStatus;
  attempts: number;
  position: number | null;
  /** The stored result as JSON text; null when the step stored `undefined` (or has no result). */
  result: string | null;
  error: Record<string, unknown> | null;
  cursor: unknown;
  metadata: Record<string, unknown>;
  snapshot: string | null;
  waitId: string | null;
  waitStatus: WaitStatus | null;
}

/** A run as a worker claimed it. */
export interface ClaimedRun {
  id: string;
  runId: string;
  workflow: string;
  input: string | null;
  epoch: string;
  claimCount: number;
  attempts: number;
  createdSnapshot: string;
  /**
   * The low-water mark of this execution's waits (see docs/ARCHITECTURE.md, "No lost wake-up"): the
   * claim's snapshot after a clean stop, the crashed execution's after a crash.
   */
  resumeSnapshot: string;
  parentRunId: string | null;
  queue: string;
  /** The run executed before (so it may have history to replay). */
  replay: boolean;
}
