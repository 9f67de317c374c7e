/**
 * Start control (issue 16): the `singleton`, `rateLimit` and `debounce` workflow options, decided at
 * start() in one transaction (the caller's, when start() is given one) that first takes an advisory
 * transaction lock per (workflow, option, key). Every start of a key, from any process, so decides
 * after the previous one committed, on the database clock (plus the flow's offset). Workflows without
 * these options never come here: their starts keep the batched fast path (start.ts).
 *
 * Order of decision, for one start:
 *  1. a run id or idempotency key that exists already: that run, nothing else happens (the start was made before);
 *  2. singleton 'skip': a run of the key not finished → its id, no run is made (nothing to rate-limit);
 *  3. rateLimit: `limit` starts of the key accepted in the last `period` → a run cancelled at once with
 *     the code RATE_LIMITED (a singleton in progress is left alone: a flood of refused starts cancels nothing);
 *  4. singleton 'cancel': the runs of the key not finished are cancelled, with their children (durable_flow_cancel);
 *  5. debounce: the run of the key not yet begun (enqueued, not due) takes the input, and is due `period`
 *     from now (at most its first start plus `maxWait`); none → a new run due in `period`.
 */
import type { Queryable } from '../db/queryable.js';
import { queryableFor } from '../db/queryable.js';
import type { NewRun } from '../db/sql/insertRun.js';
import type { Store } from '../db/store.js';
import { nowSql, quoteIdent } from '../db/tables.js';
import { DurableFlowError } from '../errors.js';
import type { StoredError } from '../errors.js';
import type { StartControl, StartKeys } from './start-control-options.js';

/** 'dfsc': the first key of the start-control locks (second key: hashtext of [schema, workflow, option, key] as JSON). */
export const START_CONTROL_LOCK_NAMESPACE = 0x64667363;

/** What a controlled start did. */
export type ControlledOutcome = 'started' | 'existing' | 'skipped' | 'rate_limited' | 'folded';

export interface ControlledStart {
  runId: string;
  outcome: ControlledOutcome;
  /** The run id belongs to a run of another workflow (that workflow's name): nothing was started. */
  takenBy?: string;
}

const TERMINAL = `('completed', 'failed', 'cancelled')`;

/**
 * Creates (or finds, or folds into) the run of a start of a workflow with start control. Outside a
 * caller's transaction, the starts of one process under the same locks also queue in memory and
 * leave together: while one transaction of theirs runs, the next starts wait, then go in one
 * transaction that takes the locks once and decides them one after the other (each sees the ones
 * before it). A burst of one key so waits on one pooled connection rather than taking every one of
 * the pool's (the executions' writes need them), and shares its transactions. A statement that fails
 * fails every start of its transaction (nothing of it is stored).
 */
export function startControlled(store: Store, control: StartControl, row: NewRun, keys: StartKeys, transaction: unknown): Promise<ControlledStart> {
  const run = control.debounce ? { ...row, delayMs: control.debounce.periodMs } : row;
  const names = lockNames(store.tables.schema, run.workflow, keys);
  const work = (db: Queryable) => decide(store, db, control, run, keys);
  if (transaction !== undefined && transaction !== null) {
    const db = queryableFor(store.pool, transaction);
    return lock(db, names).then(() => work(db));
  }
  return inTurn(store, names, work);
}

/** A start waiting for its turn in this process. */
interface Waiting {
  work(db: Queryable): Promise<ControlledStart>;
  resolve(result: ControlledStart): void;
  reject(error: unknown): void;
}

/** The starts waiting, by store and lock names (present while a transaction of those names runs). */
const turns = new WeakMap<Store, Map<string, Waiting[]>>();
/** Starts decided in one transaction at most. */
const TURN_BATCH = 100;

function inTurn(store: Store, names: string[], work: Waiting['work']): Promise<ControlledStart> {
  let queues = turns.get(store);
  if (!queues) turns.set(store, (queues = new Map()));
  const name = names.join('\n');
  return new Promise((resolve, reject) => {
    const waiting = queues.get(name);
    if (waiting) {
      waiting.push({ work, resolve, reject });
      return;
    }
    const queue: Waiting[] = [{ work, resolve, reject }];
    queues.set(name, queue);
    void (async () => {
      while (queue.length > 0) {
        const batch = queue.splice(0, TURN_BATCH);
        try {
          const results = await store.transaction(async (db) => {
            await lock(db, names);
            const decided: ControlledStart[] = [];
            for (const start of batch) decided.push(await start.work(db));
            return decided;
          });
          batch.forEach((start, i) => start.resolve(results[i]!));
        } catch (error) {
          batch.forEach((start) => start.reject(error));
        }
      }
      queues.delete(name);
    })();
  });
}

/** The locks first, in a statement of their own: every later statement reads after the previous holder committed. */
async function lock(db: Queryable, names: string[]): Promise<void> {
  await db.query(
    `SELECT count(pg_advisory_xact_lock($1, k))::int AS n FROM (SELECT DISTINCT hashtext(x) AS k FROM unnest($2::text[]) AS x ORDER BY 1) AS keys`,
    [START_CONTROL_LOCK_NAMESPACE, names],
  );
}

