import type http from 'node:http';
import type { Router } from 'express';
import type pg from 'pg';
import type { Server as SocketIOServer } from 'socket.io';
import { Sequelize } from 'sequelize';
import { checkRuns, type CheckOptions, type CheckResult } from './check/check.js';
import { ChangeFeed, type ChangeSubscriber } from './changes/feed.js';
import { connectionConfig, resolveOptions, sessionConfig, type DurableFlowOptions, type ResolvedOptions } from './config.js';
import { checkSchema, migrate, migrationsChannel, type MigrateResult } from './db/migrator.js';
import { defineModels } from './db/models.js';
import type { DurableFlowModels } from './db/models.js';
import { Store } from './db/store.js';
import { Batcher } from './db/batcher.js';
import { gatePool } from './db/gate.js';
import { Pools } from './db/pools.js';
import { fromPg } from './db/queryable.js';
import type { SqlTexts } from './db/sql/index.js';
import type { NewRun } from './db/sql/insertRun.js';
import { tablesFor, type Tables } from './db/tables.js';
import { debugPoint } from './debug-point.js';
import { toMilliseconds } from './duration.js';
import { DurableFlowError } from './errors.js';
import { notify, notifyMany } from './events/notify.js';
import type { LiveHandle, LiveOptions } from './http/live.js';
import { ViewerMounts } from './http/mounts.js';
import type { RouterOptions } from './http/options.js';
import { bulkWorkers, stopBulk } from './operator/bulk.js';
import { OperatorMethods } from './operator/facade.js';
import type { OperatorHost } from './operator/facade.js';
import { Schedules } from './schedules/schedules.js';
import { sendSignal } from './signals/send.js';
import type {
  EventRecord,
  NotifyOptions,
  ResultOptions,
  RunHandle,
  RunInfo,
  StartOptions,
  WorkflowHandler,
  WorkflowOptions,
} from './types.js';
import { checkWorkflowArguments, defineWorkflow, unregisteredWorkflow } from './workflow/definition.js';
import type { WorkflowDefinition } from './workflow/definition.js';
import type { ExecutionEnv } from './workflow/env.js';
import { CommitBatcher } from './workflow/batcher.js';
import { ResultWatcher } from './workflow/results.js';
import { insertRows, startRun } from './workflow/start.js';
import { FlowVersion } from './workflow/version.js';
import type { InsertResult, ParentLink } from './workflow/start.js';
import type { PruneResult } from './retention/prune.js';
import { Retention } from './retention/retention.js';
import { viewerSide } from './read/side.js';
import type { ViewerSide } from './read/side.js';
import type { RecordIds } from './read/records.js';
import type { Timeline } from './read/timeline.js';
import { FlowMetrics } from './metrics/flow-metrics.js';
import { Listener } from './worker/listener.js';
import { LocalClaims } from './worker/local-claim.js';
import { Worker, type WorkerHost, type WorkerOptions } from './worker/worker.js';
import type { RunningWorker } from './worker/host.js';

/** A registered workflow: start runs of it with `start(input)`. */
export interface Workflow<I = unknown, O = unknown> {
  readonly name: string;
  /** Creates a run (due at once unless `delay` is given) and returns its handle. */
  start(input: I, options?: StartOptions): Promise<RunHandle<O>>;
}

/**
 * The durable-flow facade: owns the connection pool and the LISTEN connection, registers workflows,
 * starts runs, records events, and creates workers. Compose one per database (per schema).
 */
