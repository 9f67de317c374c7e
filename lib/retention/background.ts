import type { Logger } from '../config.js';
import type { PruneResult } from './prune.js';

/**
 * The first prune comes 10 to 60 s after the first worker starts (spread, so a fleet starting at once
 * does not queue on the lock), the next ones every five minutes, ±20 %.
 */
export interface PruneTiming {
  firstMs: number;
  spreadMs: number;
  everyMs: number;
}
const TIMING: PruneTiming = { firstMs: 10_000, spreadMs: 50_000, everyMs: 300_000 };

/**
 * Background pruning for a flow while any of its workers runs: now and then, try the prune lock and,
 * when this process gets it, prune in batches (giving up the lock between passes). A stop waits for
 * the batch in flight; the next pass, here or in another process, goes on from there.
 */
export class BackgroundPrune {
  readonly #prune: (options: { stopped: () => boolean }) => Promise<PruneResult | null>;
  readonly #logger: Logger;
  readonly #enabled: boolean;
  readonly #timing: PruneTiming;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #on = false;

  constructor(prune: (options: { stopped: () => boolean }) => Promise<PruneResult | null>, logger: Logger, enabled: boolean, timing = TIMING) {
    this.#prune = prune;
    this.#logger = logger;
    this.#enabled = enabled;
    this.#timing = timing;
  }

  /** The number of running workers changed: on with the first, off with the last. */
  workers(count: number): void {
    if (count > 0 && !this.#on && this.#enabled) {
      this.#on = true;
      this.#schedule(this.#timing.firstMs + Math.random() * this.#timing.spreadMs);
    } else if (count === 0 && this.#on) {
      this.#on = false;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Resolves once the pass in flight (if any) has stopped. */
  async stop(): Promise<void> {
    this.workers(0);
    await this.#running;
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
        if (this.#on) this.#schedule(this.#timing.everyMs * (0.8 + Math.random() * 0.4));
      });
    }, ms);
    this.#timer.unref();
  }

  async #pass(): Promise<void> {
    try {
      await this.#prune({ stopped: () => !this.#on });
    } catch (error) {
      this.#logger.warn('Pruning old runs and events failed; the next pass tries again', { error: (error as Error).message });
    }
  }
}
