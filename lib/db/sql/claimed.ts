import type { ClaimedRun, HistoryStep } from '../../workflow/definition.js';

/**
 * A run leased to a worker of this process, as every statement that leases returns it: the claim
 * (`durable_flow_lease`), a start inserted already claimed (insertRuns) and a notify's local claim.
 */
export interface ClaimedRunRow {
  id: string | number;
  run_id: string;
  workflow_name: string;
  input: string | null;
  lease_epoch: string | number;
  claim_count: number;
  attempts: number;
  created_snapshot: string;
  resume_snapshot: string | null;
  parent_run_id: string | null;
  queue_name: string;
  replay: boolean;
  /** flow.pause() was asked for it (absent for a run inserted already claimed: never). */
  pause_requested?: boolean;
  /** Its deadline (`timeout`), epoch ms on the flow's clock; null without one. */
  deadline_ms?: number | string | null;
  /** start()'s trace context (migration 017); null or absent without one. */
  trace_context?: Record<string, string> | null;
}

/** A step of a leased run as `durable_flow_history` returns it: ids as JSON numbers, and its run's. */
export type HistoryRow = Omit<HistoryStep, 'id' | 'waitId'> & { run: string | number; id: string | number; waitId: string | number | null };

/**
 * A worker of this process that a statement leases runs to directly (see worker/local-claim.ts): up
 * to `limit` runs of `queues` and `workflows`, for `leaseTtlMs`.
 */
export interface LeaseTarget {
  owner: string;
  leaseTtlMs: number;
  limit: number;
  queues: string[];
  workflows: string[];
}

/** What a worker executes: leased runs, each with its step history, and the moment they were leased. */
export interface ClaimedBatch {
  runs: ClaimedRun[];
  /** By run (database id): its steps in the order they were created. */
  history: Map<string, HistoryStep[]>;
  /** The snapshot of the leasing transaction (the executions' mark for waits they create). */
  snapshot: string;
  /** The database clock when they were leased (with the flow's clock offset). */
  dbNowMs: number;
}

export const EMPTY_BATCH: ClaimedBatch = Object.freeze({ runs: [], history: new Map(), snapshot: '', dbNowMs: 0 });

export function toClaimedRun(row: ClaimedRunRow): ClaimedRun {
  return {
    id: String(row.id),
    runId: row.run_id,
    workflow: row.workflow_name,
    input: row.input,
    epoch: String(row.lease_epoch),
    claimCount: row.claim_count,
    attempts: row.attempts,
    createdSnapshot: row.created_snapshot,
    resumeSnapshot: row.resume_snapshot ?? row.created_snapshot,
    parentRunId: row.parent_run_id,
    queue: row.queue_name,
    replay: row.replay,
    pauseRequested: row.pause_requested === true,
    deadlineMs: row.deadline_ms === undefined || row.deadline_ms === null ? null : Number(row.deadline_ms),
    traceContext: row.trace_context ?? null,
  };
}

/** The row-to-domain mapping of every leasing statement's answer. */
export function toClaimedBatch(runs: ClaimedRunRow[], steps: HistoryRow[], snapshot: string, dbNowMs: number | string): ClaimedBatch {
  const history = new Map<string, HistoryStep[]>();
  for (const step of steps) {
    const runId = String(step.run);
    const list = history.get(runId) ?? [];
    const { run: _run, ...rest } = step;
    list.push({ ...rest, id: String(step.id), waitId: step.waitId === null ? null : String(step.waitId) });
    history.set(runId, list);
  }
  return { runs: runs.map(toClaimedRun), history, snapshot, dbNowMs: Number(dbNowMs) };
}
