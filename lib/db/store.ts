import type pg from 'pg';
import { runSql } from './queryable.js';
import { toClaimedBatch } from './sql/claimed.js';
import type { ClaimedBatch, ClaimedRunRow, HistoryRow } from './sql/claimed.js';
import { buildSql } from './sql/index.js';
import type { SqlTexts } from './sql/index.js';
import type { Tables } from './tables.js';

/** A run a worker holds, fenced by the epoch of its lease. */
export interface LeasedRun {
  id: string;
  epoch: string;
}

/**
 * The typed boundary to the database for the statements of a run's life outside an execution's
 * writes: each method takes a typed parameter object, runs one named statement of `db/sql/` and maps
 * its rows to the domain. One Store per flow replaces the `{ pool, sql, clockOffsetMs, lockNamespace }`
 * every part used to carry; the flow's clock offset (moved only by the test harness) is applied here.
 */
export class Store {
  readonly pool: pg.Pool;
  readonly tables: Tables;
  readonly statements: SqlTexts;
  readonly #clockOffsetMs: () => number;

  constructor(pool: pg.Pool, tables: Tables, clockOffsetMs: () => number) {
    this.pool = pool;
    this.tables = tables;
    this.statements = buildSql(tables);
    this.#clockOffsetMs = clockOffsetMs;
  }

  /** The namespace of the event-name advisory locks (see tables.ts). */
  get lockNamespace(): number {
    return this.tables.lockNamespace;
  }

  clockOffsetMs(): number {
    return this.#clockOffsetMs();
  }

  /**
   * Leases up to `limit` due runs of `queues` and `workflows` to `owner` for `leaseMs`, with their
   * history (durable_flow_claim), and says when the next one not yet due wakes (ms from now).
   */
  async claim(p: { queues: string[]; workflows: string[]; limit: number; owner: string; leaseMs: number }): Promise<{ batch: ClaimedBatch; nextWakeMs: number | null }> {
    const { rows } = await runSql<{ runs: ClaimedRunRow[]; steps: HistoryRow[]; next_wake_ms: number | null; db_now_ms: number; snapshot: string }>(
      this.pool,
      this.statements.claimRuns,
      [p.queues, p.workflows, p.limit, p.owner, p.leaseMs, this.clockOffsetMs()],
    );
    const answer = rows[0]!;
    return {
      batch: toClaimedBatch(answer.runs, answer.steps, answer.snapshot, answer.db_now_ms),
      nextWakeMs: answer.next_wake_ms === null ? null : Number(answer.next_wake_ms),
    };
  }

  /** Workflows this process does not register whose runs have been due for over a minute in `queues`. */
  async orphanedWorkflows(p: { queues: string[]; workflows: string[] }): Promise<{ workflow: string; runs: number }[]> {
    const { rows } = await runSql<{ workflow_name: string; runs: number }>(this.pool, this.statements.orphanedWorkflows, [
      p.queues,
      p.workflows,
      this.clockOffsetMs(),
    ]);
    return rows.map((row) => ({ workflow: row.workflow_name, runs: row.runs }));
  }

  /** Extends the leases `owner` still holds of `runs`; returns the ids of those it holds (the others are lost). */
  async heartbeat(db: pg.Pool, p: { runs: LeasedRun[]; owner: string; leaseMs: number }): Promise<Set<string>> {
    const { rows } = await runSql<{ id: string | number }>(db, this.statements.heartbeat, [
      JSON.stringify(p.runs.map((run) => ({ id: run.id, epoch: run.epoch }))),
      p.owner,
      p.leaseMs,
      this.clockOffsetMs(),
    ]);
    return new Set(rows.map((row) => String(row.id)));
  }

  /**
   * Hands runs back to the queue, due after `delayMs`; `clean` resets the claim counter (a clean stop),
   * otherwise it is kept so a run that keeps failing this way still ends up failed. Fenced by epoch.
   */
  async releaseRuns(runs: (LeasedRun & { delayMs: number; clean: boolean })[]): Promise<number> {
    const { rows } = await runSql(this.pool, this.statements.releaseRuns, [
      JSON.stringify(runs.map((run) => ({ id: run.id, epoch: run.epoch, delay_ms: run.delayMs, clean: run.clean }))),
      this.clockOffsetMs(),
    ]);
    return rows.length;
  }

  /** Cancels a run that has not finished and the unfinished runs it started; returns how many were cancelled. */
  async cancelRun(p: { runId: string; reason: string }): Promise<number> {
    const { rows } = await runSql<{ cancelled: number }>(this.pool, this.statements.cancelRun, [p.runId, this.clockOffsetMs(), p.reason]);
    return rows[0]!.cancelled;
  }

  /** Puts a failed run back in the queue from its failed step; returns whether it was failed (1) or not (0). */
  async retryRun(p: { runId: string }): Promise<number> {
    const { rows } = await runSql<{ retried: number }>(this.pool, this.statements.retryRun, [p.runId, this.clockOffsetMs()]);
    return rows[0]!.retried;
  }
}
