import { fromPg, withTransaction } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { toDate } from '../duration.js';
import type { TimeInput } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { insertAudit } from '../operator/audit.js';
import type { NewAuditEntry } from '../operator/audit.js';
import { checkOperatorOptions } from '../operator/context.js';
import type { OperatorOptions, RunHandle, ScheduleInfo, ScheduleOptions } from '../types.js';
import { parseCron } from './cron.js';
import { FireLoop, startScheduled } from './fire.js';
import type { ScheduleHost } from './fire.js';
import { checkScheduleName, resolveSchedule } from './options.js';
import type { ScheduleSpec } from './options.js';
import { slotKey } from './slots.js';
import { DeferredStarts } from '../triggers/deferred.js';
import { syncTriggers } from '../triggers/sync.js';
import { dbNow, deleteSchedule, deleteWorkflowSchedules, schedulesTable, listSchedules, lockSchedule, markScheduled, setLastRun, setPaused, upsertSchedule } from './sql.js';

/** backfill() starts at most this many runs in one call. */
export const BACKFILL_LIMIT = 1000;

/**
 * `flow.schedules`: cron schedules managed at runtime, and those of workflows' `schedule` options.
 * Every method works from any process; firing is done by every worker (see fire.ts).
 */
export class Schedules {
  readonly #host: ScheduleHost;
  readonly #loop: FireLoop;
  #synced: Promise<void> | undefined;
  /** The event triggers' pending starts (lib/triggers/deferred.ts), made with the firing. */
  readonly #deferred: DeferredStarts;

  constructor(host: ScheduleHost) {
    this.#host = host;
    this.#loop = new FireLoop(host, () => this.sync(false));
    this.#deferred = new DeferredStarts({ ...host, logger: host.options.logger });
  }

