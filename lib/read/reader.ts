import { randomBytes } from 'node:crypto';
import type { StoredError } from '../errors.js';
import type { RunInfo, RunStatus } from '../types.js';
import type { Outcome } from '../workflow/results.js';
import { listAuditEntries, listWorkflowPauses } from './audit.js';
import type { AuditFilter, AuditPage } from './audit.js';
import type { TimelineLimits } from './bounded.js';
import { pgCode } from './db.js';
import type { ReadDb } from './db.js';
import { eventMatches, eventPayload, listEvents } from './events.js';
import { failureGroups } from './failures.js';
import type { FailureGroups } from './failures.js';
import { RunLists } from './lists.js';
import type { RunFilter, RunPage, RunScope } from './lists.js';
import { getRunRow, loadTimeline, toRunInfo } from './timeline.js';
import type { Timeline } from './timeline.js';
import { listScheduleViews } from './schedules.js';
import type { ScheduleView } from './schedules.js';
import { readValue } from './values.js';
import type { ReadRouting } from './replica.js';
import { pinnedElsewhere } from './versions.js';
import { runWaitDetail } from './waiting.js';
import type { RunWaitDetail } from './waiting.js';
import type { PinnedGroup } from './versions.js';
import type { ValuePath } from './values.js';

/**
 * The read side: every read of durable-flow's records that is not an execution's (getRun, timeline,
 * result() polls, the viewer's pages, the live feed's read-backs), on the viewer's connections (a
 * Sequelize instance of durable-flow's own, statements bounded to 10 s) through the models, with SQL
 * where the models cannot say it. The engine's hot path (claims, commits, notify) stays raw SQL on
 * the engine's pool (lib/db/store.ts), for the reasons the benchmark shows.
 */
export class Reader {
  readonly #db: ReadDb;
  readonly #primary: ReadDb;
  readonly #lists: RunLists;
  /** Where the viewer's requests read (the replica of `viewerDatabaseUrl` when fresh enough, see replica.ts). */
  readonly routing: ReadRouting;
  #csrfKey: Promise<string> | undefined;

  constructor(db: ReadDb, sides: { primary: ReadDb; routing: ReadRouting }) {
    this.#db = db;
    this.#primary = sides.primary;
    this.routing = sides.routing;
    this.#lists = new RunLists(db);
  }

