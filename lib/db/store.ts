import type pg from 'pg';
import type { StoredError } from '../errors.js';
import type { RunStatus } from '../types.js';
import { fromPg, withTransaction } from './queryable.js';
import type { Queryable } from './queryable.js';
import type { ClaimedBatch, LeaseTarget } from './sql/claimed.js';
import { claimRuns, orphanedWorkflows } from './sql/claimRuns.js';
import type { ClaimRequest } from './sql/claimRuns.js';
import { commitBatch } from './sql/commitBatch.js';
import { expireRun } from './sql/expireRuns.js';
import type { ExpiredRun } from './sql/expireRuns.js';
import type { CommitRequest, CommitResult } from './sql/commitBatch.js';
import { buildSql } from './sql/index.js';
import type { SqlTexts } from './sql/index.js';
import { notifyEvent, notifyEvents } from './sql/insertEvent.js';
import type { StoredEvent } from './sql/insertEvent.js';
import { findRunsByKeys, insertRuns, mayCollide } from './sql/insertRun.js';
import type { ExistingRun, InsertedRun, NewRun } from './sql/insertRun.js';
import { insertWaits, lockWatchedRuns } from './sql/insertWaits.js';
import type { NewWait, WatchedRun } from './sql/insertWaits.js';
import { lockEventNames } from './sql/lockEventNames.js';
import { resolveWaits, settleGroups, settleWaits } from './sql/resolveWaits.js';
import type { Settlement, WaitState } from './sql/resolveWaits.js';
import { heartbeat } from './sql/heartbeat.js';
import type { LeasedRun } from './sql/heartbeat.js';
import { releaseRuns, suspendRun } from './sql/runTransitions.js';
import type { ReleasedRun } from './sql/runTransitions.js';
import type { Tables } from './tables.js';

export type { LeasedRun } from './sql/heartbeat.js';

/**
 * The typed boundary to the database for the statements of a run's life: each method takes a typed
 * parameter object, runs one named statement of `db/sql/` and returns its rows mapped to the domain
 * (the statement's own file does the mapping). One Store per flow replaces the
 * `{ pool, sql, clockOffsetMs, lockNamespace }` every part used to carry; the flow's clock offset
 * (moved only by the test harness) and the lock namespace are applied here. A method whose statement
 * may run inside a transaction (the caller's, or one of the engine's own) takes the Queryable to run
 * it on first; `db` is the pool's.
 */
export class Store {
  readonly pool: pg.Pool;
  /** The pool, as a Queryable. */
  readonly db: Queryable;
  readonly tables: Tables;
  readonly statements: SqlTexts;
  readonly #clockOffsetMs: () => number;
  /** The flow's version (computed at first use, after the workflows are registered): stored on the runs it starts, given to claims. */
  readonly #version: () => string;

  constructor(pool: pg.Pool, tables: Tables, clockOffsetMs: () => number, version: () => string) {
    this.pool = pool;
    this.db = fromPg(pool);
    this.tables = tables;
    this.statements = buildSql(tables);
    this.#clockOffsetMs = clockOffsetMs;
    this.#version = version;
  }

  /** The flow's version (what the runs it starts store). */
  get version(): string {
    return this.#version();
  }

  /** The flow's clock offset in ms (0 outside the test harness), for the statements of lib/signals/. */
  clockOffsetMs(): number {
    return this.#clockOffsetMs();
  }

