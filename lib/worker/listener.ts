import net from 'node:net';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import pgListen from 'pg-listen';
import type { Subscriber } from 'pg-listen';
import type { Logger } from '../config.js';
import { connectsDirectly, poolerError } from '../db/direct.js';

export interface ListenerOptions {
  connection: pg.ClientConfig;
  logger: Logger;
  /** How often the connection is checked (a NOTIFY to itself that must come back within a timeout). Default 10 s. */
  checkIntervalMs?: number;
  /** Longest wait between reconnect attempts. Default 5 s. */
  maxBackoffMs?: number;
  /** Refuse a connection through a pooler (no `directUrl` was given: a LISTEN there would hear nothing). */
  checkSession?: boolean;
}

type Handler = (payload: string) => void;

// pg-listen is CommonJS with an `exports.default`; depending on the loader the function is the default
// import itself or its `default`.
const createSubscriber = ((pgListen as { default?: unknown }).default ?? pgListen) as typeof pgListen.default;

/** One pg-listen subscriber and the sockets its clients opened (so that a half-open one can be destroyed). */
interface Current {
  subscriber: Subscriber;
  sockets: Set<net.Socket>;
  closed: boolean;
}

/**
 * One dedicated connection per flow that LISTENs to durable-flow's channels, through pg-listen.
 *
 * NOTIFY is only ever a hint here: callers poll anyway, and after every reconnect `onReconnect`
 * handlers run so they can catch up on what was missed while the connection was down.
 *
 * pg-listen reconnects a connection that errors or ends and LISTENs again to every channel; it is
 * configured to retry forever with capped exponential backoff (its default gives up after 3 s). What it
 * lacks, this supervisor adds: a timed round-trip check (every `checkIntervalMs` a NOTIFY on a private
 * channel that must arrive back within a timeout) that closes and replaces a frozen or half-open
 * subscriber, retries of the first connect (pg-listen's `connect()` does not retry), bounded waits on
 * every connect, query and close, and the catch-up (`onReconnect`) on every `connected` after the first.
 *
 * States: idle → connecting → listening → (connection lost) → waiting → connecting … → closed.
 */
export class Listener {
  readonly #options: Required<Omit<ListenerOptions, 'logger' | 'connection' | 'checkSession'>> & ListenerOptions;
  /** The longest wait for a connect, a query, a round trip or an end: then the connection counts as dead. */
  readonly #timeoutMs: number;
  /** The private channel of the round-trip check. */
  readonly #pingChannel = `durable_flow_ping_${randomUUID().replaceAll('-', '')}`;
  readonly #pings = new Map<string, (processId: number) => void>();
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #reconnectHandlers = new Set<() => void>();
  #current: Current | undefined;
  #state: 'idle' | 'connecting' | 'listening' | 'waiting' | 'closed' = 'idle';
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  #connecting: Promise<void> | undefined;
  #connectedOnce = false;
  /** Backend pid of the current connection (tests check that a reconnect really is a new one). */
  pid: number | undefined;
  reconnects = 0;

  constructor(options: ListenerOptions) {
    this.#options = { checkIntervalMs: 10_000, maxBackoffMs: 5_000, ...options };
    this.#timeoutMs = Math.min(5000, this.#options.checkIntervalMs);
  }

  get state(): string {
    return this.#state;
  }

