import { Batcher } from '../db/batcher.js';
import type { CommitRequest, CommitResult } from '../db/sql/commitBatch.js';
import type { Store } from '../db/store.js';

/**
 * The writes of every execution of this process, group-committed (see Batcher): one statement
 * (commitBatch) for all the executions that commit at about the same time, each fenced by its lease.
 */
export class CommitBatcher {
  readonly #batcher: Batcher<CommitRequest, CommitResult>;

  constructor(store: Store) {
    this.#batcher = new Batcher((requests) => store.commitBatch(store.db, requests), { maxBatch: 200, maxInFlight: 2 });
  }

  commit(request: CommitRequest): Promise<CommitResult> {
    return this.#batcher.submit(request);
  }
}
