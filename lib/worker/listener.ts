import pg from 'pg';
import type { Logger } from '../config.js';

export interface ListenerOptions {
  connection: pg.ClientConfig;
  logger: Logger;
  /** How often the connection is checked (a query with a timeout, and that our channels are still listened to). Default 10 s. */
  checkIntervalMs?: number;
  /** Longest wait between reconnect attempts. Default 5 s. */
  maxBackoffMs?: number;
}

type Handler = (payload: string) => void;

/**
 * One dedicated connection per flow that LISTENs to durable-flow's channels.
 *
 * NOTIFY is only ever a hint here: callers poll anyway, and after every reconnect `onReconnect`
 * handlers run so they can catch up on what was missed while the connection was down.
 *
 * States: idle → connecting → listening → (connection lost) → waiting → connecting … → closed.
 * It never gives up reconnecting (a database that is down for a minute must not leave workers deaf
 * for good), checks the connection with a timed query so a half-open socket is noticed, never opens
 * a transaction, and ignores notifications it cannot use.
 *
 * pg-listen was the first choice, but its 1.7.0 gives up after 3 s, does not re-issue LISTEN after a
 * reconnect and only checks the connection every 30 s; this is the small part of it we need, fixed.
 */
export class Listener {
  readonly #options: Required<Omit<ListenerOptions, 'logger' | 'connection'>> & ListenerOptions;
  /** The longest wait for a connect, a query or an end on the connection: then it counts as dead. */
  readonly #timeoutMs: number;
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #reconnectHandlers = new Set<() => void>();
  #client: pg.Client | undefined;
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
    if (isNew && this.#state === 'listening' && this.#client) {
      await this.#client.query(`LISTEN ${pg.escapeIdentifier(channel)}`).catch(() => this.#lost());
    }
    return () => {
      set.delete(handler);
    };
  }

  onReconnect(handler: () => void): () => void {
    this.#reconnectHandlers.add(handler);
    return () => this.#reconnectHandlers.delete(handler);
  }

  #connect(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    this.#state = 'connecting';
    const attempt = (async () => {
      // Every wait is bounded: a connect into a partitioned network, or a LISTEN on a connection that
      // went silent, must fail and be retried rather than leave the listener connecting forever.
      const client = new pg.Client({
        ...this.#options.connection,
        application_name: `${this.#options.connection.application_name ?? 'durable-flow'}-listen`,
        keepAlive: true,
        connectionTimeoutMillis: this.#timeoutMs,
        query_timeout: this.#timeoutMs,
      });
      client.on('error', () => this.#lost(client));
      client.on('end', () => this.#lost(client));
      client.on('notification', (message) => this.#dispatch(message));
      try {
        await client.connect();
        for (const channel of this.#handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        if (this.#state === 'closed') {
          await this.#end(client);
          return;
        }
        this.#client = client;
        this.pid = rows[0]?.pid;
        this.#state = 'listening';
        this.#attempt = 0;
        this.#scheduleCheck();
        if (this.#connectedOnce) {
          this.reconnects++;
          for (const handler of this.#reconnectHandlers) this.#safely(handler);
        }
        this.#connectedOnce = true;
      } catch (error) {
        client.removeAllListeners('end');
        client.on('error', () => undefined);
        await this.#end(client);
        if (!this.#connectedOnce && this.#attempt === 0) {
          this.#options.logger.warn('LISTEN connection failed; workers poll until it is back', {
            error: (error as Error).message,
          });
        }
        this.#scheduleRetry();
      }
    })();
    this.#connecting = attempt.finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #lost(client?: pg.Client): void {
    if (client && client !== this.#client) return;
    if (this.#state !== 'listening') return;
    const old = this.#client;
    this.#client = undefined;
    this.pid = undefined;
    if (old) {
      old.removeAllListeners('notification');
      old.removeAllListeners('end');
      old.on('error', () => undefined);
      void this.#end(old);
    }
    this.#options.logger.warn('LISTEN connection lost; reconnecting (workers keep polling meanwhile)');
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

  /** A timed query (`query_timeout`) plus pg_listening_channels(): catches half-open sockets and lost LISTENs. */
  async #check(): Promise<void> {
    const client = this.#client;
    if (!client || this.#state !== 'listening') return;
    try {
      const { rows } = await client.query<{ channel: string }>('SELECT pg_listening_channels() AS channel');
      const listening = new Set(rows.map((row) => row.channel));
      const missing = [...this.#handlers.keys()].filter((channel) => !listening.has(channel));
      if (missing.length > 0) throw new Error(`not listening to ${missing.join(', ')}`);
      this.#scheduleCheck();
    } catch (error) {
      this.#options.logger.warn('LISTEN connection check failed', { error: (error as Error).message });
      this.#lost(client);
    }
  }

  #dispatch(message: pg.Notification): void {
    const handlers = this.#handlers.get(message.channel);
    if (!handlers) return;
    for (const handler of handlers) this.#safely(() => handler(message.payload ?? ''));
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
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners('end');
      client.on('error', () => undefined);
      await this.#end(client);
    }
  }

  /**
   * Ends a client; when the server does not acknowledge in time (the connection is half-open, so the
   * goodbye goes nowhere), destroys its socket instead, so that close() never hangs on it.
   */
  async #end(client: pg.Client): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.#timeoutMs);
    });
    const outcome = await Promise.race([client.end().catch(() => undefined), late]);
    clearTimeout(timer);
    if (outcome === 'late') (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  }
}
