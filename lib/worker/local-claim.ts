import type { ClaimedBatch, LeaseTarget } from '../db/sql/claimed.js';

/**
 * Slots a worker of this process reserved for runs that a statement of this process leases to it
 * directly, without a claim: a start inserted already claimed (direct dispatch) and the runs a notify
 * wakes (claimed inside the notify's transaction). The statement writes the lease in SQL, for `owner`
 * and `leaseTtlMs`, up to `limit` runs of `queues` and `workflows`; `take` hands what it leased to the
 * worker. `take` must be called exactly once, with what was leased (EMPTY_BATCH when nothing was, or
 * the statement failed): it frees the slots not used. A second call is ignored.
 */
export interface LocalClaim extends LeaseTarget {
  take(batch: ClaimedBatch): void;
}

/** What LocalClaims needs of a worker. */
export interface LocalWorker {
  readonly id: string;
  readonly queues: string[];
  readonly freeSlots: number;
  /** Reserves up to `max` free slots (only if the worker takes `queue`, when given); returns how many. */
  reserve(max: number, queue?: string): number;
  /** Executes leased runs and gives back `reserved` slots (those runs now occupy theirs). */
  take(batch: ClaimedBatch, reserved: number): void;
}

/** How many runs one notify may hand to a local worker: a few, so one event cannot hog the worker. */
const NOTIFY_LIMIT = 8;

/** The one path by which runs are leased to this process's workers outside their claim loop. */
export class LocalClaims {
  readonly #workers: () => Iterable<LocalWorker>;
  readonly #workflows: () => string[];
  readonly #leaseTtlMs: number;

  constructor(options: { workers: () => Iterable<LocalWorker>; workflows: () => string[]; leaseTtlMs: number }) {
    this.#workers = options.workers;
    this.#workflows = options.workflows;
    this.#leaseTtlMs = options.leaseTtlMs;
  }

  /** A slot for a run of `workflow` in `queue` this process is starting now, on the first worker that has one. */
  forStart(queue: string, workflow: string): LocalClaim | undefined {
    for (const worker of this.#workers()) {
      if (worker.reserve(1, queue) === 1) return this.#claim(worker, 1, [queue], [workflow]);
    }
    return undefined;
  }

  /** Slots for the runs a notify wakes, on the worker with the most free slots. */
  forNotify(): LocalClaim | undefined {
    let best: LocalWorker | undefined;
    for (const worker of this.#workers()) if (worker.freeSlots > (best?.freeSlots ?? 0)) best = worker;
    if (!best) return undefined;
    const limit = best.reserve(NOTIFY_LIMIT);
    return limit === 0 ? undefined : this.#claim(best, limit, best.queues, this.#workflows());
  }

  #claim(worker: LocalWorker, limit: number, queues: string[], workflows: string[]): LocalClaim {
    let taken = false;
    return {
      owner: worker.id,
      leaseTtlMs: this.#leaseTtlMs,
      limit,
      queues,
      workflows,
      take: (batch) => {
        if (taken) return;
        taken = true;
        worker.take(batch, limit);
      },
    };
  }
}
