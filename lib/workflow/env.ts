import type { ResolvedOptions } from '../config.js';
import type { CommitRequest, CommitResult } from '../db/sql/commitBatch.js';
import type { Store } from '../db/store.js';
import type { StoredError } from '../errors.js';
import type { RunTags } from '../tags.js';
import type { EventRecord, NotifyOptions } from '../types.js';

/** What an execution needs from the flow that runs it. */
export interface ExecutionEnv {
  store: Store;
  options: ResolvedOptions;
  notify(name: string, payload: unknown, options: NotifyOptions): Promise<EventRecord>;
  /** Starts a run started by this one (step.invoke) with its own `tags` (checked); idempotent on `idempotencyKey`. Returns its id. */
  startChild(workflow: string, input: unknown, idempotencyKey: string, parent: { parentRunId: string; parentStepName: string }, tags: RunTags): Promise<string>;
  /** Stores writes of this execution (batched with other executions of this process). */
  commit(request: CommitRequest): Promise<CommitResult>;
  /** Called once the run's outcome is stored (in this process), for `result()` waiters. */
  onFinished(runId: string, outcome: { status: 'completed' | 'failed'; output?: string; error?: StoredError }): void;
  /** Fault-injection hook for tests; a no-op in production. */
  debugPoint(name: string, data: Record<string, unknown>): Promise<void>;
}

export type ExecutionOutcome =
  | { kind: 'completed' }
  | { kind: 'failed'; error?: unknown }
  | { kind: 'suspended'; wakeAt: number | null }
  | { kind: 'released' }
  | { kind: 'lost' }
  | { kind: 'error'; error: unknown };

/**
 * After an infrastructure error (connection lost, database restarting) an execution hands its run
 * back, due in a second, so another attempt resumes it; if even that fails, the lease expiry does it.
 * The claim counter is kept: a run that keeps failing this way still ends up failed.
 */
export async function handBackAfterError(env: ExecutionEnv, run: { id: string; epoch: string }): Promise<void> {
  try {
    await env.store.releaseRuns([{ id: run.id, epoch: run.epoch, delayMs: 1000, clean: false }]);
  } catch {
    // The lease expires on its own.
  }
}
