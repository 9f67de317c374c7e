import { toDate, toMilliseconds } from '../duration.js';
import { ChildWorkflowFailedError, DurableFlowError } from '../errors.js';
import type { StoredError } from '../errors.js';
import { encodeJson, isPlainObject } from '../json.js';
import { MAX_SIGNAL_NAME, SIGNAL_WAIT_EVENT } from '../signals/sql.js';
import type {
  ChildOutcome,
  InvokeManyOptions,
  InvokeOptions,
  StepApi,
  StepContext,
  StepRunOptions,
  WaitForEventOptions,
  WaitForSignalOptions,
  WorkflowRef,
} from '../types.js';
import type { ClaimedRun } from './definition.js';
import type { ExecutionEnv } from './env.js';
import { derivedId, derivedStepName } from './ids.js';
import { WORKFLOW_FINISHED_EVENT } from './suspend.js';
import { checkTags } from '../tags.js';
import type { RunTags } from '../tags.js';

/** Longest invokeMany key (it becomes part of two step names). */
const MAX_KEY = 200;

/** A patch marker's step name is this followed by the patch id. */
export const PATCH_PREFIX = 'patch:';

/**
 * The step primitives of an execution (the replay executor's `Execution` provides them): declared here,
 * so that the step API depends on what it calls and not on the executor, which creates it.
 */
export interface StepPrimitives {
  readonly run: ClaimedRun;
  dbNow(): number;
  /** A programming error in the workflow: the run fails with it once running bodies finish; returned to be thrown. */
  fail(error: Error): Error;
  runStep<T>(name: string, options: StepRunOptions, fn: (context: StepContext) => T | Promise<T>): Promise<T>;
  sleepStep(name: string, wakeAtIfNew: () => number): Promise<void>;
  waitStep(
    name: string,
    spec: { event: string; match: Record<string, unknown>; allowPast: boolean; timeoutMs: number | undefined; watch?: string; signal?: string },
  ): Promise<unknown>;
  /** step.patched: `name` is the marker's (`patch:<id>`). */
  patchStep(name: string): Promise<boolean>;
  /** step.waitAny / step.waitAll: one wait step over `branches`, in the order declared. */
  waitGroupStep(name: string, spec: { mode: 'any' | 'all'; branches: GroupBranch[]; timeoutMs: number | undefined }): Promise<unknown>;
}

/** A branch of step.waitAny / waitAll, checked: an event, a run to finish, or a sleep (its wake time computed the first time only). */
export type GroupBranch =
  | { key: string; kind: 'event'; event: string; match: Record<string, unknown>; allowPast: boolean }
  | { key: string; kind: 'run'; watch: string }
  | { key: string; kind: 'sleep'; wakeAtIfNew: () => number };

/** The most branches a waitAny / waitAll step may have, and the longest branch key. */
const MAX_BRANCHES = 32;
const MAX_BRANCH_KEY = 100;

function invalid(execution: StepPrimitives, message: string): Error {
  return execution.fail(new DurableFlowError('INVALID_ARGUMENT', message));
}

function workflowName(execution: StepPrimitives, name: string, workflow: WorkflowRef): string {
  const value = typeof workflow === 'string' ? workflow : workflow?.name;
  if (typeof value !== 'string' || value.length === 0) {
    throw invalid(execution, `Expected the workflow of step "${name}" to be a workflow (from flow.workflow) or its name`);
  }
  return value;
}

function checkOnFailure(execution: StepPrimitives, name: string, onFailure: unknown): 'raise' | 'return' {
  if (onFailure === undefined) return 'raise';
  if (onFailure !== 'raise' && onFailure !== 'return') {
    throw invalid(execution, `Expected \`onFailure\` of step "${name}" to be 'raise' or 'return', got ${JSON.stringify(onFailure)}`);
  }
  return onFailure;
}

/** A child's own tags (merged over its parent's when it is inserted), checked before anything is stored. */
function tagsOf(execution: StepPrimitives, name: string, tags: unknown): RunTags {
  try {
    return checkTags(tags, `the \`tags\` of step "${name}"`);
  } catch (error) {
    throw execution.fail(error as Error);
  }
}