  /**
   * Creates the schedule, or updates the one of that name (its workflow, cron, zone, input and
   * policies; the next slot moves only when the cron or zone changed; `paused` applies on creation).
   */
  async create(name: string, options: ScheduleOptions): Promise<ScheduleInfo> {
    const spec = resolveSchedule(name, options, this.#host.options.maxPayloadSize);
    await this.#upsert([spec]);
    return (await this.get(spec.name))!;
  }

  /** Every schedule, by name: `{ name, workflow, cron, timezone, paused, nextAt, lastRunId, skipped, … }`. */
  async list(): Promise<ScheduleInfo[]> {
    return listSchedules(this.#db(), this.#host.tables);
  }

  /** One schedule, or null. */
  async get(name: string): Promise<ScheduleInfo | null> {
    return (await listSchedules(this.#db(), this.#host.tables, checkScheduleName(name)))[0] ?? null;
  }

  /** Stops firing it; slots that pass while it is paused never fire. Audited (`schedule_pause`). */
  async pause(name: string, options: OperatorOptions = {}): Promise<void> {
    const who = checkOperatorOptions(options);
    await this.#locked(name, async (db, info) => {
      await setPaused(db, this.#host.tables, { name, paused: true });
      await this.#audit(db, { ...who, action: 'schedule_pause', workflow: info.workflow, details: { schedule: name } });
    });
  }

  /** Fires it again from the next slot after now. Audited (`schedule_resume`) when it was paused. */
  async resume(name: string, options: OperatorOptions = {}): Promise<void> {
    const who = checkOperatorOptions(options);
    await this.#locked(name, async (db, info) => {
      if (!info.paused) return;
      const now = await dbNow(db, this.#host.clockOffsetMs());
      const nextAt = parseCron(info.cron, info.timezone).nextAfter(now);
      await setPaused(db, this.#host.tables, { name, paused: false, nextAt });
      await this.#audit(db, { ...who, action: 'schedule_resume', workflow: info.workflow, details: { schedule: name } });
    });
  }

  /** Deletes it (its runs stay). Returns false when there was none. Audited (`schedule_delete`). */
  async delete(name: string, options: OperatorOptions = {}): Promise<boolean> {
    checkScheduleName(name);
    const who = checkOperatorOptions(options);
    this.#host.assertOpen();
    return withTransaction(this.#host.pool, async (client) => {
      const db = fromPg(client);
      const info = await lockSchedule(db, this.#host.tables, name);
      if (!info || !(await deleteSchedule(db, this.#host.tables, name))) return false;
      await this.#audit(db, { ...who, action: 'schedule_delete', workflow: info.workflow, details: { schedule: name, cron: info.cron, timezone: info.timezone } });
      return true;
    });
  }

  /**
   * Starts a run of it now, whatever its overlap policy and even while paused; `scheduledFor` is now.
   * It becomes the schedule's last run (the one `overlap` waits for).
   */
  async trigger(name: string, options: OperatorOptions = {}): Promise<RunHandle> {
    const who = checkOperatorOptions(options);
    const runId = await this.#locked(name, async (db, info, client) => {
      const now = await dbNow(db, this.#host.clockOffsetMs());
      const runId = await startScheduled(this.#host, info.workflow, info.input, { transaction: client });
      await markScheduled(db, this.#host.tables, [{ runId, slot: now }]);
      await setLastRun(db, this.#host.tables, { name, runId });
      await this.#audit(db, { ...who, action: 'schedule_trigger', workflow: info.workflow, runId, details: { schedule: name } });
      return runId;
    });
    return this.#host.handle(runId);
  }

  /**
   * Starts one run per slot in [from, to), not held back by overlap, and returns their handles in slot
   * order. A slot that has a run already (fired, or an earlier backfill) answers that run: running it
   * again starts nothing. At most BACKFILL_LIMIT slots.
   */
  async backfill(name: string, range: { from: TimeInput; to: TimeInput }, options: OperatorOptions = {}): Promise<RunHandle[]> {
    if (typeof range !== 'object' || range === null) throw new DurableFlowError('INVALID_ARGUMENT', 'Expected backfill() to be given { from, to }');
    const who = checkOperatorOptions(options);
    const from = toDate(range.from, 'the backfill `from`');
    const to = toDate(range.to, 'the backfill `to`');
    const runIds = await this.#locked(name, async (db, info, client) => {
      const cron = parseCron(info.cron, info.timezone);
      const slots = cron.between(from, to, BACKFILL_LIMIT + 1);
      if (slots.length > BACKFILL_LIMIT) {
        throw new DurableFlowError('INVALID_ARGUMENT', `Backfill of schedule "${name}" covers more than ${BACKFILL_LIMIT} slots; split [from, to) into smaller ranges`);
      }
      const runs: { runId: string; slot: Date }[] = [];
      for (const slot of slots) {
        runs.push({ runId: await startScheduled(this.#host, info.workflow, info.input, { idempotencyKey: slotKey(name, slot), transaction: client }), slot });
      }
      await markScheduled(db, this.#host.tables, runs);
      await this.#audit(db, {
        ...who, action: 'schedule_backfill', workflow: info.workflow,
        details: { schedule: name, from: from.toISOString(), to: to.toISOString(), runs: runs.length },
      });
      return runs.map((run) => run.runId);
    });
    return runIds.map((runId) => this.#host.handle(runId));
  }


  /** @internal Fires due slots, and makes the event triggers' pending starts (every worker's poll, the harness's drain). Never rejects. */
  async fire(): Promise<number> {
    const [fired] = await Promise.all([this.#loop.fire(), this.#deferred.fire()]);
    return fired;
  }

  /**
   * @internal Creates or updates the schedules of the workflows' `schedule` options, and deletes those
   * of workflows registered here without one (the option was removed from the code; schedules made
   * with create() are never deleted so). On migrate(), and once per flow before its first firing;
   * `force` does it again.
   */
  sync(force: boolean): Promise<void> {
    if (force || !this.#synced) {
      const synced = this.#syncWorkflows();
      this.#synced = synced.catch(() => {
        this.#synced = undefined;
      });
      return synced;
    }
    return this.#synced;
  }

  /** @internal For the test harness's reset(): deletes every schedule, then creates the workflows' again. */
  async reset(): Promise<void> {
    await this.#db().query(`DELETE FROM ${schedulesTable(this.#host.tables)}`);
    await this.sync(true);
  }

  async #syncWorkflows(): Promise<void> {
    const definitions = [...this.#host.definitions.values()];
    // The workflows' `on` options (event triggers) are synced with them: at migrate() and a worker's start.
    const untriggered = await syncTriggers(this.#db(), this.#host.tables, definitions, () => this.#host.store.version);
    for (const name of untriggered) this.#host.options.logger.info?.(`Deleted event triggers of workflow "${name}": no longer in its \`on\` option`);
    await this.#upsert(definitions.flatMap((d) => (d.schedule ? [d.schedule] : [])));
    if (definitions.length === 0) return;
    const removed = await deleteWorkflowSchedules(this.#db(), this.#host.tables, definitions.filter((d) => !d.schedule).map((d) => d.name));
    for (const name of removed) this.#host.options.logger.info?.(`Deleted schedule "${name}": workflow "${name}" no longer has a schedule option`);
  }

  async #upsert(specs: ScheduleSpec[]): Promise<void> {
    if (specs.length === 0) return;
    const db = this.#db();
    const now = await dbNow(db, this.#host.clockOffsetMs());
    for (const spec of specs) await upsertSchedule(db, this.#host.tables, spec, spec.cron.nextAfter(now));
  }

  /** Runs `fn` in a transaction holding the schedule's row lock; an unknown name is SCHEDULE_NOT_FOUND. */
  #locked<T>(name: string, fn: (db: Queryable, info: ScheduleInfo, client: unknown) => Promise<T>): Promise<T> {
    this.#host.assertOpen();
    checkScheduleName(name);
    return withTransaction(this.#host.pool, async (client) => {
      const db = fromPg(client);
      const info = await lockSchedule(db, this.#host.tables, name);
      if (!info) throw new DurableFlowError('SCHEDULE_NOT_FOUND', `No schedule named "${name}"; create it with flow.schedules.create(name, { workflow, cron })`);
      return fn(db, info, client);
    });
  }

  /** An audit entry in the action's transaction (see operator/audit.ts). */
  #audit(db: Queryable, entry: NewAuditEntry): Promise<void> {
    return insertAudit(db, this.#host.tables, this.#host.clockOffsetMs(), [entry]);
  }

  #db(): Queryable {
    this.#host.assertOpen();
    return fromPg(this.#host.pool);
  }
}