export class DurableFlow extends OperatorMethods {
  readonly options: ResolvedOptions;
  readonly tables: Tables;
  /** Cron schedules: create, list, pause, resume, delete, trigger, backfill (fired by every worker). */
  readonly schedules: Schedules;
  readonly #pools: Pools;
  readonly #pool: pg.Pool;
  readonly #store: Store;
  readonly #connection: pg.ClientConfig;
  readonly #definitions = new Map<string, WorkflowDefinition>();
  readonly #version = new FlowVersion(() => this.options.version, () => this.#definitions.values());
  readonly #listener: Listener;
  readonly #feed: ChangeFeed;
  readonly #workers = new Set<RunningWorker>();
  readonly #retention: Retention;
  readonly #results: ResultWatcher;
  readonly #batcher: CommitBatcher;
  readonly #starts: Batcher<NewRun, InsertResult>;
  readonly #executionEnv: ExecutionEnv;
  /** Direct dispatch and a notify's local claim: runs leased to this process's workers by its own statements. */
  readonly #localClaims: LocalClaims;
  #clockOffsetMs = 0;
  #sequelize: Sequelize | undefined;
  #models: DurableFlowModels | undefined;
  #closed = false;
  #viewerSide: ViewerSide | undefined;
  readonly #mounts = new ViewerMounts(this, () => this.#side().reader);
  /** Prometheus metrics in a registry of the flow's own (`GET <mount>/metrics`): `await flow.metrics.text()`, `flow.metrics.registry`. */
  readonly metrics = new FlowMetrics({ reads: () => this.#side().metrics, workers: () => this.#workers, clockOffsetMs: () => this.#clockOffsetMs });

  constructor(options: DurableFlowOptions = {}) {
    super();
    this.options = resolveOptions(options);
    this.tables = tablesFor(this.options.schema);
    this.#connection = connectionConfig(this.options);
    this.#pools = new Pools(this.#connection, sessionConfig(this.options), this.options);
    this.#pool = this.#pools.main;
    this.#store = new Store(this.#pool, this.tables, () => this.#clockOffsetMs, () => this.version);
    const gate = gatePool(this.#pool);
    this.#listener = new Listener({ connection: sessionConfig(this.options), logger: this.options.logger, checkSession: this.options.directUrl === undefined });
    const feedRecords = { changedRecords: (ids: RecordIds) => this.#side().feed.changedRecords(ids), keepLive: (ms: number) => this.#side().feed.keepLive(ms) };
    this.#feed = new ChangeFeed(gate, feedRecords, this.tables, this.#listener, this.options.logger);
    this.#results = new ResultWatcher((runIds) => this.#side().reader.finishedRuns(runIds));
    this.#batcher = new CommitBatcher(this.#store);
    this.#starts = new Batcher((runs) => insertRows(this.#store.db, this.#store, runs), { maxBatch: 500, maxInFlight: 2 });
    this.#sequelize = this.options.sequelize;
    this.#retention = new Retention(this.#pools.sessionLocks(), this.tables, this.options, () => this.#clockOffsetMs);
    this.#localClaims = new LocalClaims({ workers: () => this.#workers, workflows: () => [...this.#definitions.keys()], leaseTtlMs: this.options.leaseTtlMs });
    this.#executionEnv = {
      store: this.#store,
      options: this.options,
      notify: (name, payload, notifyOptions) => this.notify(name, payload, notifyOptions),
      commit: (request) => this.#batcher.commit(request),
      onFinished: (runId, outcome) => this.#results.finished(runId, outcome),
      startChild: (workflow, input, idempotencyKey, parent, tags) =>
        this.startRun(this.#definitions.get(workflow) ?? unregisteredWorkflow(workflow, this.options), input, { idempotencyKey, tags }, parent),
      debugPoint,
    };
    this.schedules = new Schedules({ pool: this.#pool, tables: this.tables, options: this.options, definitions: this.#definitions, store: this.#store, clockOffsetMs: () => this.#clockOffsetMs,
      changesReady: () => this.#feed.ready(), startRun: (definition, input, options) => this.startRun(definition, input, options), handle: (runId) => this.handle(runId), assertOpen: () => this.#assertOpen() });
  }

  /** durable-flow's own `pg` pool (for raw queries in tests and tools). */
  get pool(): pg.Pool { return this.#pool; }

  /** The Sequelize instance the models are defined on: the one passed in, or one created from `databaseUrl`. */
  get sequelize(): Sequelize {
    this.#sequelize ??= new Sequelize(this.options.databaseUrl!, { dialect: 'postgres', logging: false });
    return this.#sequelize;
  }

  /** Sequelize models of every table, column for column (read models; the engine does the writes that need its locks). */
  get models(): DurableFlowModels {
    this.#models ??= defineModels(this.sequelize, this.options.schema);
    return this.#models;
  }

  /** The LISTEN connection (exposed for tests that cut it). */
  get listener(): Listener { return this.#listener; }

  /** Milliseconds the flow's clock runs ahead of the database clock. Only the test harness moves it. */
  get clockOffsetMs(): number { return this.#clockOffsetMs; }

  /** @internal used by durable-flow/testing. */
  setClockOffset(ms: number): void {
    this.#clockOffsetMs = ms;
  }

  /** Creates or updates durable-flow's tables. Idempotent; safe when several processes run it at once. */
  async migrate(): Promise<MigrateResult> {
    this.#assertOpen();
    const pool = this.#pools.migration();
    let result: MigrateResult;
    try {
      result = await migrate(pool, this.tables, { checkSession: this.options.directUrl === undefined });
    } finally {
      await pool.end();
    }
    await this.schedules.sync(true); // the workflows' `schedule` options
    return result;
  }

  /**
   * Registers a workflow. `name` identifies its runs in the database: keep it stable across deploys.
   * Type the input with `flow.workflow<Input>(…)` or by annotating the handler's context
   * (`WorkflowContext<Input>`); the output type is inferred.
   */
  workflow<I = any, O = unknown>(name: string, handler: WorkflowHandler<I, O>): Workflow<I, Awaited<O>>;
  workflow<I = any, O = unknown>(name: string, options: WorkflowOptions<I>, handler: WorkflowHandler<I, O>): Workflow<I, Awaited<O>>;
  workflow<I, O>(name: string, a: WorkflowOptions<I> | WorkflowHandler<I, O>, b?: WorkflowHandler<I, O>): Workflow<I, Awaited<O>> {
    const [options, handler] = typeof a === 'function' ? [{} as WorkflowOptions<I>, a] : [a, b];
    checkWorkflowArguments(name, options, handler, this.#definitions);
    const definition = defineWorkflow(name, options, handler as WorkflowHandler<unknown, unknown>, this.options);
    this.#definitions.set(name, definition);
    return {
      name,
      start: async (input: I, startOptions?: StartOptions) => {
        const runId = await this.startRun(definition, input, startOptions);
        return this.handle<Awaited<O>>(runId);
      },
    };
  }

  /** @internal starts a run of a registered workflow (also used for child runs). */
  startRun(definition: WorkflowDefinition, input: unknown, options?: StartOptions, parent?: ParentLink): Promise<string> {
    this.#assertOpen();
    return startRun(
      {
        store: this.#store,
        maxPayloadSize: this.options.maxPayloadSize,
        localClaim: (queue, workflow) => this.#localClaims.forStart(queue, workflow),
        insert: (row) => this.#starts.submit(row),
        changesReady: () => this.#feed.ready(),
        tracing: this.options.tracing,
      },
      definition,
      input,
      options,
      parent,
    );
  }

  /** A handle for an existing run id (its result() works from any process). */
  handle<O = unknown>(runId: string): RunHandle<O> {
    return {
      runId,
      result: (options: ResultOptions = {}) =>
        this.#results.wait(runId, options.timeout === undefined ? undefined : toMilliseconds(options.timeout, 'the result `timeout`')) as Promise<O>,
    };
  }

  /** Stored on every run this flow starts: the `version` option, or `code-` and a hash of the registered workflows' code (fixed at first use). */
  get version(): string { return this.#version.value; }

  /** @internal the registered workflows, by name. */
  get definitions(): Map<string, WorkflowDefinition> { return this.#definitions; }

  /** The run with this id, or null. */
  async getRun<I = any, O = any>(runId: string): Promise<RunInfo<I, O> | null> {
    this.#assertOpen();
    if (typeof runId !== 'string') return null;
    return (await this.#side().reader.run(runId)) as RunInfo<I, O> | null;
  }

  /** Replays every unfinished run's history against the registered code, running and writing nothing (lib/check/check.ts). */
  check(options?: CheckOptions): Promise<CheckResult[]> {
    return checkRuns({ assertOpen: () => this.#assertOpen(), db: this.#store.db, tables: this.tables, options: this.options, definitions: this.#definitions }, options);
  }

  /** The run with its steps, waits, events and logs; null if there is no such run. */
  timeline(runId: string): Promise<Timeline | null> {
    this.#assertOpen();
    return this.#side().reader.timeline(runId);
  }

  /**
   * Records an event and, in the same transaction, matches pending waits and wakes their runs. With
   * `id`, a repeated notify is a no-op that returns the first event.
   */
  notify(name: string, payload?: unknown, options?: NotifyOptions): Promise<EventRecord> {
    this.#assertOpen();
    return notify(
      {
        store: this.#store,
        maxPayloadSize: this.options.maxPayloadSize,
        localClaim: () => this.#localClaims.forNotify(),
        changesReady: () => this.#feed.ready(),
      },
      name,
      payload,
      options,
    );
  }

  /** A message to run `runId` for its step.waitForSignal (lib/signals/send.ts): true if the run exists and is not finished (then it is stored). */
  signal(runId: string, name: string, payload?: unknown, options?: { id?: string }): Promise<boolean> {
    return sendSignal({ store: this.#store, maxPayloadSize: this.options.maxPayloadSize, assertOpen: () => this.#assertOpen() }, runId, name, payload, options);
  }

  /**
   * @internal Stores already validated events in one statement, all or nothing (signed ingest): see
   * events/notify.ts. Runs they wake are woken by NOTIFY, not taken by a local worker.
   */
  notifyMany(events: { name: string; payload: unknown; id?: string | undefined }[], source: string): Promise<EventRecord[]> {
    this.#assertOpen();
    return notifyMany(this.#store, events, source);
  }

  /**
   * Deletes finished runs (with their steps, waits and logs) and events older than `retention`, on the
   * flow's clock, in batches; one process prunes at a time (this waits for another's pass). With
   * `dryRun`, counts them and deletes nothing. Workers do this in the background.
   */
  prune(options: { dryRun?: boolean } = {}): Promise<PruneResult> {
    this.#assertOpen();
    return this.#retention.prune(options.dryRun === true);
  }

  /** A worker that executes this flow's runs; call `start()` on it. */
  worker(options?: WorkerOptions): Worker {
    this.#assertOpen();
    const host: WorkerHost = {
      store: this.#store,
      controlDb: () => fromPg(this.#pools.control()),
      options: this.options,
      listener: this.#listener,
      wakeChannel: this.tables.wakeChannel,
      migrationsChannel: migrationsChannel(this.tables),
      checkSchema: () => checkSchema(this.#pool, this.tables),
      definitions: this.#definitions,
      executionEnv: this.#executionEnv,
      fireSchedules: () => this.schedules.fire(),
      track: (worker, active) => {
        if (active) this.#workers.add(worker);
        else this.#workers.delete(worker);
        this.metrics.tracked(worker, active);
        this.#retention.workers(this.#workers.size);
        bulkWorkers(this.#side().operatorContext, this.#workers.size, this.#pool);
      },
    };
    return new Worker(host, options);
  }

  /** @internal the environment executions run in (the test harness drives executions itself). */
  get executionEnv(): ExecutionEnv { return this.#executionEnv; }

  /** @internal */
  get sql(): SqlTexts { return this.#store.statements; }

  /**
   * Calls `fn` with every committed change (runs, steps, waits, events, logs), from any process:
   * every change this process commits after it returns, and every change other processes commit
   * after `changesReady()` resolves. Returns the unsubscribe function. A subscriber that throws is
   * logged and never fails a workflow.
   */
  onChange(fn: ChangeSubscriber): () => void {
    this.#assertOpen();
    return this.#feed.subscribe(fn);
  }

  /**
   * The viewer and event-ingest router to mount in an Express app:
   * `app.use('/durable_flow', flow.router({ basicAuth: { username, password } }))`. Denied to everyone
   * until one of `authorize`, `basicAuth` or `allowUnauthenticated` is set.
   */
  router(options?: RouterOptions): Router {
    this.#assertOpen();
    return this.#mounts.router(options);
  }

  /**
   * Live updates for the viewer: a socket.io server on `httpServer` (or a namespace on your own
   * socket.io server). A socket is held to the access rules of the viewer router whose page opened it,
   * unless attachLive is given rules of its own (`authorize`, `basicAuth`, `allowUnauthenticated`),
   * which then apply to every socket.
   */
  attachLive(target: http.Server | SocketIOServer, options: LiveOptions & RouterOptions = {}): LiveHandle {
    this.#assertOpen();
    return this.#mounts.attachLive(target, options);
  }

  /**
   * Resolves once the change subscription is in place (at once if it already is). Changes this
   * process commits after `onChange()` returns always reach the subscriber (its writes wait the few
   * milliseconds this takes); await this before asking another process to make a change you want to see.
   */
  changesReady(): Promise<void> {
    return this.#feed.ready();
  }

  /** The read side and the cold path's writes, on the viewer's connections (made at first use). */
  #side(): ViewerSide {
    this.#viewerSide ??= viewerSide(this.#pools.viewer(), this.#pools.replica(), this.options.schema, this.tables, {
      logger: this.options.logger,
      maxPayloadSize: this.options.maxPayloadSize,
      clockOffsetMs: () => this.#clockOffsetMs,
      startRun: (workflow, input, startOptions) => this.startRun(this.#definitions.get(workflow) ?? unregisteredWorkflow(workflow, this.options), input, startOptions),
    });
    return this.#viewerSide;
  }

  /** @internal */
  protected operatorHost(): OperatorHost {
    return { assertOpen: () => this.#assertOpen(), side: () => this.#side(), handle: (runId) => this.handle(runId), version: () => this.version };
  }

  #assertOpen(): void {
    if (this.#closed) throw new DurableFlowError('CLOSED', 'This DurableFlow was closed; create a new one');
  }

  /** Stops this flow's workers (letting running steps finish), then closes its connections. */
  async close(options: { timeout?: string | number } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#workers].map((worker) => worker.stop(options.timeout === undefined ? {} : { timeout: options.timeout })));
    await this.#retention.stop();
    await stopBulk(this.#viewerSide?.operatorContext);
    await this.#mounts.close();
    this.#feed.close();
    this.#results.close();
    await this.#listener.close();
    await this.#pools.end();
    if (this.#sequelize && !this.options.sequelize) await this.#sequelize.close();
  }
}