function timeoutOf(name: string, timeout: unknown): number | undefined {
  return timeout === undefined ? undefined : toMilliseconds(timeout, `the timeout of step "${name}"`);
}

/** Checks the branches of step.waitAny / waitAll `name`. */
function groupBranches(execution: StepPrimitives, env: ExecutionEnv, name: string, method: string, branches: unknown): GroupBranch[] {
  if (!isPlainObject(branches)) {
    throw invalid(execution, `Expected the branches of step.${method} "${name}" to be an object such as { approved: { event: 'approved' }, expired: { sleep: '2 days' } }, got ${Array.isArray(branches) ? 'an array' : typeof branches}`);
  }
  const entries = Object.entries(branches);
  if (entries.length === 0 || entries.length > MAX_BRANCHES) {
    throw invalid(execution, `Expected step.${method} "${name}" to have between 1 and ${MAX_BRANCHES} branches, got ${entries.length}`);
  }
  return entries.map(([key, branch]): GroupBranch => {
    const where = `branch "${key.slice(0, MAX_BRANCH_KEY)}" of step.${method} "${name}"`;
    if (key.length === 0 || key.length > MAX_BRANCH_KEY) throw invalid(execution, `Expected the branch keys of step.${method} "${name}" to be non-empty strings of at most ${MAX_BRANCH_KEY} characters`);
    const kinds = isPlainObject(branch) ? ['event', 'sleep', 'until', 'workflow'].filter((k) => branch[k] !== undefined) : [];
    if (!isPlainObject(branch) || kinds.length !== 1) {
      throw invalid(execution, `Expected ${where} to be one of { event, match? }, { sleep: duration }, { until: time } or { workflow: runId }, got ${isPlainObject(branch) ? `the keys ${JSON.stringify(Object.keys(branch))}` : typeof branch}`);
    }
    if (branch.sleep !== undefined) {
      const ms = toMilliseconds(branch.sleep, `the sleep of ${where}`);
      return { key, kind: 'sleep', wakeAtIfNew: () => execution.dbNow() + ms };
    }
    if (branch.until !== undefined) {
      const at = toDate(branch.until, `the time of ${where}`).getTime();
      return { key, kind: 'sleep', wakeAtIfNew: () => at };
    }
    if (branch.workflow !== undefined) {
      if (typeof branch.workflow !== 'string' || branch.workflow.length === 0) throw invalid(execution, `Expected \`workflow\` of ${where} to be a run id (a non-empty string), got ${typeof branch.workflow}`);
      return { key, kind: 'run', watch: branch.workflow };
    }
    const event = branch.event;
    if (typeof event !== 'string' || event.length === 0) throw invalid(execution, `Expected \`event\` of ${where} to be a non-empty string, got ${typeof event}`);
    const match = branch.match ?? {};
    if (!isPlainObject(match)) throw invalid(execution, `Expected \`match\` of ${where} to be a plain object such as { orderId: 42 }, got ${Array.isArray(match) ? 'an array' : typeof match}`);
    const matchJson = encodeJson(match, `The match of ${where}`, env.options.maxPayloadSize)!;
    return { key, kind: 'event', event, match: JSON.parse(matchJson) as Record<string, unknown>, allowPast: branch.allowPastEvents === true };
  });
}

