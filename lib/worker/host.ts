import { checkInteger, invalidOption } from '../config.js';
import type { ResolvedOptions } from '../config.js';
import type { SchemaCheck } from '../db/migrator.js';
import type { Queryable } from '../db/queryable.js';
import type { Store } from '../db/store.js';
import { toMilliseconds } from '../duration.js';
import type { DurationInput } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import type { WorkflowDefinition } from '../workflow/definition.js';
import type { ExecutionEnv } from '../workflow/env.js';
import type { Listener } from './listener.js';
import type { LocalWorker } from './local-claim.js';

export interface WorkerOptions {
  /** Runs executed at once by this worker. Default 10. */
  concurrency?: number;
  /** Queues to take runs from. Default `['default']`. */
  queues?: string[];
  /** How often to look for due runs when no NOTIFY arrives (the fallback; NOTIFY wakes it at once). Default `'1 second'`. */
  pollInterval?: DurationInput;
}

export interface StopOptions {
  /** How long to let running steps finish before handing their runs back anyway. Default `'30 seconds'`. */
  timeout?: DurationInput;
}

/** What a worker needs from its flow. */
export interface WorkerHost {
  store: Store;
  /** Connections of its own for heartbeats (never starved by the main pool). */
  controlDb(): Queryable;
  options: ResolvedOptions;
  listener: Listener;
  wakeChannel: string;
  /** migrate() NOTIFYs it when it applied migrations. */
  migrationsChannel: string;
  /** How the database's migrations compare with the ones this release knows. */
  checkSchema(): Promise<SchemaCheck>;
  definitions: Map<string, WorkflowDefinition>;
  executionEnv: ExecutionEnv;
  /** Fires the due slots of the schedules of this process's workflows (schedules/fire.ts); never rejects. */
  fireSchedules(): Promise<number>;
  /** Called when the worker starts/stops, so the flow can stop workers on close(). */
  track(worker: RunningWorker, active: boolean): void;
}

/** A started worker as its flow sees it: it takes local claims and is stopped on close(). */
export interface RunningWorker extends LocalWorker {
  stop(options?: StopOptions): Promise<void>;
  /** Its slots, those busy, and how its executions ended (the flow's metrics read them). */
  readonly concurrency: number;
  readonly active: number;
  readonly stats: { readonly lost: number };
}

/** Checks a worker's options (a bad one throws INVALID_OPTION naming it) and fills in the defaults. */
export function resolveWorkerOptions(options: WorkerOptions): { concurrency: number; queues: string[]; pollIntervalMs: number } {
  if (typeof options !== 'object' || options === null) throw invalidOption('worker options', options, 'an object');
  const concurrency = checkInteger('concurrency', options.concurrency ?? 10, 1, 10_000);
  const queues = options.queues ?? ['default'];
  if (!Array.isArray(queues) || queues.length === 0 || queues.some((q) => typeof q !== 'string' || q.length === 0)) {
    throw invalidOption('queues', queues, 'a non-empty array of queue names');
  }
  let pollIntervalMs: number;
  try {
    pollIntervalMs = toMilliseconds(options.pollInterval ?? '1 second', '`pollInterval`');
  } catch (error) {
    throw new DurableFlowError('INVALID_OPTION', (error as Error).message);
  }
  if (pollIntervalMs > 2 ** 31 - 1) throw invalidOption('pollInterval', options.pollInterval, 'at most about 24 days');
  return { concurrency, queues, pollIntervalMs };
}
