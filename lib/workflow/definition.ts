import { checkInteger, duration, invalidOption, resolveBackoff } from '../config.js';
import type { ResolvedBackoff, ResolvedOptions } from '../config.js';
import { DurableFlowError } from '../errors.js';
import { isPlainObject } from '../json.js';
import { workflowSchedule } from '../schedules/options.js';
import type { ScheduleSpec } from '../schedules/options.js';
import { resolveStartControl } from './start-control-options.js';
import type { StartControl } from './start-control-options.js';
import { resolveTriggers } from '../triggers/options.js';
import type { ResolvedTrigger } from '../triggers/options.js';
import { resolveThrottle } from './throttle.js';
import type { ResolvedThrottle } from './throttle.js';
import type { CancelOn, StepStatus, WaitStatus, WorkflowHandler, WorkflowOptions } from '../types.js';

/** A registered workflow with its options resolved against the flow's defaults. */
export interface WorkflowDefinition {
  name: string;
  handler: WorkflowHandler<unknown, unknown>;
  retries: number;
  backoff: ResolvedBackoff;
  queue: string;
  priority: number;
  maxRecoveries: number;
  concurrency: { limit: number; key: ((input: any) => string | number) | undefined } | undefined;
  cancelOn: CancelOn[];
  /** Its `schedule` option, checked (named after the workflow). */
  schedule: ScheduleSpec | undefined;
  /** 'pinned': its runs are claimed only by workers of the version of the flow that started them. */
  versioning: 'any' | 'pinned';
  /** Its `timeout` (ms): a run not finished this long after start() fails with RUN_TIMEOUT. */
  timeoutMs: number | undefined;
  /** Its singleton, rateLimit and debounce options, checked; undefined without any (start's fast path). */
  startControl?: StartControl | undefined;
  /** Its `on` option (event triggers), checked: synced into durable_flow_event_triggers (lib/triggers/). [] without one. */
  on: ResolvedTrigger[];
  /** Its `throttle` (at most `limit` runs of a key begin per `periodMs`), checked; undefined without one. */
  throttle: ResolvedThrottle | undefined;
}

/** A step as the claim loaded it from the database. */
export interface HistoryStep {
  id: string;
  name: string;
  kind: string;
  status: StepStatus;
  attempts: number;
  position: number | null;
  /** The stored result as JSON text; null when the step stored `undefined` (or has no result). */
  result: string | null;
  error: Record<string, unknown> | null;
  cursor: unknown;
  metadata: Record<string, unknown>;
  snapshot: string | null;
  waitId: string | null;
  waitStatus: WaitStatus | null;
}

/** A run as a worker claimed it. */
export interface ClaimedRun {
  id: string;
  runId: string;
  workflow: string;
  input: string | null;
  epoch: string;
  claimCount: number;
  attempts: number;
  createdSnapshot: string;
  /**
   * The low-water mark of this execution's waits (see docs/ARCHITECTURE.md, "No lost wake-up"): the
   * claim's snapshot after a clean stop, the crashed execution's after a crash.
   */
  resumeSnapshot: string;
  parentRunId: string | null;
  queue: string;
  /** The run executed before (so it may have history to replay). */
  replay: boolean;
  /** flow.pause() was asked for it: the execution hands it back before starting any step (it is left 'paused'). */
  pauseRequested?: boolean;
  /** Its deadline (`timeout`) on the flow's clock, epoch ms: the execution fails it with RUN_TIMEOUT then. Null without one. */
  deadlineMs?: number | null;
  /** start()'s trace context, a propagation carrier: the parent of this execution's spans (lib/tracing/). */
  traceContext?: Record<string, string> | null;
}

/** The defaults a workflow's options are resolved against. */
type Defaults = Pick<ResolvedOptions, 'retries' | 'backoff' | 'maxRecoveries' | 'maxPayloadSize'>;

