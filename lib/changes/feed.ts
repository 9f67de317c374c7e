import { createHash } from 'node:crypto';
import type { Logger } from '../config.js';
import type { PoolGate } from '../db/gate.js';
import type { Tables } from '../db/tables.js';
import type { Listener } from '../worker/listener.js';

export type ChangeType =
  | 'workflow_run.created'
  | 'workflow_run.updated'
  | 'workflow_step.created'
  | 'workflow_step.updated'
  | 'workflow_wait.created'
  | 'workflow_wait.updated'
  | 'workflow_event.created'
  | 'workflow_log.created';

/** A committed change to one of durable-flow's records, from any process. */
export interface Change {
  type: ChangeType;
  /** The run the record belongs to; null for events. */
  runId: string | null;
  workflow: string | null;
  recordId: string;
  /** The record as it is now (read after the change committed). */
  snapshot: Record<string, unknown>;
  /** The snapshot plus type, runId, workflow, recordId and occurredAt. */
  payload: Record<string, unknown>;
  occurredAt: Date;
}

export type ChangeSubscriber = (change: Change) => void | Promise<void>;

/**
 * What the feed reads and writes, on the read side's connections (read/records.ts): the changed
 * records, and `live_until`. Renewing it every few seconds on those connections also keeps one of them
 * open, so the first change after a quiet spell is read back at once.
 */
export interface FeedRecords {
  changedRecords(ids: Record<Letter, string[]>): Promise<Map<string, Record<string, unknown>>>;
  /** Keeps live mode on (`durable_flow_live.live_until`) for at least `windowMs` from now. */
  keepLive(windowMs: number): Promise<void>;
}

const KINDS = { r: 'workflow_run', s: 'workflow_step', w: 'workflow_wait', e: 'workflow_event', l: 'workflow_log' } as const;
type Letter = keyof typeof KINDS;

/** Records whose last delivered change is remembered (to drop repeated notifications), at most. */
const REMEMBERED = 10_000;

/** Keep `live_until` this far ahead, renewed every third of it. */
const LIVE_WINDOW_MS = 30_000;
/** After its last subscriber leaves, the feed keeps listening this long (a new subscriber finds it ready). */
const LINGER_MS = 30_000;
/** The longest this process's writes wait for a first subscription to be in place. */
const MAX_HOLD_MS = 5_000;

interface Pending {
  letter: Letter;
  op: 'created' | 'updated';
  id: string;
}

function rank(item: Pending): number {
  if (item.letter !== 'r') return 1;
  return item.op === 'created' ? 0 : 2;
}

/**
 * Turns the change NOTIFYs of the database triggers into `Change` objects for `flow.onChange`
 * subscribers. The triggers only NOTIFY while some process has asked for live changes (it keeps the
 * one-row `durable_flow_live` table's `live_until` in the future), because every NOTIFY serialises
 * commits on a database-wide lock. Notifications carry ids only; records are read back in batches.
 *
 * States: stopped → starting (LISTEN, live mode on) → listening → lingering (no subscriber, for
 * LINGER_MS) → stopped. While starting, this process's queries wait (the pool gate): a change it
 * commits after `subscribe()` returns is always NOTIFYed to a listening connection. Other processes'
 * changes reach it once `ready()` has resolved.
 */
export class ChangeFeed {
  readonly #gate: PoolGate;
  readonly #records: FeedRecords;
  readonly #tables: Tables;
  readonly #listener: Listener;
  readonly #logger: Logger;
  readonly #subscribers = new Set<ChangeSubscriber>();
  #pending: Pending[] = [];
  #flushScheduled = false;
  #delivering: Promise<void> = Promise.resolve();
  #unlisten: (() => void) | undefined;
  #liveTimer: NodeJS.Timeout | undefined;
  #lingerTimer: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #running = false;
  /** Bumped by every start and stop, so a start overtaken by a stop undoes itself. */
  #generation = 0;
  /** `<letter>:<id>` → a hash of the last change delivered for that record, oldest first. */
  readonly #delivered = new Map<string, string>();

  constructor(gate: PoolGate, records: FeedRecords, tables: Tables, listener: Listener, logger: Logger) {
    this.#gate = gate;
    this.#records = records;
    this.#tables = tables;
    this.#listener = listener;
    this.#logger = logger;
  }

  /** Resolves once change notifications flow (the subscription is in place and live mode is on). */
  ready(): Promise<void> {
    return this.#starting ?? Promise.resolve();
  }

