/**
 * Deferred trigger starts: an event matched a trigger of a workflow whose start needs its code
 * (options.ts, startNeedsCode: singleton, rateLimit, debounce, a concurrency key function, a cancelOn
 * match function). The event's transaction stored a row of durable_flow_trigger_starts (one per event
 * and workflow); here a worker that registers the workflow turns it into a run with start() itself, so
 * start control and key functions apply as to any start, and deletes the row in the same transaction:
 *
 *   BEGIN; lock the oldest pending start of a registered workflow (FOR UPDATE SKIP LOCKED, and only if no
 *   older one of its workflow is pending: the starts of one workflow are made one at a time, in event
 *   order, across processes, so a debounced burst ends with the last event's input); start(payload,
 *   { idempotencyKey: 'event:<event db id>', transaction }); delete the row; COMMIT.
 *
 * Exactly one start per event and workflow: the row goes with the start's commit, and a start repeated
 * after a crash between them (impossible: one transaction) would find its run by the idempotency key.
 * A crash before the commit leaves the row, which the next poll takes. A start that throws (a key
 * function, an input start() refuses) is rolled back and the row's attempts counted with its error;
 * after MAX_ATTEMPTS it is left in the table and logged, and the workflow's later starts go on.
 *
 * Called with the schedules' firing: at every worker's poll and the test harness's drain().
 */
import type pg from 'pg';
import { withTransaction } from '../db/queryable.js';
import { debugPoint } from '../debug-point.js';
import type { Tables } from '../db/tables.js';
import { quoteIdent } from '../db/tables.js';
import type { Logger } from '../config.js';
import type { StartOptions } from '../types.js';
import type { WorkflowDefinition } from '../workflow/definition.js';
import { startNeedsCode } from './options.js';

/** Failed attempts after which a pending start is left alone (in the table, with its error). */
export const MAX_ATTEMPTS = 5;
/** Pending starts one firing makes at most (the next poll takes the rest). */
const FIRE_LIMIT = 200;

export interface DeferredHost {
  pool: pg.Pool;
  tables: Tables;
  definitions: Map<string, WorkflowDefinition>;
  logger: Logger;
  startRun(definition: WorkflowDefinition, input: unknown, options: StartOptions): Promise<string>;
  clockOffsetMs(): number;
}

export function triggerStartsTable(t: Tables): string {
  return `${quoteIdent(t.schema)}.durable_flow_trigger_starts`;
}

export class DeferredStarts {
  readonly #host: DeferredHost;
  #inFlight: Promise<number> | undefined;

  constructor(host: DeferredHost) {
    this.#host = host;
  }

  /** Makes the pending starts of the workflows registered here; returns how many. Never throws. */
  fire(): Promise<number> {
    this.#inFlight ??= this.#fire().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #fire(): Promise<number> {
    const names = [...this.#host.definitions.values()].filter((d) => d.on.length > 0 && startNeedsCode(d)).map((d) => d.name);
    if (names.length === 0) return 0;
    let started = 0;
    try {
      while (started < FIRE_LIMIT) {
        const outcome = await this.#startOne(names);
        if (outcome !== 'started') break;
        started++;
      }
    } catch (error) {
      this.#host.logger.warn('Could not start the runs of event triggers; retrying at the next poll', { error: (error as Error).message });
    }
    return started;
  }

  /**
   * The workflow's `timeout` counts from the event, as a direct trigger start's does (event_triggers.sql:
   * `occurred_at` + `timeout_ms`), not from this start: a start made late (no worker of the workflow for a
   * while) gets the deadline it would have had. Only moves a deadline earlier, and only of a run that has
   * not begun (a singleton's run in progress, a debounce fold into an earlier event's run keep theirs); a
   * deadline already past makes the run due now, and the claim ends it (RUN_TIMEOUT). An event pruned
   * meanwhile leaves the start's own deadline.
   */
  async #deadlineFromEvent(client: pg.ClientBase, runId: string, eventPk: string, timeoutMs: number): Promise<void> {
    const t = this.#host.tables;
    await client.query(
      `UPDATE ${t.runs} r SET deadline_at = e.occurred_at + $3::float8 * interval '1 millisecond', updated_at = clock_timestamp()
       FROM ${t.events} e
       WHERE r.run_id = $1 AND e.id = $2::bigint AND r.started_at IS NULL AND r.status NOT IN ('completed', 'failed', 'cancelled')
         AND (r.deadline_at IS NULL OR r.deadline_at > e.occurred_at + $3::float8 * interval '1 millisecond')`,
      [runId, eventPk, timeoutMs],
    );
  }

