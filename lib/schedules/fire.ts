import type pg from 'pg';
import type { ResolvedOptions } from '../config.js';
import { fromPg, withTransaction } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import type { Tables } from '../db/tables.js';
import type { RunHandle, StartOptions } from '../types.js';
import { parseCron } from './cron.js';
import { applyOverlap, dueSlots, planSlots, slotKey, withSkipped } from './slots.js';
import { anyDue, cancelRun, lockDueSchedules, markScheduled, updateFired } from './sql.js';
import type { DueSchedule } from './sql.js';
import { unregisteredWorkflow } from '../workflow/definition.js';
import type { WorkflowDefinition } from '../workflow/definition.js';

/** What the schedules need of their flow (they never import it). */
export interface ScheduleHost {
  pool: pg.Pool;
  tables: Tables;
  options: ResolvedOptions;
  clockOffsetMs(): number;
  /** The workflows this process registers: it fires only their schedules. */
  definitions: Map<string, WorkflowDefinition>;
  startRun(definition: WorkflowDefinition, input: unknown, options: StartOptions): Promise<string>;
  handle(runId: string): RunHandle;
  /** Throws CLOSED once the flow is closed (a method called after close() says so, not "pool ended"). */
  assertOpen(): void;
}

/** Starts a run of `workflow` (registered in this process or not) and returns its id. */
export function startScheduled(host: ScheduleHost, workflow: string, input: unknown, options: StartOptions): Promise<string> {
  return host.startRun(host.definitions.get(workflow) ?? unregisteredWorkflow(workflow, host.options), input, options);
}

/** Schedules one firing locks at most (the next firing takes the rest). */
const FIRE_BATCH = 100;

/**
 * One firing: in one transaction, locks the due schedules no other process is firing, decides their
 * slots (slots.ts), starts a run per slot to start with the idempotency key `schedule:<name>:<slot>`
 * (so a slot a backfill, or another process, already started gets no second run: the runs table's
 * unique index answers the first run), marks the runs with their slot, and moves each schedule's
 * next slot past now. A schedule that fails (its savepoint rolled back) is logged and left due.
 * Returns the number of runs started, and whether the batch was full (more may be due).
 */
export async function fireDue(host: ScheduleHost): Promise<{ started: number; full: boolean }> {
  const workflows = [...host.definitions.keys()];
  const offsetMs = host.clockOffsetMs();
  if (workflows.length === 0 || !(await anyDue(fromPg(host.pool), host.tables, { workflows, offsetMs }))) return { started: 0, full: false };
  return withTransaction(host.pool, async (client) => {
    const db = fromPg(client);
    const { now, schedules } = await lockDueSchedules(db, host.tables, { workflows, offsetMs, limit: FIRE_BATCH });
    if (now === null) return { started: 0, full: false }; // none due any more (another process fired them meanwhile)
    let started = 0;
    for (const schedule of schedules) {
      await db.query('SAVEPOINT durable_flow_schedule');
      try {
        started += await fireOne(host, client, db, schedule, now);
        await db.query('RELEASE SAVEPOINT durable_flow_schedule');
      } catch (error) {
        await db.query('ROLLBACK TO SAVEPOINT durable_flow_schedule');
        host.options.logger.warn(`Schedule "${schedule.name}" could not fire; it is tried again at the next poll`, { error: (error as Error).message });
      }
    }
    return { started, full: schedules.length === FIRE_BATCH };
  });
}

async function fireOne(host: ScheduleHost, client: pg.PoolClient, db: Queryable, schedule: DueSchedule, now: Date): Promise<number> {
  const cron = parseCron(schedule.cron, schedule.timezone);
  const due = schedule.nextAt && schedule.nextAt.getTime() <= now.getTime() ? dueSlots(cron, schedule.nextAt, now) : { recent: [], older: null };
  const plan = planSlots(due, schedule.catchUp, now);
  const previous = { runId: schedule.lastRunId, active: schedule.lastRun?.active ?? false };
  const overlap = applyOverlap(schedule.overlap, previous, schedule.bufferedSlot, plan.onTime);
  if (overlap.cancelPrevious && schedule.lastRun) {
    await cancelRun(db, host.tables, { id: schedule.lastRun.id, reason: `Cancelled by schedule "${schedule.name}" (overlap: cancel_other)`, offsetMs: host.clockOffsetMs() });
  }
  const slots = [...plan.catchUp, ...overlap.start].sort((a, b) => a.getTime() - b.getTime());
  const input: unknown = schedule.input === null ? undefined : JSON.parse(schedule.input);
  const runs: { runId: string; slot: Date }[] = [];
  for (const slot of slots) {
    const runId = await startScheduled(host, schedule.workflow, input, { idempotencyKey: slotKey(schedule.name, slot), transaction: client });
    runs.push({ runId, slot });
  }
  await markScheduled(db, host.tables, runs);
  await updateFired(db, host.tables, {
    name: schedule.name,
    nextAt: cron.nextAfter(now),
    lastSlot: plan.lastSlot,
    lastRunId: runs.at(-1)?.runId ?? null,
    bufferedSlot: overlap.buffered,
    skipped: withSkipped(schedule.skipped, [...plan.skipped, ...overlap.skipped]),
  });
  return runs.length;
}

/**
 * Coalesces the firings of a process: a call while one is in flight returns that one. Never rejects
 * (a failure is logged; the next poll tries again).
 */
export class FireLoop {
  readonly #host: ScheduleHost;
  readonly #before: () => Promise<void>;
  #inFlight: Promise<number> | undefined;
  #failures = 0;

  constructor(host: ScheduleHost, before: () => Promise<void>) {
    this.#host = host;
    this.#before = before;
  }

  fire(): Promise<number> {
    this.#inFlight ??= this.#fire().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #fire(): Promise<number> {
    try {
      await this.#before();
      // Batch after batch while they come full: 10,000 schedules due at one minute are not spread over
      // 100 polls. (Each batch is its own transaction, so other processes take their share meanwhile.)
      let started = 0;
      for (;;) {
        const batch = await fireDue(this.#host);
        started += batch.started;
        if (!batch.full) break;
      }
      this.#failures = 0;
      return started;
    } catch (error) {
      if (this.#failures++ % 30 === 0) this.#host.options.logger.warn('Could not fire schedules; retrying at the next poll', { error: (error as Error).message });
      return 0;
    }
  }
}
