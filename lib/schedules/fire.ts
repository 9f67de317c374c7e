import type pg from 'pg';
import type { ResolvedOptions } from '../config.js';
import { fromPg, withTransaction } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import type { Store } from '../db/store.js';
import type { Tables } from '../db/tables.js';
import type { NewRun } from '../db/sql/insertRun.js';
import { DurableFlowError } from '../errors.js';
import type { RunHandle, StartOptions } from '../types.js';
import { parseCron } from './cron.js';
import type { CronSchedule } from './cron.js';
import { applyOverlap, dueSlots, planSlots, slotKey, withSkipped } from './slots.js';
import { anyDue, cancelRun, lockDueSchedules, markScheduled, overdueSchedules, updateFired } from './sql.js';
import type { DueSchedule, FiredUpdate } from './sql.js';
import { unregisteredWorkflow } from '../workflow/definition.js';
import { insertRows, newRun } from '../workflow/start.js';
import type { WorkflowDefinition } from '../workflow/definition.js';

/** What the schedules need of their flow (they never import it). */
export interface ScheduleHost {
  pool: pg.Pool;
  tables: Tables;
  /** The flow's store: the firing inserts its runs with it (insertRows), many in one statement. */
  store: Store;
  options: ResolvedOptions;
  clockOffsetMs(): number;
  /** The workflows this process registers: it fires only their schedules. */
  definitions: Map<string, WorkflowDefinition>;
  startRun(definition: WorkflowDefinition, input: unknown, options: StartOptions): Promise<string>;
  /** Resolves once a change subscription being set up is in place (see StartEnv.changesReady). */
  changesReady(): Promise<void>;
  handle(runId: string): RunHandle;
  /** Throws CLOSED once the flow is closed (a method called after close() says so, not "pool ended"). */
  assertOpen(): void;
}

/** Starts a run of `workflow` (registered in this process or not) and returns its id. */
export function startScheduled(host: ScheduleHost, workflow: string, input: unknown, options: StartOptions): Promise<string> {
  return host.startRun(host.definitions.get(workflow) ?? unregisteredWorkflow(workflow, host.options), input, options);
}

/**
 * Schedules one firing locks at most (the next firing takes the rest). Firing alone, 10,000 due at once
 * took 0.8 s in batches of 500, 1.9 s in batches of 100 (1,000: no faster than 500).
 */
export const FIRE_BATCH = 500;

/** One locked schedule's firing, decided: the run to cancel, the runs to start, its row's new state. */
interface Firing {
  schedule: DueSchedule;
  cancel: { id: string; reason: string } | null;
  runs: { row: NewRun; slot: Date }[];
  update: Omit<FiredUpdate, 'lastRunId'>;
}

/**
 * One firing: in one transaction, locks the due schedules no other process is firing, decides their
 * slots (slots.ts), starts a run per slot to start with the idempotency key `schedule:<name>:<slot>`
 * (so a slot a backfill, or another process, already started gets no second run: the runs table's
 * unique index answers the first run), marks the runs with their slot, and moves each schedule's
 * next slot past now. The whole batch is written with a few set statements; should they fail, its
 * schedules are written one by one, and one that fails (its savepoint rolled back) is logged and
 * left due, as is one whose runs could not be prepared (its input, its workflow's options).
 * Returns the number of runs started, and whether the batch was full (more may be due) and fired
 * without a failure (else the next poll goes on).
 */
