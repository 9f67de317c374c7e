import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { debugPoint } from '../debug-point.js';
import { serializeError } from '../errors.js';
import { runBatch } from './bulk-batch.js';
import { nowOf } from './context.js';
import type { OperatorContext } from './context.js';

/** What the polls query through (a `pg` pool). */
export interface Queryable {
  query<T>(sql: string, bind: unknown[]): Promise<{ rows: T[] }>;
}

/**
 * How long a lease on an operation lasts (each batch extends it), and how often a process with
 * running workers looks for an operation whose lease expired (first after `firstMs` to `2 × firstMs`,
 * then every `pollMs`, ±20 %).
 */
export interface BulkTiming {
  leaseMs: number;
  pollMs: number;
  firstMs: number;
  /**
   * The pause after a batch, as a share of the time the batch took: at 1, an operation has the database
   * at most half the time, and the runs flowing beside it hardly notice (bench/bulk.ts).
   */
  pauseRatio: number;
}
const DEFAULT_TIMING: BulkTiming = {
  leaseMs: 30_000,
  pollMs: 5_000,
  firstMs: 1_000,
  pauseRatio: 1,
};
let timing: BulkTiming = DEFAULT_TIMING;

/** @internal tests shorten the lease and the poll (before the runner of a flow is made). */
export function setBulkTiming(value: Partial<BulkTiming> | undefined): void {
  timing = { ...DEFAULT_TIMING, ...value };
}

/** Attempts of a batch that throws before the operation is marked failed. */
const ATTEMPTS = 4;

/**
 * A process's work on bulk operations: one operation at a time, batch after batch, while it holds
 * the operation's lease. States: idle; passing (taking operations whose lease is free or expired and
 * working each to its end, until none is left); stopped (after the batch in flight, its lease given
 * back so another process goes on at once). A pass starts when this process makes an operation
 * (`work()`) and, while the flow has running workers, every few seconds (`workers()`).
 */
export class BulkRunner {
  readonly #ctx: OperatorContext;
  readonly #timing = timing;
  readonly #owner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  #pass: Promise<void> | undefined;
  #again = false;
  #polling = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #pollPool: Queryable | undefined;

  constructor(ctx: OperatorContext) {
    this.#ctx = ctx;
  }

  /** Starts a pass now (or another one after the pass in flight). Never rejects. */
  work(): void {
    if (this.#stopped) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    this.#pass = this.#passes().finally(() => {
      this.#pass = undefined;
    });
  }

  /**
   * The number of the flow's running workers changed: poll for abandoned operations while there is
   * one. The polls go through `pool` (the flow's own, whose queries give up after `queryTimeout`): a
   * worker whose connections went silent must still close, and a viewer connection that hangs would
   * hold its close for ever.
   */
  workers(count: number, pool: Queryable): void {
    this.#pollPool = pool;
    if (count > 0 && !this.#polling && !this.#stopped) {
      this.#polling = true;
      this.#schedule(this.#timing.firstMs * (1 + Math.random()));
    } else if (count === 0) {
      this.#stopPolling();
    }
  }

  #stopPolling(): void {
    this.#polling = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Stops after the batch in flight, giving its lease back. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopPolling();
    await this.#pass;
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.work();
      if (this.#polling) this.#schedule(this.#timing.pollMs * (0.8 + Math.random() * 0.4));
    }, ms);
    this.#timer.unref();
  }

  async #passes(): Promise<void> {
    do {
      this.#again = false;
      try {
        for (let id = await this.#take(); id !== null && !this.#stopped; id = await this.#take()) await this.#workOn(id);
      } catch (error) {
        this.#ctx.logger.warn('Bulk operations: looking for one to work on failed; the next pass tries again', {
          error: (error as Error).message,
        });
      }
    } while (this.#again && !this.#stopped);
  }

  /**
   * Takes a running operation whose lease is free or expired (the oldest first). SKIP LOCKED: an
   * operation whose row is locked is in a batch of its owner's right now, so its lease is not free.
   */
  async #take(): Promise<string | null> {
    if (this.#stopped) return null;
    const { db } = this.#ctx;
    const now = nowOf(this.#ctx);
    const free = `status = 'running' AND (lease_owner IS NULL OR lease_expires_at < ${now})`;
    const select = <T extends object>(sql: string, bind: unknown[]): Promise<T[]> =>
      this.#pollPool ? this.#pollPool.query<T>(sql, bind).then((result) => result.rows) : db.select<T>(sql, bind);
    const rows = await select<{ id: string }>(
      `UPDATE ${db.tables.operations} SET lease_owner = $1, lease_expires_at = ${now} + $2 * interval '1 millisecond', updated_at = ${now}
       WHERE id = (SELECT id FROM ${db.tables.operations} WHERE ${free} ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) AND ${free}
       RETURNING id`,
      [this.#owner, this.#timing.leaseMs],
    );
    return rows[0]?.id ?? null;
  }

  /** Batches until the operation is completed, lost to another process, failed, or this runner stops. */
  async #workOn(operationId: string): Promise<void> {
    let failures = 0;
    for (;;) {
      if (this.#stopped) return this.#release(operationId);
      try {
        const started = performance.now();
        const outcome = await runBatch(this.#ctx, operationId, this.#owner, this.#timing.leaseMs);
        const tookMs = performance.now() - started;
        if (outcome !== 'more') return;
        failures = 0;
        await debugPoint('BULK_BATCH', { operationId });
        if (this.#timing.pauseRatio > 0) await new Promise((resolve) => setTimeout(resolve, tookMs * this.#timing.pauseRatio));
      } catch (error) {
        failures++;
        if (failures >= ATTEMPTS) return this.#fail(operationId, error);
        this.#ctx.logger.warn('Bulk operation: a batch failed; trying again', { operationId, error: (error as Error).message });
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** failures));
      }
    }
  }

  async #release(operationId: string): Promise<void> {
    const { db } = this.#ctx;
    await db
      .select(
        `UPDATE ${db.tables.operations} SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 RETURNING id`,
        [operationId, this.#owner],
      )
      .catch(() => undefined); // the lease then expires by itself
  }

  async #fail(operationId: string, error: unknown): Promise<void> {
    const { db } = this.#ctx;
    const now = nowOf(this.#ctx);
    this.#ctx.logger.error('Bulk operation failed', { operationId, error: (error as Error).message });
    await db.select(
      `UPDATE ${db.tables.operations} SET status = 'failed', error = $3::jsonb, completed_at = ${now}, updated_at = ${now}, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING id`,
      [operationId, this.#owner, JSON.stringify(serializeError(error))],
    );
  }
}