/** The lock names of one start: one per option set (two options with different keys serialise each on its own), per schema. */
function lockNames(schema: string, workflow: string, keys: StartKeys): string[] {
  return (Object.entries(keys) as [string, string | null][]).filter(([, key]) => key !== null).map(([option, key]) => JSON.stringify([schema, workflow, option, key]));
}

/** Decides one start, its key locks held. */
async function decide(store: Store, db: Queryable, control: StartControl, run: NewRun, keys: StartKeys): Promise<ControlledStart> {
  const t = store.tables;
  const offset = store.clockOffsetMs();
  const now = nowSql('$1');
  // A singleton run of the key past its deadline (timeout, or startBy before it began) is over, though no
  // claim may have ended it yet (no worker): end it now (durable_flow_expire, the claim's), so it neither
  // swallows this start ('skip') nor is cancelled instead of timing out ('cancel'). Under the key's lock;
  // durable_flow_expire locks the rows (id descending), then a concurrency key's lock, as the claim does.
  if (keys.singleton !== null) {
    await db.query(
      `SELECT ${quoteIdent(t.schema)}.durable_flow_expire(ARRAY(
         SELECT id FROM ${t.runs} WHERE workflow_name = $3 AND singleton_key = $2 AND status NOT IN ${TERMINAL}
           AND (deadline_at <= ${now} OR (started_at IS NULL AND start_by <= ${now}))), ${now})`,
      [offset, keys.singleton, run.workflow],
    );
  }
  // One read after the lock: a run this start repeats, the key's unfinished singleton runs, the starts accepted in the window.
  const [state] = await db.query<{ existing: ExistingRow[] | null; singleton: { id: string; run_id: string }[] | null; accepted: number }>(
    `SELECT
       (SELECT json_agg(json_build_object('runId', run_id, 'workflow', workflow_name, 'idempotencyKey', idempotency_key)) FROM ${t.runs}
        WHERE run_id = $7 OR (workflow_name = $4 AND idempotency_key = $8)) AS existing,
       (SELECT json_agg(json_build_object('id', id::text, 'run_id', run_id) ORDER BY id DESC) FROM ${t.runs}
        WHERE $2::text IS NOT NULL AND workflow_name = $4 AND singleton_key = $2 AND status NOT IN ${TERMINAL}) AS singleton,
       (SELECT count(*)::int FROM (
          SELECT 1 FROM ${t.runs}
          WHERE $3::text IS NOT NULL AND workflow_name = $4 AND rate_limit_key = $3 AND admitted_at IS NOT NULL
            AND admitted_at > ${now} - $5::float8 * interval '1 millisecond'
          LIMIT $6) AS s) AS accepted`,
    [offset, keys.singleton, keys.rateLimit, run.workflow, control.rateLimit?.periodMs ?? 0, control.rateLimit?.limit ?? 0, run.runId, run.idempotencyKey],
  );
  const existing = resolveExisting(run, state!.existing ?? []);
  if (existing) return existing;
  const active = state!.singleton ?? [];
  if (control.singleton?.mode === 'skip' && active.length > 0) return { runId: active[0]!.run_id, outcome: 'skipped' };

  if (control.rateLimit && state!.accepted >= control.rateLimit.limit) {
    const inserted = await insertOne(store, db, run);
    if (inserted) return inserted;
    const { limit, periodMs } = control.rateLimit;
    const error: StoredError = {
      class: 'RunCancelled',
      code: 'RATE_LIMITED',
      message: `Rate limited: workflow "${run.workflow}"${keys.rateLimit ? ` (key "${keys.rateLimit}")` : ''} accepts ${limit} start${limit === 1 ? '' : 's'} per ${periodMs} ms (its rateLimit option), and ${limit} were accepted in the last ${periodMs} ms; this run was cancelled without running`,
    };
    await db.query(
      `UPDATE ${t.runs} SET status = 'cancelled', cancelled_at = ${now}, wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
         rate_limit_key = $3, singleton_key = $4, error = $5::jsonb, updated_at = clock_timestamp()
       WHERE run_id = $2`,
      [offset, run.runId, keys.rateLimit, keys.singleton, JSON.stringify(error)],
    );
    return { runId: run.runId, outcome: 'rate_limited' };
  }

  if (control.singleton?.mode === 'cancel' && active.length > 0) {
    const reason = `Cancelled by a new start of singleton workflow "${run.workflow}"${keys.singleton ? ` (key "${keys.singleton}")` : ''}: run ${run.runId}`;
    await db.query(`SELECT ${quoteIdent(t.schema)}.durable_flow_cancel($1::bigint[], $2, $3) AS n`, [active.map((a) => a.id), reason, offset]);
  }

  if (control.debounce) {
    const folded = await fold(store, db, run, keys.debounce!);
    if (folded) return { runId: folded, outcome: 'folded' };
  }

  const inserted = await insertOne(store, db, run);
  if (inserted) return inserted;
  await db.query(
    `UPDATE ${t.runs} SET singleton_key = $3, rate_limit_key = $4, admitted_at = CASE WHEN $4::text IS NOT NULL THEN ${now} END,
       debounce_key = $5, debounce_deadline = ${now} + $6::float8 * interval '1 millisecond'
     WHERE run_id = $2`,
    [offset, run.runId, keys.singleton, keys.rateLimit, keys.debounce, control.debounce?.maxWaitMs ?? null],
  );
  return { runId: run.runId, outcome: 'started' };
}