  /**
   * The workflow's `cancelOn` applies from the event on, as to a direct trigger start (whose run exists
   * when its own event and every later one is stored, so notify cancels it): the events stored since the
   * trigger's event, itself included, that match one of the run's cancel triggers cancel it now. A run
   * that existed already (a debounce fold, a singleton's skip) saw those events when they came: for it
   * this finds nothing new, or a run already cancelled.
   */
  async #cancelOnSinceEvent(client: pg.ClientBase, runId: string, eventPk: string): Promise<void> {
    const t = this.#host.tables;
    const { rows } = await client.query(
      `SELECT r.id::text AS id, e.name FROM ${t.runs} r
       JOIN ${t.cancelTriggers} c ON c.workflow_run_id = r.id
       JOIN ${t.events} e ON e.name = c.event_name AND e.payload @> c.match AND e.id >= $2::bigint
       WHERE r.run_id = $1 AND r.status NOT IN ('completed', 'failed', 'cancelled')
       ORDER BY e.id LIMIT 1`,
      [runId, eventPk],
    );
    const hit = rows[0] as { id: string; name: string } | undefined;
    if (!hit) return;
    await client.query(`SELECT ${quoteIdent(t.schema)}.durable_flow_cancel(ARRAY[$1::bigint], $2, $3)`, [
      hit.id,
      `Cancelled by event "${hit.name}"`,
      this.#host.clockOffsetMs(),
    ]);
  }

  /** One pending start, in a transaction of its own: 'none' when there is none to take, 'failed' when its start threw. */
  async #startOne(names: string[]): Promise<'started' | 'none' | 'failed'> {
    const table = triggerStartsTable(this.#host.tables);
    let taken: { id: string; workflow_name: string; event_pk: string; attempts: number } | undefined;
    try {
      return await withTransaction(this.#host.pool, async (client) => {
        const { rows } = await client.query(
          `SELECT s.id::text AS id, s.workflow_name, s.workflow_event_id::text AS event_pk, s.payload, s.attempts FROM ${table} s
           WHERE s.workflow_name = ANY($1::text[]) AND s.attempts < $2
             AND NOT EXISTS (SELECT 1 FROM ${table} o WHERE o.workflow_name = s.workflow_name AND o.id < s.id AND o.attempts < $2)
           ORDER BY s.id LIMIT 1 FOR UPDATE SKIP LOCKED`,
          [names, MAX_ATTEMPTS],
        );
        const row = rows[0] as (typeof taken & { payload: unknown }) | undefined;
        if (!row) return 'none';
        taken = row;
        const definition = this.#host.definitions.get(row.workflow_name)!;
        const runId = await this.#host.startRun(definition, row.payload, { idempotencyKey: `event:${row.event_pk}`, transaction: client });
        if (definition.timeoutMs !== undefined) await this.#deadlineFromEvent(client, runId, row.event_pk, definition.timeoutMs);
        if (definition.cancelOn.length > 0) await this.#cancelOnSinceEvent(client, runId, row.event_pk);
        await client.query(`DELETE FROM ${table} WHERE id = $1`, [row.id]);
        await debugPoint('TRIGGER_START_BEFORE_COMMIT', { workflow: row.workflow_name, run: runId });
        return 'started';
      });
    } catch (error) {
      if (!taken) throw error;
      const message = (error as Error)?.message ?? String(error);
      await this.#host.pool.query(`UPDATE ${table} SET attempts = attempts + 1, error = $2 WHERE id = $1`, [taken.id, message]);
      const last = taken.attempts + 1 >= MAX_ATTEMPTS;
      this.#host.logger[last ? 'error' : 'warn'](
        last
          ? `The run of workflow "${taken.workflow_name}" for event ${taken.event_pk} could not be started ${MAX_ATTEMPTS} times; it is left in durable_flow_trigger_starts (reset its attempts to 0 to try again)`
          : `Could not start the run of workflow "${taken.workflow_name}" for event ${taken.event_pk}; retrying at the next poll`,
        { error: message },
      );
      return 'failed';
    }
  }
}