export async function fireDue(host: ScheduleHost): Promise<{ started: number; full: boolean }> {
  const workflows = [...host.definitions.keys()];
  const offsetMs = host.clockOffsetMs();
  if (workflows.length === 0 || !(await anyDue(fromPg(host.pool), host.tables, { workflows, offsetMs }))) return { started: 0, full: false };
  return withTransaction(host.pool, async (client) => {
    const db = fromPg(client);
    const { now, schedules } = await lockDueSchedules(db, host.tables, { workflows, offsetMs, limit: FIRE_BATCH });
    if (now === null) return { started: 0, full: false }; // none due any more (another process fired them meanwhile)
    const firings: Firing[] = [];
    let failed = 0;
    for (const schedule of schedules) {
      try {
        firings.push(decide(host, schedule, now));
      } catch (error) {
        failed++;
        couldNotFire(host, schedule, error);
      }
    }
    // As startRun in a caller's transaction: the runs' creation must reach a change subscription being set up.
    if (firings.some((firing) => firing.runs.length > 0)) await host.changesReady();
    let started = 0;
    try {
      started = await inSavepoint(db, () => write(host, db, firings));
    } catch (error) {
      host.options.logger.debug?.('A batch of schedules could not be written at once; writing them one by one', { error: (error as Error).message });
      for (const firing of firings) {
        try {
          started += await inSavepoint(db, () => write(host, db, [firing]));
        } catch (error) {
          failed++;
          couldNotFire(host, firing.schedule, error);
        }
      }
    }
    // A schedule that failed is still due: the next batch would lock it again, so more wait for the next poll.
    return { started, full: schedules.length === FIRE_BATCH && failed === 0 };
  });
}

function couldNotFire(host: ScheduleHost, schedule: DueSchedule, error: unknown): void {
  host.options.logger.warn(`Schedule "${schedule.name}" could not fire; it is tried again at the next poll`, { error: (error as Error).message });
}

async function inSavepoint<T>(db: Queryable, fn: () => Promise<T>): Promise<T> {
  await db.query('SAVEPOINT durable_flow_schedule');
  try {
    const result = await fn();
    await db.query('RELEASE SAVEPOINT durable_flow_schedule');
    return result;
  } catch (error) {
    await db.query('ROLLBACK TO SAVEPOINT durable_flow_schedule');
    throw error;
  }
}

/** Parsed crons by zone and expression: most schedules share a few, and parsing one takes longer than deciding its slots. */
const crons = new Map<string, CronSchedule>();
const CRON_CACHE = 1000;

function cachedCron(expression: string, timezone: string): CronSchedule {
  const key = `${timezone} ${expression}`;
  let cron = crons.get(key);
  if (!cron) {
    if (crons.size >= CRON_CACHE) crons.clear();
    cron = parseCron(expression, timezone);
    crons.set(key, cron);
  }
  return cron;
}

/** Decides a schedule's slots and prepares (validates) their runs; writes nothing. */
function decide(host: ScheduleHost, schedule: DueSchedule, now: Date): Firing {
  const cron = cachedCron(schedule.cron, schedule.timezone);
  const due = schedule.nextAt && schedule.nextAt.getTime() <= now.getTime() ? dueSlots(cron, schedule.nextAt, now) : { recent: [], older: null, next: cron.nextAfter(now) };
  const plan = planSlots(due, schedule.catchUp, now);
  const previous = { runId: schedule.lastRunId, active: schedule.lastRun?.active ?? false };
  const overlap = applyOverlap(schedule.overlap, previous, schedule.bufferedSlot, plan.onTime);
  const cancel =
    overlap.cancelPrevious && schedule.lastRun ? { id: schedule.lastRun.id, reason: `Cancelled by schedule "${schedule.name}" (overlap: cancel_other)` } : null;
  const slots = [...plan.catchUp, ...overlap.start].sort((a, b) => a.getTime() - b.getTime());
  const input: unknown = schedule.input === null ? undefined : JSON.parse(schedule.input);
  const definition = host.definitions.get(schedule.workflow) ?? unregisteredWorkflow(schedule.workflow, host.options);
  const runs = slots.map((slot) => ({ slot, row: newRun(definition, input, { idempotencyKey: slotKey(schedule.name, slot) }, host.options.maxPayloadSize) }));
  const update = {
    name: schedule.name,
    nextAt: due.next,
    lastSlot: plan.lastSlot,
    bufferedSlot: overlap.buffered,
    skipped: withSkipped(schedule.skipped, [...plan.skipped, ...overlap.skipped]),
  };
  return { schedule, cancel, runs, update };
}