interface ExistingRow {
  runId: string;
  workflow: string;
  idempotencyKey: string | null;
}

/** The run a repeated run id or idempotency key points to (an idempotency key wins), as insertRows resolves a collision. */
function resolveExisting(run: NewRun, existing: ExistingRow[]): ControlledStart | undefined {
  const match = (run.idempotencyKey ? existing.find((e) => e.workflow === run.workflow && e.idempotencyKey === run.idempotencyKey) : undefined) ?? existing.find((e) => e.runId === run.runId);
  if (!match) return undefined;
  return match.workflow === run.workflow ? { runId: match.runId, outcome: 'existing' } : { runId: match.runId, outcome: 'existing', takenBy: match.workflow };
}

/** Inserts the run; undefined when it was inserted, else the run it collided with (a start of the same id without the same keys). */
async function insertOne(store: Store, db: Queryable, run: NewRun): Promise<ControlledStart | undefined> {
  const created = await store.insertRuns(db, [run]);
  if (created.some((c) => c.runId === run.runId && c.workflow === run.workflow)) return undefined;
  const keys = run.idempotencyKey === null ? [] : [{ workflow: run.workflow, idempotencyKey: run.idempotencyKey }];
  const existing = resolveExisting(run, await store.findRunsByKeys(db, { runIds: [run.runId], keys }));
  if (!existing) throw new DurableFlowError('INVALID_STATE', `Starting workflow "${run.workflow}" collided with a run that no longer exists; try again`);
  return existing;
}

/**
 * Folds the start into the debounced run of its key that has not begun (status enqueued, not due yet:
 * a claim takes only due runs, and one that locked the row first leaves it `running`, so the
 * re-checked condition fails and a new run is made). Its input and what is computed from the input
 * (concurrency and throttle keys, cancelOn matches) and its tags become this start's; it is due `period` from now, at
 * most at its deadline. A run its throttle holds back (throttle_waiting), one waiting for a concurrency
 * slot (concurrency_waiting) or set aside by a pause (held_wake_at) was due already: its burst is over
 * (the last two have no wake_at, unless a `timeout` clamps it to the deadline, deadlines.sql: so they are
 * named here, not left to `wake_at > now`). Returns its run id, or undefined when there is none.
 */
async function fold(store: Store, db: Queryable, run: NewRun, key: string): Promise<string | undefined> {
  const t = store.tables;
  const offset = store.clockOffsetMs();
  const now = nowSql('$1');
  const rows = await db.query<{ id: string; run_id: string }>(
    `UPDATE ${t.runs} r SET input = $4::jsonb, concurrency_key = $5, concurrency_limit = $6, throttle_key = $8, tags = $9::jsonb,
       wake_at = CASE WHEN r.debounce_deadline IS NULL THEN ${now} + $7::float8 * interval '1 millisecond'
                      ELSE least(${now} + $7::float8 * interval '1 millisecond', r.debounce_deadline) END,
       updated_at = clock_timestamp()
     WHERE r.id = (SELECT id FROM ${t.runs} WHERE workflow_name = $2 AND debounce_key = $3 AND status = 'enqueued' AND wake_at > ${now}
                     AND NOT throttle_waiting AND NOT concurrency_waiting AND held_wake_at IS NULL
                   ORDER BY id DESC LIMIT 1)
       AND r.status = 'enqueued' AND r.wake_at > ${now} AND NOT r.throttle_waiting AND NOT r.concurrency_waiting AND r.held_wake_at IS NULL
     RETURNING r.id::text AS id, r.run_id`,
    [offset, run.workflow, key, run.input, run.concurrencyKey, run.concurrencyLimit, run.delayMs, run.throttleKey ?? null, JSON.stringify(run.tags ?? {})],
  );
  const target = rows[0];
  if (!target) return undefined;
  // A workflow's cancelOn list is fixed, so a run has triggers exactly when this start has some.
  if (run.triggers.length > 0) {
    await db.query(`DELETE FROM ${t.cancelTriggers} WHERE workflow_run_id = $1`, [target.id]);
    await db.query(
      `INSERT INTO ${t.cancelTriggers} (workflow_run_id, event_name, match)
       SELECT DISTINCT $1::bigint, tr.event, tr.match FROM jsonb_to_recordset($2::jsonb) AS tr(event text, match jsonb)`,
      [target.id, JSON.stringify(run.triggers)],
    );
  }
  return target.run_id;
}
