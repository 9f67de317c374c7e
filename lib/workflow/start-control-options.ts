import { checkInteger, invalidOption } from '../config.js';
import { toMilliseconds } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import type { WorkflowOptions } from '../types.js';
import { MAX_ID } from './ids.js';

/** A key function of a start-control option: the input → a non-empty string. */
type KeyFunction = (input: any) => string;

/** A workflow's singleton, rateLimit and debounce options, checked (see start-control.ts). */
export interface StartControl {
  singleton: { mode: 'skip' | 'cancel'; key: KeyFunction | undefined } | undefined;
  rateLimit: { limit: number; periodMs: number; key: KeyFunction | undefined } | undefined;
  debounce: { periodMs: number; maxWaitMs: number | undefined; key: KeyFunction | undefined } | undefined;
}

/** The keys one start is decided under ('' for an option without a key function), and nothing for an option not set. */
export interface StartKeys {
  singleton: string | null;
  rateLimit: string | null;
  debounce: string | null;
}

function objectOption(name: string, value: unknown, expected: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidOption(name, value, expected);
  return value as Record<string, unknown>;
}

/** A duration option (INVALID_OPTION naming it, as the flow's other options). */
function durationOption(name: string, value: unknown): number {
  try {
    return toMilliseconds(value, `\`${name}\``);
  } catch (error) {
    throw new DurableFlowError('INVALID_OPTION', (error as Error).message);
  }
}

function keyOption(name: string, value: unknown): KeyFunction | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw invalidOption(name, value, 'a function of the input returning a non-empty string');
  return value as KeyFunction;
}

/**
 * Checks the start-control options of workflow `name` (INVALID_OPTION for a bad value, INVALID_ARGUMENT
 * for a combination that means nothing); undefined when it has none, so its starts keep the fast path.
 */
export function resolveStartControl(name: string, options: WorkflowOptions): StartControl | undefined {
  const { singleton, rateLimit, debounce } = options;
  if (singleton === undefined && rateLimit === undefined && debounce === undefined) return undefined;
  const control: StartControl = { singleton: undefined, rateLimit: undefined, debounce: undefined };
  if (singleton !== undefined) {
    const value = objectOption('singleton', singleton, "{ mode: 'skip' | 'cancel', key?: (input) => string }");
    if (value.mode !== 'skip' && value.mode !== 'cancel') {
      throw invalidOption('singleton.mode', value.mode, "'skip' (a start returns the run in progress) or 'cancel' (a start cancels it and starts anew)");
    }
    control.singleton = { mode: value.mode, key: keyOption('singleton.key', value.key) };
  }
  if (rateLimit !== undefined) {
    const value = objectOption('rateLimit', rateLimit, '{ limit, period, key?: (input) => string }');
    control.rateLimit = {
      limit: checkInteger('rateLimit.limit', value.limit, 1, 1_000_000),
      periodMs: durationOption('rateLimit.period', value.period),
      key: keyOption('rateLimit.key', value.key),
    };
  }
  if (debounce !== undefined) {
    const value = objectOption('debounce', debounce, '{ period, key?: (input) => string, maxWait? }');
    const periodMs = durationOption('debounce.period', value.period);
    const maxWaitMs = value.maxWait === undefined ? undefined : durationOption('debounce.maxWait', value.maxWait);
    if (maxWaitMs !== undefined && maxWaitMs < periodMs) {
      throw invalidOption('debounce.maxWait', value.maxWait, `a duration of at least \`debounce.period\` (${periodMs} ms): it bounds the delay from a burst's first start, which is at least the period`);
    }
    control.debounce = { periodMs, maxWaitMs, key: keyOption('debounce.key', value.key) };
  }
  refuseCombinations(name, control, options);
  return control;
}

function refuseCombinations(name: string, control: StartControl, options: WorkflowOptions): void {
  const refuse = (message: string) => new DurableFlowError('INVALID_ARGUMENT', `Workflow "${name}": ${message}`);
  if (control.debounce && control.singleton) {
    throw refuse(
      "`debounce` and `singleton` cannot be combined: the pending debounced run is already the one run of its key, and a singleton would return it instead of folding the start into it. For one debounced run at a time, use `debounce` with `concurrency: { limit: 1, key }`",
    );
  }
  if (control.debounce && control.rateLimit) {
    throw refuse(
      '`debounce` and `rateLimit` cannot be combined: a start folded into a pending run creates no run to count or cancel. Bound how often a debounced run begins with `debounce.maxWait`, or rate-limit the workflow the debounced run starts',
    );
  }
  if (options.schedule !== undefined) {
    throw refuse(
      "`schedule` cannot be combined with `singleton`, `rateLimit` or `debounce`: a schedule's slots are governed by its `overlap` option ('skip' is a singleton, 'cancel_other' a singleton in mode 'cancel')",
    );
  }
}

function keyOf(workflow: string, option: string, key: KeyFunction | undefined, input: unknown): string {
  if (!key) return '';
  let value: unknown;
  try {
    value = key(input);
  } catch (error) {
    throw new DurableFlowError('INVALID_ARGUMENT', `The ${option} key function of workflow "${workflow}" threw: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Expected the ${option} key function of workflow "${workflow}" to return a non-empty string of at most ${MAX_ID} characters, got ${typeof value === 'string' ? `a string of ${value.length}` : typeof value}: return e.g. \`String(input.accountId)\``,
    );
  }
  return value;
}

/** The keys of one start of `workflow` (its key functions applied to the input; INVALID_ARGUMENT for a bad result). */
export function startKeys(workflow: string, control: StartControl, input: unknown): StartKeys {
  return {
    singleton: control.singleton ? keyOf(workflow, 'singleton', control.singleton.key, input) : null,
    rateLimit: control.rateLimit ? keyOf(workflow, 'rateLimit', control.rateLimit.key, input) : null,
    debounce: control.debounce ? keyOf(workflow, 'debounce', control.debounce.key, input) : null,
  };
}

/** Start options a workflow with start control refuses: `delay` with `debounce` (the debounce is the delay). */
export function checkControlledStart(workflow: string, control: StartControl, options: { delay?: unknown }): void {
  if (control.debounce && options.delay !== undefined) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Workflow "${workflow}" is debounced: a start cannot take \`delay\` (its run begins \`debounce.period\` after the last start of its burst); leave \`delay\` out, or change \`debounce.period\``,
    );
  }
}