  /** Adds a handler for a channel (LISTENing to it if needed). Returns a function that removes it. */
  async listen(channel: string, handler: Handler): Promise<() => void> {
    let set = this.#handlers.get(channel);
    const isNew = !set;
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(handler);
    if (this.#state === 'idle') await this.#connect();
    else if (this.#connecting) await this.#connecting.catch(() => undefined);
    const current = this.#current;
    if (isNew && this.#state === 'listening' && current) {
      await Promise.resolve(current.subscriber.listenTo(channel)).catch(() => this.#replace(current, 'LISTEN failed'));
    }
    return () => {
      set.delete(handler);
    };
  }

  onReconnect(handler: () => void): () => void {
    this.#reconnectHandlers.add(handler);
    return () => this.#reconnectHandlers.delete(handler);
  }

  /** Opens a new subscriber, LISTENs to every channel and checks the round trip once; retried on failure. */
  #connect(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#state = 'connecting';
    const current = this.#open();
    const attempt = (async () => {
      try {
        // Through a pooler in transaction mode a LISTEN would be left on a server connection handed to others.
        if (this.#options.checkSession && !this.#connectedOnce && !(await connectsDirectly(this.#options.connection, this.#timeoutMs))) throw poolerError();
        await current.subscriber.connect();
        for (const channel of [this.#pingChannel, ...this.#handlers.keys()]) await current.subscriber.listenTo(channel);
        if (this.#state === 'closed' || current.closed) {
          await this.#close(current);
          return;
        }
        this.#current = current;
        await this.#connected(current);
      } catch (error) {
        await this.#close(current);
        if (this.#current === current) this.#current = undefined;
        if (!this.#connectedOnce && this.#attempt === 0) {
          this.#options.logger.warn('LISTEN connection failed; workers poll until it is back', { error: (error as Error).message });
        }
        this.#scheduleRetry();
      }
    })();
    this.#connecting = attempt.finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #open(): Current {
    const sockets = new Set<net.Socket>();
    // The subscriber's callbacks read `state.closed`; `current` is the same object once it has one.
    const state = { sockets, closed: false };
    const connection = this.#options.connection;
    const subscriber = createSubscriber(
      {
        ...connection,
        application_name: `${connection.application_name ?? 'durable-flow'}-listen`,
        keepAlive: true,
        connectionTimeoutMillis: this.#timeoutMs,
        query_timeout: this.#timeoutMs,
        // Every socket its clients open is known, so that close() can destroy a half-open one; a
        // subscriber that was closed gets no new connection (pg-listen's reconnect loop may still run).
        stream: () => {
          const socket = new net.Socket();
          if (state.closed) setImmediate(() => socket.destroy(new Error('LISTEN subscriber closed')));
          sockets.add(socket);
          socket.once('close', () => sockets.delete(socket));
          return socket;
        },
      },
      {
        paranoidChecking: false, // its check has no timeout; the round trip below replaces it
        retryLimit: Infinity,
        retryTimeout: 0, // 0: never stop reconnecting
        // Capped exponential backoff. Throwing ends pg-listen's reconnect loop of a closed subscriber.
        retryInterval: (attempt: number) => {
          if (state.closed) throw new Error('LISTEN subscriber closed');
          return Math.min(this.#options.maxBackoffMs, 100 * 2 ** Math.min(attempt, 16));
        },
        parse: (payload: string) => payload,
        serialize: (payload: unknown) => String(payload),
      },
    );
    const current: Current = Object.assign(state, { subscriber });
    const events = subscriber.events;
    events.on('notification', (message) => {
      if (this.#current !== current) return;
      if (message.channel === this.#pingChannel) this.#pings.get(String(message.payload))?.(message.processId);
      else this.#dispatch(message.channel, String(message.payload ?? ''));
    });
    events.on('reconnect', () => {
      if (this.#current !== current || this.#state !== 'listening') return;
      this.pid = undefined;
      this.#state = 'waiting';
      if (this.#checkTimer) clearTimeout(this.#checkTimer);
      this.#options.logger.warn('LISTEN connection lost; reconnecting (workers keep polling meanwhile)');
    });
    // Only after a reconnect inside pg-listen (the first `connected` is awaited in #connect).
    events.on('connected', () => {
      if (this.#current !== current || this.#state !== 'waiting') return;
      this.#connected(current).catch((error: Error) => this.#replace(current, error.message));
    });
    events.on('error', (error) => {
      if (this.#current === current) this.#replace(current, error.message);
    });
    return current;
  }

  /** A (re)connected subscriber: learn its backend pid by a round trip, then catch up after a reconnect. */
  async #connected(current: Current): Promise<void> {
    // A channel first listened to while pg-listen was reconnecting is not among those it re-LISTENs.
    for (const channel of this.#handlers.keys()) await current.subscriber.listenTo(channel);
    this.pid = await this.#roundTrip(current);
    if (this.#current !== current || this.#state === 'closed') return;
    this.#state = 'listening';
    this.#attempt = 0;
    this.#scheduleCheck();
    if (this.#connectedOnce) {
      this.reconnects++;
      for (const handler of this.#reconnectHandlers) this.#safely(handler);
    }
    this.#connectedOnce = true;
  }

  /**
   * NOTIFYs the private channel over the subscriber itself and waits for it to come back; resolves to
   * the backend pid it came from. Rejects after the timeout (a frozen backend or half-open socket).
   */
  async #roundTrip(current: Current): Promise<number> {
    const token = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<number>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no NOTIFY round trip within ${this.#timeoutMs} ms`)), this.#timeoutMs);
        this.#pings.set(token, resolve);
        current.subscriber.notify(this.#pingChannel, token).catch(reject);
      });
    } finally {
      clearTimeout(timer);
      this.#pings.delete(token);
    }
  }

  /** Closes a subscriber that failed and opens a new one (after a backoff). */
  #replace(current: Current, reason: string): void {
    if (this.#current !== current || this.#state === 'closed') return;
    this.#current = undefined;
    this.pid = undefined;
    this.#options.logger.warn('LISTEN connection lost; reconnecting (workers keep polling meanwhile)', { error: reason });
    void this.#close(current);
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#state === 'closed') return;
    this.#state = 'waiting';
    if (this.#checkTimer) clearTimeout(this.#checkTimer);
    const delay = Math.min(this.#options.maxBackoffMs, 100 * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 16);
    this.#retryTimer = setTimeout(() => void this.#connect(), delay);
    this.#retryTimer.unref();
  }

  #scheduleCheck(): void {
    if (this.#checkTimer) clearTimeout(this.#checkTimer);
    this.#checkTimer = setTimeout(() => void this.#check(), this.#options.checkIntervalMs);
    this.#checkTimer.unref();
  }

  /** The round trip on the private channel: catches frozen backends, half-open sockets and a lost LISTEN. */
  async #check(): Promise<void> {
    const current = this.#current;
    if (!current || this.#state !== 'listening') return;
    try {
      await this.#roundTrip(current);
      if (this.#current === current && this.#state === 'listening') this.#scheduleCheck();
    } catch (error) {
      if (this.#current !== current || this.#state !== 'listening') return;
      this.#options.logger.warn('LISTEN connection check failed', { error: (error as Error).message });
      this.#replace(current, (error as Error).message);
    }
  }

  #dispatch(channel: string, payload: string): void {
    const handlers = this.#handlers.get(channel);
    if (!handlers) return;
    for (const handler of handlers) this.#safely(() => handler(payload));
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#options.logger.error('A notification handler threw; ignored', { error: (error as Error).message });
    }
  }

  async close(): Promise<void> {
    this.#state = 'closed';
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#checkTimer) clearTimeout(this.#checkTimer);
    await this.#connecting?.catch(() => undefined);
    const current = this.#current;
    this.#current = undefined;
    this.pid = undefined;
    if (current) await this.#close(current);
  }

  /**
   * Closes a subscriber; when the server does not acknowledge in time (the connection is half-open, so
   * the goodbye goes nowhere), destroys its sockets instead, so that close() never hangs on it.
   */
  async #close(current: Current): Promise<void> {
    current.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.#timeoutMs);
    });
    const outcome = await Promise.race([current.subscriber.close().catch(() => undefined), late]);
    clearTimeout(timer);
    if (outcome === 'late') for (const socket of current.sockets) socket.destroy();
  }
}