  subscribe(fn: ChangeSubscriber): () => void {
    if (typeof fn !== 'function') throw new TypeError('onChange expects a function');
    this.#subscribers.add(fn);
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    if (!this.#running) {
      this.#running = true;
      const starting = this.#start();
      this.#starting = starting;
      // Hold this process's writes until changes are NOTIFYed and listened to (bounded: a database
      // that does not answer must not stall the app; the subscription then catches up when it can).
      let timer: NodeJS.Timeout | undefined;
      this.#gate.hold(Promise.race([starting, new Promise((resolve) => (timer = setTimeout(resolve, MAX_HOLD_MS)))]).finally(() => clearTimeout(timer)));
    }
    return () => {
      if (!this.#subscribers.delete(fn) || this.#subscribers.size > 0) return;
      this.#lingerTimer = setTimeout(() => {
        this.#lingerTimer = undefined;
        if (this.#subscribers.size === 0) this.#stop();
      }, LINGER_MS);
      this.#lingerTimer.unref();
    };
  }

  async #start(): Promise<void> {
    const generation = ++this.#generation;
    const unlisten = await this.#listener.listen(this.#tables.changesChannel, (payload) => this.#receive(payload));
    if (generation !== this.#generation) return unlisten(); // stopped (and maybe restarted) meanwhile
    this.#unlisten = unlisten;
    await this.#bumpLive();
    if (generation !== this.#generation) return;
    this.#liveTimer = setInterval(() => void this.#bumpLive(), LIVE_WINDOW_MS / 3);
    this.#liveTimer.unref();
  }

  async #bumpLive(): Promise<void> {
    try {
      await this.#records.keepLive(LIVE_WINDOW_MS);
    } catch (error) {
      this.#logger.warn('Could not switch live changes on', { error: (error as Error).message });
    }
  }

  #stop(): void {
    this.#generation++;
    this.#running = false;
    this.#starting = undefined;
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    this.#unlisten?.();
    this.#unlisten = undefined;
    if (this.#liveTimer) clearInterval(this.#liveTimer);
    this.#liveTimer = undefined;
  }

  close(): void {
    this.#subscribers.clear();
    this.#stop();
  }

  #receive(payload: string): void {
    const match = /^([rswel]):([cu]):(\d{1,19})$/.exec(payload);
    if (!match) return; // not ours (someone NOTIFYing our channel by hand): ignore
    this.#pending.push({ letter: match[1] as Letter, op: match[2] === 'c' ? 'created' : 'updated', id: match[3]! });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // One batch at a time: a later batch whose records load faster must not overtake an earlier one.
      setTimeout(() => {
        this.#delivering = this.#delivering.then(() => this.#flush());
      }, 5);
    }
  }

  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    // A batch holds what committed in the last few milliseconds, often one transaction whose NOTIFYs
    // follow statement order (a run's completion before the steps stored with it): deliver a run's
    // creation first and its updates last, the order a reader expects.
    const batch = this.#pending.sort((a, b) => rank(a) - rank(b));
    this.#pending = [];
    if (batch.length === 0 || this.#subscribers.size === 0) return;
    let records: Map<string, Record<string, unknown>>;
    try {
      records = await this.#load(batch);
    } catch (error) {
      this.#logger.warn('Could not read changed records', { error: (error as Error).message });
      return;
    }
    const occurredAt = new Date();
    for (const item of batch) {
      const record = records.get(`${item.letter}:${item.id}`);
      if (!record) continue; // deleted since
      const { __run_id: runId = null, __workflow: workflow = null, ...snapshot } = record as Record<string, unknown> & {
        __run_id?: string | null;
        __workflow?: string | null;
      };
      // A notification repeated (sent again by hand, or a second one read after the record settled)
      // finds what was already delivered: that is no change.
      const key = `${item.letter}:${item.id}`;
      const seen = createHash('sha1').update(`${item.op} ${JSON.stringify(snapshot)}`).digest('base64');
      if (this.#delivered.get(key) === seen) continue;
      this.#delivered.delete(key);
      this.#delivered.set(key, seen);
      if (this.#delivered.size > REMEMBERED) this.#delivered.delete(this.#delivered.keys().next().value!);
      const type = `${KINDS[item.letter]}.${item.op}` as ChangeType;
      const change: Change = {
        type,
        runId: runId as string | null,
        workflow: workflow as string | null,
        recordId: item.id,
        snapshot,
        payload: { ...snapshot, type, runId, workflow, recordId: item.id, occurredAt: occurredAt.toISOString() },
        occurredAt,
      };
      for (const subscriber of this.#subscribers) {
        try {
          const result = subscriber(change);
          if (result && typeof (result as Promise<void>).catch === 'function') {
            (result as Promise<void>).catch((error: unknown) => this.#subscriberFailed(error));
          }
        } catch (error) {
          this.#subscriberFailed(error);
        }
      }
    }
  }

  #subscriberFailed(error: unknown): void {
    this.#logger.warn('An onChange subscriber threw; ignored', { error: (error as Error)?.message ?? String(error) });
  }

  async #load(batch: Pending[]): Promise<Map<string, Record<string, unknown>>> {
    const ids: Record<Letter, string[]> = { r: [], s: [], w: [], e: [], l: [] };
    for (const item of batch) ids[item.letter].push(item.id);
    return this.#records.changedRecords(ids);
  }
}