/** What flow.workflow(name, [options], handler) refuses: a bad name, no handler, options not an object, a name taken. */
export function checkWorkflowArguments(name: unknown, options: unknown, handler: unknown, registered: ReadonlyMap<string, unknown>): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected a workflow name to be a non-empty string of at most 255 characters, got ${typeof name === 'string' ? `a string of ${name.length}` : typeof name}`);
  }
  if (typeof handler !== 'function') {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected workflow "${name}" to be given a handler function, got ${typeof handler}: flow.workflow(name, [options], async ({ input, step, log }) => { … })`);
  }
  if (typeof options !== 'object' || options === null) throw invalidOption('workflow options', options, 'an object');
  if (registered.has(name)) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Workflow "${name}" is already registered on this flow; each name must be registered once`);
  }
}

/** Resolves and checks a workflow's options (a bad one throws INVALID_OPTION naming it). */
export function defineWorkflow(name: string, options: WorkflowOptions, handler: WorkflowHandler<unknown, unknown>, defaults: Defaults): WorkflowDefinition {
  const definition: WorkflowDefinition = {
    name,
    handler,
    retries: checkInteger('retries', options.retries ?? defaults.retries, 0, 1000),
    backoff: resolveBackoff('backoff', options.backoff, defaults.backoff),
    queue: options.queue ?? 'default',
    priority: options.priority === undefined ? 0 : checkInteger('priority', options.priority, -(2 ** 31) + 1, 2 ** 31 - 1),
    maxRecoveries: checkInteger('maxRecoveries', options.maxRecoveries ?? defaults.maxRecoveries, 0, 1000),
    concurrency: resolveConcurrency(options.concurrency),
    cancelOn: resolveCancelOn(options.cancelOn),
    schedule: options.schedule === undefined ? undefined : workflowSchedule(name, options.schedule, defaults.maxPayloadSize),
    versioning: resolveVersioning(options.versioning),
    timeoutMs: options.timeout === undefined ? undefined : duration('timeout', options.timeout),
    startControl: resolveStartControl(name, options),
    on: resolveTriggers(name, options),
    throttle: resolveThrottle(options.throttle),
  };
  if (typeof definition.queue !== 'string' || definition.queue.length === 0 || definition.queue.length > 255) {
    throw invalidOption('queue', options.queue, 'a non-empty string of at most 255 characters');
  }
  return definition;
}

/** A workflow registered only in other processes (a child run's): its runs get the defaults (queue, priority). */
export function unregisteredWorkflow(name: string, defaults: Defaults): WorkflowDefinition {
  return {
    name,
    handler: () => undefined,
    retries: defaults.retries,
    backoff: defaults.backoff,
    queue: 'default',
    priority: 0,
    maxRecoveries: defaults.maxRecoveries,
    concurrency: undefined,
    cancelOn: [],
    schedule: undefined,
    versioning: 'any',
    timeoutMs: undefined,
    on: [],
    throttle: undefined,
  };
}

function resolveVersioning(value: unknown): WorkflowDefinition['versioning'] {
  if (value === undefined) return 'any';
  if (value === 'any' || value === 'pinned') return value;
  throw invalidOption('versioning', value, "'any' (any worker continues a run) or 'pinned' (only workers of the run's version)");
}

function resolveConcurrency(value: WorkflowOptions['concurrency']): WorkflowDefinition['concurrency'] {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return { limit: checkInteger('concurrency', value, 1, 100_000), key: undefined };
  if (typeof value !== 'object' || value === null) throw invalidOption('concurrency', value, 'a number or { limit, key?: (input) => key }');
  if (value.key !== undefined && typeof value.key !== 'function') throw invalidOption('concurrency.key', value.key, 'a function of the input');
  return { limit: checkInteger('concurrency.limit', value.limit, 1, 100_000), key: value.key };
}

function resolveCancelOn(value: WorkflowOptions['cancelOn']): WorkflowDefinition['cancelOn'] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidOption('cancelOn', value, 'an array of { event, match? }');
  return value.map((entry, i) => {
    if (typeof entry !== 'object' || entry === null || typeof entry.event !== 'string' || entry.event.length === 0) {
      throw invalidOption(`cancelOn[${i}]`, entry, 'an object { event: string, match?: object | (input) => object }');
    }
    if (entry.match !== undefined && typeof entry.match !== 'function' && !isPlainObject(entry.match)) {
      throw invalidOption(`cancelOn[${i}].match`, entry.match, 'a plain object or a function of the input');
    }
    return entry;
  });
}
