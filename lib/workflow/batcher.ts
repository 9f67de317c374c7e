import type pg from 'pg';
import { Batcher } from '../db/batcher.js';
import { runSql } from '../db/queryable.js';
import type { SqlTexts } from '../db/sql/index.js';
import type { StoredError } from '../errors.js';
import type { RunStatus } from '../types.js';
import type { PendingLog, PendingStep } from './writes.js';

/** The run's new state, when a commit also moves it (complete, fail, suspend, hand back). */
export interface Transition {
  status: RunStatus;
  output?: string | undefined;
  error?: StoredError | undefined;
  wakeAt?: string | null;
  wakeNow?: boolean;
}

export interface CommitRequest {
  run: string;
  epoch: string;
  snapshot: string;
  steps: PendingStep[];
  logs: PendingLog[];
  transition?: Transition;
}

export interface CommitResult {
  held: boolean;
  /** [step id, step name] of the steps written. */
  steps: [string, string][];
}

/**
 * The writes of every execution of this process, group-committed (see Batcher): one statement
 * (commitBatch) for all the executions that commit at about the same time, each fenced by its lease.
 */
export class CommitBatcher {
  readonly #batcher: Batcher<CommitRequest, CommitResult>;

  constructor(pool: pg.Pool, sql: SqlTexts, offsetMs: () => number) {
    this.#batcher = new Batcher((requests) => sendCommits(pool, sql, offsetMs(), requests), { maxBatch: 200, maxInFlight: 2 });
  }

  commit(request: CommitRequest): Promise<CommitResult> {
    return this.#batcher.submit(request);
  }
}

/** Sends commit requests as one commitBatch statement (on the pool, or on a transaction's client). */
export async function sendCommits(db: pg.Pool | pg.PoolClient, sql: SqlTexts, offsetMs: number, batch: CommitRequest[]): Promise<CommitResult[]> {
  const requests = [];
  const steps = [];
  const logs = [];
  for (const request of batch) {
    const t = request.transition;
    requests.push({
      run: request.run,
      epoch: request.epoch,
      snapshot: request.snapshot,
      ...(t
        ? { status: t.status, output: t.output ?? null, error: t.error ?? null, wake_at: t.wakeAt ?? null, wake_now: t.wakeNow === true }
        : {}),
    });
    for (const step of request.steps) steps.push({ run: request.run, ...step });
    for (const log of request.logs) logs.push({ run: request.run, ...log });
  }
  const { rows } = await runSql<{ held: (string | number)[]; steps: [string | number, string | number, string][] }>(db, sql.commitBatch, [
    JSON.stringify(requests),
    JSON.stringify(steps),
    JSON.stringify(logs),
    offsetMs,
  ]);
  const held = new Set(rows[0]!.held.map(String));
  const written = new Map<string, [string, string][]>();
  for (const [run, id, name] of rows[0]!.steps) {
    const list = written.get(String(run)) ?? [];
    list.push([String(id), name]);
    written.set(String(run), list);
  }
  return batch.map((request) => ({ held: held.has(request.run), steps: written.get(request.run) ?? [] }));
}
