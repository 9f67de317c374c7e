import type { Store } from '../db/store.js';
import { DurableFlowError } from '../errors.js';
import { MAX_EVENT_ID } from '../events/notify.js';
import { encodeJson } from '../json.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { RunStatus, SignalOptions } from '../types.js';
import { MAX_SIGNAL_NAME, signalStatements } from './sql.js';

/** What flow.signal needs of its flow. */
export interface SignalEnv {
  store: Store;
  maxPayloadSize: number;
  assertOpen(): void;
}

/** Checks a signal before anything is stored; returns its payload as JSON text (`{}` when none is given). */
function validateSignal(runId: unknown, name: unknown, payload: unknown, options: unknown, maxPayloadSize: number): { payload: string; id: string | null } {
  if (typeof runId !== 'string' || runId.length === 0) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected the run id of a signal to be a non-empty string, got ${typeof runId}`);
  }
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_SIGNAL_NAME) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Expected a signal name to be a non-empty string of at most ${MAX_SIGNAL_NAME} characters, got ${typeof name === 'string' ? `a string of ${name.length}` : typeof name}`,
    );
  }
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new DurableFlowError('INVALID_ARGUMENT', 'Expected the options of signal to be an object');
  }
  const id = (options as SignalOptions | undefined)?.id;
  if (id !== undefined && id !== null && (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID)) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected a signal id to be a non-empty string of at most ${MAX_EVENT_ID} characters`);
  }
  encodeJson(name, 'The signal name', maxPayloadSize);
  if (typeof id === 'string') encodeJson(id, 'The signal id', maxPayloadSize);
  const text = encodeJson(payload === undefined ? {} : payload, `The payload of signal "${name.slice(0, 80)}"`, maxPayloadSize)!;
  return { payload: text, id: typeof id === 'string' ? id : null };
}

/**
 * flow.signal: stores a signal for run `runId` and wakes the run if it waits for it. True if the run
 * exists and is not finished (the signal is stored), or if a signal of the same `id` was stored
 * before (nothing is stored again); false otherwise (nothing stored). An `id` already used for this run
 * with another name or payload is SIGNAL_ID_CONFLICT.
 *
 * One transaction, two statements: the run's row lock (FOR NO KEY UPDATE, the lock a suspension's
 * commit takes), then, in a snapshot taken once it is granted, the insert and the wake-up. A
 * suspension that commits first is seen by the second statement (its waits, its status); one that
 * commits after reads the signal itself (see docs/ARCHITECTURE.md, "Signals").
 */
export async function sendSignal(env: SignalEnv, runId: unknown, name: unknown, payload: unknown, options?: SignalOptions): Promise<boolean> {
  env.assertOpen();
  const checked = validateSignal(runId, name, payload, options, env.maxPayloadSize);
  const { store } = env;
  const statements = signalStatements(store.tables);
  return store.transaction(async (db) => {
    const [run] = await db.query<{ id: string; status: RunStatus }>(statements.lockRun, [runId]);
    if (!run) return false;
    const open = !TERMINAL_STATUSES.includes(run.status);
    const [row] = await db.query<{ id: string | null; woken: number; existing_id: string | null; existing_name: string | null; same_payload: boolean | null }>(
      statements.storeSignal,
      [run.id, name, checked.payload, checked.id, store.clockOffsetMs(), open],
    );
    if (row?.existing_id) {
      if (row.existing_name === name && row.same_payload === true) return true;
      const what = row.existing_name === name ? 'another payload' : `the name "${(row.existing_name ?? '').slice(0, 80)}"`;
      throw new DurableFlowError(
        'SIGNAL_ID_CONFLICT',
        `Signal id "${checked.id!.slice(0, 255)}" of run ${runId as string} is already stored with ${what} (signal ${row.existing_id}); an id names one signal: send a redelivery with the same name and payload, or give a different signal its own id`,
      );
    }
    return row?.id !== null && row?.id !== undefined;
  });
}