/**
 * Writes firings: their cancel_other cancels (rare: one by one), then one insert of all their runs,
 * one update marking the runs with their slots, one update of the schedules. Returns the runs started.
 */
async function write(host: ScheduleHost, db: Queryable, firings: Firing[]): Promise<number> {
  for (const { cancel } of firings) {
    if (cancel) await cancelRun(db, host.tables, { ...cancel, offsetMs: host.clockOffsetMs() });
  }
  const rows = firings.flatMap((firing) => firing.runs.map((run) => run.row));
  const inserted = rows.length === 0 ? [] : await insertRows(db, host.store, rows);
  const marks: { runId: string; slot: Date }[] = [];
  const updates: FiredUpdate[] = [];
  let i = 0;
  for (const firing of firings) {
    const runs = firing.runs.map((run) => {
      const result = inserted[i++]!;
      if (result.takenBy !== undefined) throw new DurableFlowError('RUN_ID_CONFLICT', `Run id "${run.row.runId}" already belongs to a run of workflow "${result.takenBy}"`);
      return { runId: result.runId, slot: run.slot };
    });
    marks.push(...runs);
    updates.push({ ...firing.update, lastRunId: runs.at(-1)?.runId ?? null });
  }
  await markScheduled(db, host.tables, marks);
  await updateFired(db, host.tables, updates);
  return marks.length;
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
  #overdueCheckAt = 0;
  /** Overdue schedules this process has named (each once). */
  readonly #warned = new Set<string>();

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
      // 20 polls. (Each batch is its own transaction, so other processes take their share meanwhile.)
      let started = 0;
      for (;;) {
        const batch = await fireDue(this.#host);
        started += batch.started;
        if (!batch.full) break;
      }
      this.#failures = 0;
      await this.#warnOverdue();
      return started;
    } catch (error) {
      if (this.#failures++ % 30 === 0) this.#host.options.logger.warn('Could not fire schedules; retrying at the next poll', { error: (error as Error).message });
      return 0;
    }
  }

  /**
   * At most once a minute: schedules of workflows this process does not register (so it never fires
   * them) whose next slot passed over a minute ago. No process fires them, and nothing else would
   * say so; each is named once per process.
   */
  async #warnOverdue(): Promise<void> {
    const host = this.#host;
    // On the flow's clock (the harness's travel moves it), which is the database's as far as a minute goes.
    const now = Date.now() + host.clockOffsetMs();
    if (now < this.#overdueCheckAt) return;
    this.#overdueCheckAt = now + OVERDUE_CHECK_MS;
    let overdue: Awaited<ReturnType<typeof overdueSchedules>>;
    try {
      overdue = await overdueSchedules(fromPg(host.pool), host.tables, {
        workflows: [...host.definitions.keys()],
        except: [...this.#warned],
        offsetMs: host.clockOffsetMs(),
        graceMs: OVERDUE_GRACE_MS,
        limit: OVERDUE_WARNINGS,
      });
    } catch (error) {
      host.options.logger.debug?.('Could not look for overdue schedules', { error: (error as Error).message });
      return;
    }
    for (const { name, workflow, overdueMs } of overdue) {
      this.#warned.add(name);
      host.options.logger.warn(
        `Schedule "${name}" is overdue by ${roughly(overdueMs)}: no process fires it, and this one does not register its workflow "${workflow}". Register workflow "${workflow}" in a worker process, or pause or delete the schedule.`,
        { schedule: name, workflow, overdueMs: Math.round(overdueMs) },
      );
    }
  }
}

/** How often a process looks for overdue schedules it cannot fire, how late one must be, how many it names at once. */
const OVERDUE_CHECK_MS = 60_000;
const OVERDUE_GRACE_MS = 60_000;
const OVERDUE_WARNINGS = 20;

/** `3 min`, `5 h`, `2 days`. */
function roughly(ms: number): string {
  const minutes = Math.max(1, Math.round(ms / 60_000));
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}