  /** The run with this id, or null. */
  async run(runId: string): Promise<RunInfo | null> {
    const row = await getRunRow(this.#db, runId);
    return row ? toRunInfo(row) : null;
  }

  /** The run with its steps, waits, events and logs (bounded for display with `limits`); null if there is no such run. */
  timeline(runId: string, limits?: TimelineLimits): Promise<Timeline | null> {
    return loadTimeline(this.#db, runId, limits);
  }

  /**
   * The outcomes of those of `runIds` that finished, and of those that do not exist. One statement for
   * every awaited run, answering only those two kinds (a poll with thousands of runs still executing
   * reads back nothing for them): SQL rather than the models, since it is polled every 20 ms.
   */
  async finishedRuns(runIds: string[]): Promise<{ runId: string; outcome: Outcome }[]> {
    const rows = await this.#db.select<{ run_id: string; status: RunStatus | null; output: string | null; error: StoredError | null }>(
      `SELECT ids.run_id, r.status, r.output::text AS output, r.error
       FROM unnest($1::text[]) AS ids(run_id)
       LEFT JOIN ${this.#db.tables.runs} r ON r.run_id = ids.run_id
       WHERE r.id IS NULL OR r.status IN ('completed', 'failed', 'cancelled')`,
      [runIds],
    );
    return rows.map(({ run_id: runId, status, output, error }) => {
      if (status === null) return { runId, outcome: { status: 'missing' } };
      if (status === 'completed') return { runId, outcome: { status, ...(output === null ? {} : { output }) } };
      if (status === 'failed') return { runId, outcome: { status, ...(error ? { error } : {}) } };
      return { runId, outcome: { status: 'cancelled', ...(error ? { error } : {}) } };
    });
  }

  listRuns(filter: RunFilter): Promise<RunPage> {
    return this.#lists.listRuns(filter);
  }

  countByStatus(workflow: string | null, scope?: RunScope): Promise<Record<string, number>> {
    return this.#lists.countByStatus(workflow, scope);
  }

  workflowStats(): Promise<Map<string, Record<string, number>>> {
    return this.#lists.workflowStats();
  }

  workflowNames(): Promise<string[]> {
    return this.#lists.workflowNames();
  }

  runSummaries(runIds: string[]): Promise<Map<string, { workflow: string; status: RunStatus }>> {
    return this.#lists.runSummaries(runIds);
  }

  eventMatches(id: string): ReturnType<typeof eventMatches> {
    return eventMatches(this.#db, id);
  }

  listEvents(filter: { name: string | null; beforeId: string | null; limit: number }, limits: { valueBytes: number; previewChars: number }): ReturnType<typeof listEvents> {
    return listEvents(this.#db, filter, limits);
  }

  eventPayload(id: string): Promise<string | null> {
    return eventPayload(this.#db, id);
  }

  /** Every schedule by name, each with its `recent` newest runs by slot (the viewer's Schedules page). */
  schedules(recent: number): Promise<ScheduleView[]> {
    return listScheduleViews(this.#db, recent);
  }

  /** The audit trail, newest first, a page at a time (the run page's entries, the Audit page). */
  audit(filter: AuditFilter): Promise<AuditPage> {
    return listAuditEntries(this.#db, filter);
  }

  /** The paused workflows by name (the Workflows page's badges). */
  workflowPauses(): ReturnType<typeof listWorkflowPauses> {
    return listWorkflowPauses(this.#db);
  }

  /** Runs not finished pinned to a version other than `version`, by version and workflow (the Workflows page). */
  /** Why one run waits, from its columns, with its concurrency key's counts when it is parked (null: no such run). */
  runWaitDetail(runId: string): Promise<RunWaitDetail | null> {
    return runWaitDetail(this.#db, runId);
  }

  pinnedElsewhere(version: string): Promise<PinnedGroup[]> {
    return pinnedElsewhere(this.#db, version);
  }

  /** Failed runs grouped by error code, newest group first (of one workflow when given). */
  failureGroups(workflow: string | null): Promise<FailureGroups> {
    return failureGroups(this.#db, workflow);
  }

  /** The whole text of one value of a run (see values.ts), or null. */
  value(runId: string, path: ValuePath): Promise<string | null> {
    return readValue(this.#db, runId, path);
  }

  /**
   * The key of the viewer's CSRF tokens, read once (and again after a failed read). It lives in the
   * database so that every web process signs alike; a deleted row is made anew (a key rotation).
   */
  csrfKey(): Promise<string> {
    this.#csrfKey ??= this.#readCsrfKey().catch((error: unknown) => {
      this.#csrfKey = undefined;
      throw error;
    });
    return this.#csrfKey;
  }

  async #readCsrfKey(): Promise<string> {
    // On the primary: it may write the key (and the one key every web process signs with is there).
    const { Secret } = this.#primary.models;
    const read = async () => (await Secret.findByPk('viewer_csrf'))?.get('value') as string | undefined;
    let key: string | undefined;
    try {
      key = await read();
    } catch (error) {
      if (pgCode(error) === '42P01') {
        throw new Error('durable-flow: the viewer needs migration 003 (its CSRF key table): run `await flow.migrate()` at start-up', { cause: error });
      }
      throw error;
    }
    if (key) return key;
    // Two processes may make one at once: the first stored wins, and both read it back.
    await Secret.bulkCreate([{ name: 'viewer_csrf', value: randomBytes(32).toString('hex') }], { ignoreDuplicates: true });
    return (await read())!;
  }
}
