import { EMPTY_BATCH } from '../db/sql/claimed.js';
import type { ClaimedBatch } from '../db/sql/claimed.js';
import type { Store } from '../db/store.js';
import { queryableFor } from '../db/queryable.js';
import type { Queryable } from '../db/queryable.js';
import { debugPoint } from '../debug-point.js';
import { DurableFlowError } from '../errors.js';
import { encodeJson } from '../json.js';
import type { EventRecord, NotifyOptions } from '../types.js';
import type { LocalClaim } from '../worker/local-claim.js';

export const MAX_EVENT_NAME = 255;
export const MAX_EVENT_ID = 255;

export interface NotifyEnv {
  store: Store;
  maxPayloadSize: number;
  /** Slots on a worker of this process that takes woken runs directly, if one has free slots. */
  localClaim?(): LocalClaim | undefined;
  /** Resolves once a change subscription being set up is in place (see StartEnv.changesReady). */
  changesReady?(): Promise<void>;
}

/** Checks an event before anything is stored: a bad one is refused whole. Returns the payload as JSON text. */
export function validateEvent(name: unknown, payload: unknown, id: unknown, maxPayloadSize: number): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_EVENT_NAME) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Expected an event name to be a non-empty string of at most ${MAX_EVENT_NAME} characters, got ${typeof name === 'string' ? `a string of ${name.length}` : typeof name}`,
    );
  }
  if (id !== undefined && id !== null && (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID)) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected an event id to be a non-empty string of at most ${MAX_EVENT_ID} characters`);
  }
  encodeJson(name, 'The event name', maxPayloadSize);
  if (typeof id === 'string') encodeJson(id, 'The event id', maxPayloadSize);
  return encodeJson(payload === undefined ? {} : payload, `The payload of event "${name.slice(0, 80)}"`, maxPayloadSize)!;
}

/**
 * Records an event and, in the same transaction, matches every pending wait it satisfies and makes
 * their runs due. Inside the caller's transaction when one is given (nothing is woken unless it
 * commits); otherwise in a transaction of its own.
 */
export async function notify(env: NotifyEnv, name: unknown, payload: unknown, options: NotifyOptions = {}): Promise<EventRecord> {
  if (typeof options !== 'object' || options === null) {
    throw new DurableFlowError('INVALID_ARGUMENT', 'Expected the options of notify to be an object');
  }
  const payloadText = validateEvent(name, payload, options.id, env.maxPayloadSize);
  // One statement: atomic on its own, or part of the caller's transaction when one is given (then the
  // runs are woken by NOTIFY at its commit, never taken directly: we cannot tell when it commits).
  const inTransaction = options.transaction !== undefined && options.transaction !== null;
  if (inTransaction) await env.changesReady?.();
  const taker = inTransaction ? undefined : env.localClaim?.();
  let claimed: ClaimedBatch = EMPTY_BATCH;
  try {
    const stored = await storeEvent(env.store, queryableFor(env.store.pool, options.transaction), name as string, payloadText, options, taker);
    claimed = stored.claimed;
    // The event is stored (committed, unless inside the caller's transaction); the caller not told yet.
    await debugPoint('NOTIFY_AFTER_COMMIT', { runId: options.source?.startsWith('run:') ? options.source.slice(4) : undefined });
    return stored.event;
  } finally {
    taker?.take(claimed);
  }
}

/**
 * A used event id with other content: a redelivery must be the same event, so this is a sender's bug
 * (or two senders sharing ids) that silently dropping would hide. Nothing was stored or woken.
 */
function eventIdConflict(id: string, stored: EventRecord, name: string): DurableFlowError {
  const what = stored.name === name ? 'another payload' : `the name "${stored.name.slice(0, 80)}"`;
  return new DurableFlowError(
    'EVENT_ID_CONFLICT',
    `Event id "${id.slice(0, 255)}" is already stored with ${what} (event ${stored.id}); an id names one event: send a redelivery with the same name and payload, or give a different event its own id`,
  );
}

/**
 * Stores already validated events in one statement, all or nothing: a used id with other content
 * fails the whole batch with EVENT_ID_CONFLICT (the statement's transaction stored nothing then).
 */
export async function notifyMany(
  store: Store,
  events: { name: string; payload: unknown; id?: string | undefined }[],
  source: string,
): Promise<EventRecord[]> {
  return store.transaction(async (db) => {
    const stored = await store.notifyMany(db, { events, source });
    return stored.map(({ event, conflict }, i) => {
      if (conflict) throw eventIdConflict(events[i]!.id!, event, events[i]!.name);
      return event;
    });
  });
}

async function storeEvent(
  store: Store,
  db: Queryable,
  name: string,
  payloadText: string,
  options: NotifyOptions,
  taker: LocalClaim | undefined,
): Promise<{ event: EventRecord; claimed: ClaimedBatch }> {
  const stored = await store.notify(db, { id: options.id ?? null, name, payload: payloadText, source: options.source ?? 'notify', claim: taker });
  if (!stored) throw new DurableFlowError('INVALID_STATE', `Storing event "${name}" returned nothing; try again`);
  if (stored.conflict) throw eventIdConflict(options.id!, stored.event, name);
  return stored;
}