/** The `step` object a workflow receives: thin argument checking over the execution's step primitives. */
export function createStepApi(execution: StepPrimitives, env: ExecutionEnv): StepApi {
  const runId = execution.run.runId;

  const watch = (name: string, watchedRunId: string, timeoutMs: number | undefined) =>
    execution.waitStep(name, { event: WORKFLOW_FINISHED_EVENT, match: { runId: watchedRunId }, allowPast: false, timeoutMs, watch: watchedRunId }) as Promise<ChildOutcome>;

  /** Starts the child once, waits for it, and applies the failure policy (derived from the stored outcome, so replays agree). */
  const invokeOne = async (name: string, workflow: string, input: unknown, timeoutMs: number | undefined, tags: RunTags): Promise<ChildOutcome> => {
    const started = await execution.runStep(derivedStepName(name, '_start'), {}, async () => {
      const childRunId = await env.startChild(workflow, input, derivedId(runId, name), { parentRunId: runId, parentStepName: name }, tags);
      return { runId: childRunId, workflow };
    });
    return watch(derivedStepName(name, '_wait'), started.runId, timeoutMs);
  };

  const failureOf = (outcome: ChildOutcome): ChildWorkflowFailedError => {
    const error = (outcome.error ?? {}) as Partial<StoredError>;
    return new ChildWorkflowFailedError(outcome.runId, outcome.workflow, error.class, error.message);
  };

  const api: StepApi = {
    run: (<T>(name: string, a: unknown, b?: unknown): Promise<T> => {
      const [options, fn] = (typeof a === 'function' ? [{}, a] : [a ?? {}, b]) as [StepRunOptions, (context: StepContext) => T | Promise<T>];
      return execution.runStep<T>(name, options, fn);
    }) as StepApi['run'],

    sleep: (name, duration) => {
      const ms = toMilliseconds(duration, `the duration of sleep step "${name}"`);
      return execution.sleepStep(name, () => execution.dbNow() + ms);
    },

    sleepUntil: (name, time) => {
      const at = toDate(time, `the time of sleep step "${name}"`).getTime();
      return execution.sleepStep(name, () => at);
    },

    waitForEvent: <P>(name: string, options: WaitForEventOptions = {}) => {
      if (!isPlainObject(options)) throw invalid(execution, `Expected the options of wait step "${name}" to be an object`);
      const event = options.event ?? name;
      if (typeof event !== 'string' || event.length === 0) {
        throw invalid(execution, `Expected \`event\` of wait step "${name}" to be a non-empty string, got ${typeof event}`);
      }
      const match = options.match ?? {};
      if (!isPlainObject(match)) {
        throw invalid(
          execution,
          `Expected \`match\` of wait step "${name}" to be a plain object such as { orderId: 42 } (the event payload must contain it), got ${Array.isArray(match) ? 'an array' : typeof match}`,
        );
      }
      const matchJson = encodeJson(match, `The match of wait step "${name}"`, env.options.maxPayloadSize)!;
      return execution.waitStep(name, {
        event,
        match: JSON.parse(matchJson) as Record<string, unknown>,
        allowPast: options.allowPastEvents === true,
        timeoutMs: timeoutOf(name, options.timeout),
      }) as Promise<P>;
    },

    sendEvent: (name, eventName, payload) => {
      if (typeof eventName !== 'string' || eventName.length === 0) {
        throw invalid(execution, `Expected the event name of step "${name}" to be a non-empty string`);
      }
      return execution.runStep(name, {}, async () => {
        const event = await env.notify(eventName, payload ?? {}, { id: derivedId(runId, name), source: `run:${runId}` });
        return { id: event.id, eventId: event.eventId, name: event.name };
      });
    },

    invoke: async <O>(name: string, workflow: WorkflowRef, input: unknown, options: InvokeOptions = {}) => {
      const onFailure = checkOnFailure(execution, name, options.onFailure);
      const outcome = await invokeOne(name, workflowName(execution, name, workflow), input, timeoutOf(name, options.timeout), tagsOf(execution, name, options.tags));
      if (outcome.status !== 'completed' && onFailure === 'raise') throw failureOf(outcome);
      return outcome as ChildOutcome<O>;
    },

    invokeMany: async <T, O>(
      name: string,
      items: readonly T[],
      options: InvokeManyOptions<T>,
      build: (item: T, index: number) => { workflow: WorkflowRef; input: unknown },
    ) => {
      if (!Array.isArray(items)) throw invalid(execution, `Expected the items of step "${name}" to be an array`);
      if (typeof build !== 'function') throw invalid(execution, `Expected step "${name}" to be given a function (item) => ({ workflow, input })`);
      const onFailure = checkOnFailure(execution, name, options?.onFailure);
      const limit = options?.concurrency ?? items.length;
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalid(execution, `Expected \`concurrency\` of step "${name}" to be an integer >= 1, got ${String(options?.concurrency)}`);
      }
      const keyOf = options?.key;
      const keys = items.map((item, index) => {
        const value =
          keyOf === undefined ? index : typeof keyOf === 'function' ? keyOf(item, index) : (item as Record<string, unknown>)?.[keyOf];
        if ((typeof value !== 'string' && typeof value !== 'number') || String(value).length === 0 || String(value).length > MAX_KEY) {
          throw invalid(execution, `Expected the key of item ${index} of step "${name}" to be a non-empty string (at most ${MAX_KEY} characters) or a number, got ${typeof value}`);
        }
        return String(value);
      });
      const seen = new Map<string, number>();
      keys.forEach((key, index) => {
        if (seen.has(key)) {
          throw invalid(execution, `Items ${seen.get(key)} and ${index} of step "${name}" have the same key "${key}": each item needs its own key, since it names the item's steps`);
        }
        seen.set(key, index);
      });
      const timeoutMs = timeoutOf(name, options?.timeout);
      const tags = tagsOf(execution, name, options?.tags);
      const outcomes: (ChildOutcome<O> & { key: string })[] = new Array(items.length);
      // A sliding window: a finished child frees its slot at once. Every item is started whatever
      // happens to the others, so a replay requests exactly the steps the first execution did.
      const inFlight = new Set<Promise<void>>();
      for (let index = 0; index < items.length; index++) {
        const request = build(items[index]!, index);
        const child = workflowName(execution, `${name}_${keys[index]}`, request?.workflow);
        const task = invokeOne(`${name}_${keys[index]}`, child, request.input, timeoutMs, tags).then((outcome) => {
          outcomes[index] = { ...(outcome as ChildOutcome<O>), key: keys[index]! };
        });
        inFlight.add(task);
        void task.finally(() => inFlight.delete(task)).catch(() => undefined);
        if (inFlight.size >= limit) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (onFailure === 'raise') {
        const failed = outcomes.find((outcome) => outcome.status !== 'completed');
        if (failed) throw failureOf(failed);
      }
      return outcomes;
    },

    waitForWorkflow: <O>(name: string, watchedRunId: string, options: { timeout?: unknown } = {}) => {
      if (typeof watchedRunId !== 'string' || watchedRunId.length === 0) {
        throw invalid(execution, `Expected the run id of step "${name}" to be a non-empty string`);
      }
      return watch(name, watchedRunId, timeoutOf(name, options.timeout)) as Promise<ChildOutcome<O>>;
    },

    // Patch gates (issue 15): one marker step per patch id.
    patched: (id) => {
      if (typeof id !== 'string' || id.length === 0) throw invalid(execution, `Expected the id of step.patched to be a non-empty string, got ${typeof id}`);
      return execution.patchStep(`${PATCH_PREFIX}${id}`);
    },
    // Signals (lib/signals/): the wait takes the oldest signal of its name buffered for this run, at its suspension.
    waitForSignal: <P>(name: string, options: WaitForSignalOptions) => {
      const signal = isPlainObject(options) ? options.signal : undefined;
      if (typeof signal !== 'string' || signal.length === 0 || signal.length > MAX_SIGNAL_NAME) {
        throw invalid(execution, `Expected \`signal\` of wait step "${name}" to be a non-empty string of at most ${MAX_SIGNAL_NAME} characters, got ${typeof signal}`);
      }
      const timeoutMs = timeoutOf(name, options.timeout);
      return execution.waitStep(name, { event: SIGNAL_WAIT_EVENT, match: {}, allowPast: false, timeoutMs, signal }) as Promise<P>;
    },
    // Composable waits: one step, one wait row per branch; the transaction that settles a branch settles the step.
    waitAny: (name, branches, options = {}) =>
      execution.waitGroupStep(name, { mode: 'any', branches: groupBranches(execution, env, name, 'waitAny', branches), timeoutMs: timeoutOf(name, options?.timeout) }) as never,
    waitAll: (name, branches, options = {}) =>
      execution.waitGroupStep(name, { mode: 'all', branches: groupBranches(execution, env, name, 'waitAll', branches), timeoutMs: timeoutOf(name, options?.timeout) }) as never,
  };
  return api;
}