  /** Runs `fn` in a transaction on a client of the pool (rolled back if it throws). */
  transaction<T>(fn: (db: Queryable) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, (client) => fn(fromPg(client)));
  }

  /**
   * Leases up to `limit` due runs of `queues` and `workflows` to `owner` for `leaseMs`, with their
   * history (durable_flow_claim), and says when the next one not yet due wakes (ms from now). Runs
   * pinned to a version other than this flow's are left alone.
   */
  claim(p: ClaimRequest): Promise<{ batch: ClaimedBatch; nextWakeMs: number | null }> {
    return claimRuns(this.db, this.statements.claimRuns, { ...p, offsetMs: this.#clockOffsetMs(), version: this.#version() });
  }

  /** Workflows this process does not register whose runs have been due for over a minute in `queues`. */
  orphanedWorkflows(p: { queues: string[]; workflows: string[] }): Promise<{ workflow: string; runs: number }[]> {
    return orphanedWorkflows(this.db, this.statements.orphanedWorkflows, { ...p, offsetMs: this.#clockOffsetMs() });
  }

  /** Extends the leases `owner` still holds of `runs` (on `db`: the heartbeat's own pool); returns the ids of those it holds. */
  heartbeat(db: Queryable, p: { runs: LeasedRun[]; owner: string; leaseMs: number }): Promise<Set<string>> {
    return heartbeat(db, this.statements.heartbeat, { ...p, offsetMs: this.#clockOffsetMs() });
  }

  /**
   * Hands runs back to the queue, due after `delayMs`; `clean` resets the claim counter (a clean stop),
   * otherwise it is kept so a run that keeps failing this way still ends up failed. Fenced by epoch.
   */
  releaseRuns(runs: ReleasedRun[]): Promise<number> {
    return releaseRuns(this.db, this.statements.releaseRuns, { runs, offsetMs: this.#clockOffsetMs() });
  }

  /** Ends run `run` (database id) if its deadline or start-by has passed, whoever holds it: the status it ended in, or null. */
  expireRun(run: string): Promise<ExpiredRun | null> {
    return expireRun(this.db, this.statements.expireRun, { run, offsetMs: this.#clockOffsetMs() });
  }

  /**
   * Creates runs in one statement (a row with an owner already leased to it); returns those it created.
   * Each stores this flow's version (and is pinned to it if its workflow is `versioning: 'pinned'`).
   */
  insertRuns(db: Queryable, runs: NewRun[]): Promise<InsertedRun[]> {
    const statement = mayCollide(runs) ? this.statements.insertRuns : this.statements.insertFreshRuns;
    return insertRuns(db, statement, { runs, offsetMs: this.#clockOffsetMs(), version: this.#version() });
  }

  /** The runs that starts which created nothing collided with: by run id, or by workflow and idempotency key. */
  findRunsByKeys(db: Queryable, p: { runIds: string[]; keys: { workflow: string; idempotencyKey: string }[] }): Promise<ExistingRun[]> {
    return findRunsByKeys(db, this.statements.findRunsByKeys, p);
  }

  /**
   * Stores an event, matches the waits it satisfies and wakes their runs (durable_flow_notify); the
   * ones leased to `claim` come back as `claimed` (EMPTY_BATCH when none). Undefined if it answered nothing.
   */
  notify(
    db: Queryable,
    p: { id: string | null; name: string; payload: string; source: string; claim: LeaseTarget | undefined },
  ): Promise<(StoredEvent & { claimed: ClaimedBatch }) | undefined> {
    return notifyEvent(db, this.statements.notifyEvent, { ...p, lockNamespace: this.tables.lockNamespace, offsetMs: this.#clockOffsetMs(), version: this.#version() });
  }

  /** Stores many events in one statement (durable_flow_notify_many); one answer per event, in order. */
  notifyMany(db: Queryable, p: { events: { id?: string | undefined; name: string; payload: unknown }[]; source: string }): Promise<StoredEvent[]> {
    return notifyEvents(db, this.statements.notifyEvents, { ...p, lockNamespace: this.tables.lockNamespace, offsetMs: this.#clockOffsetMs() });
  }

  /** The writes of many executions in one statement, each fenced by its lease; one result per request. */
  commitBatch(db: Queryable, requests: CommitRequest[]): Promise<CommitResult[]> {
    return commitBatch(db, this.statements.commitBatch, { requests, offsetMs: this.#clockOffsetMs() });
  }

  /** Takes the event-name advisory locks of `names` until the transaction ends. */
  lockEventNames(db: Queryable, names: string[]): Promise<void> {
    return lockEventNames(db, this.statements.lockEventNames, { namespace: this.tables.lockNamespace, names });
  }

  /** Marks the runs `runIds` as watched, locks them and reads their state. */
  lockWatchedRuns(db: Queryable, runIds: string[]): Promise<WatchedRun[]> {
    return lockWatchedRuns(db, this.statements.lockWatchedRuns, { runIds });
  }

  /** Records new waits of run `run` (database id) on its steps of the same names. */
  insertWaits(db: Queryable, p: { run: string; waits: NewWait[] }): Promise<void> {
    return insertWaits(db, this.statements.insertWaits, p);
  }

  /** The waits of run `run` on `stepNames`, locked, each with the event that settles it if any. */
  resolveWaits(db: Queryable, p: { run: string; stepNames: string[] }): Promise<WaitState[]> {
    return resolveWaits(db, this.statements.resolveWaits, { ...p, offsetMs: this.#clockOffsetMs() });
  }

  /** Settles waits and their steps (matched or timed out). */
  settleWaits(db: Queryable, settlements: Settlement[]): Promise<void> {
    return settleWaits(db, this.statements.settleWaits, { settlements, offsetMs: this.#clockOffsetMs() });
  }

  /** Writes the waitAny / waitAll steps `stepIds` from their rows, after settleWaits: the completed ones' results by step id. */
  settleGroups(db: Queryable, stepIds: string[]): Promise<Map<string, string>> {
    return settleGroups(db, this.statements.settleGroups, { stepIds, offsetMs: this.#clockOffsetMs() });
  }

  /** Suspends a run still leased with `epoch` and releases its lease; false when the lease was lost. */
  suspendRun(db: Queryable, p: { run: string; epoch: string; status: RunStatus; wakeAt: string | null; error: StoredError | undefined }): Promise<boolean> {
    return suspendRun(db, this.statements.suspendRun, { ...p, offsetMs: this.#clockOffsetMs() });
  }
}
