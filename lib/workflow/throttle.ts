/**
 * The `throttle` workflow option (issue 16): at most `limit` runs of a key begin (their first execution
 * starts) in any interval of length `period`; the excess waits its turn and is never dropped. Checked
 * here; stored on the run at start (throttle_key, throttle_limit, throttle_period_ms, migration 013);
 * enforced by the claim (lib/db/functions/claim.sql) under an advisory lock per key.
 */
import { checkInteger, duration, invalidOption } from '../config.js';
import { DurableFlowError } from '../errors.js';
import type { WorkflowOptions } from '../types.js';
import { MAX_ID } from './ids.js';

/** A workflow's throttle, resolved: what the WorkflowDefinition exposes (the viewer shows it). */
export interface ResolvedThrottle {
  limit: number;
  periodMs: number;
  key: ((input: any) => string) | undefined;
}

/** The `throttle` option checked (INVALID_OPTION naming what is wrong), or undefined without one. */
export function resolveThrottle(value: WorkflowOptions['throttle']): ResolvedThrottle | undefined {
  if (value === undefined) return undefined;
  const expected = '{ limit, period, key?: (input) => string }';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidOption('throttle', value, expected);
  const option = value as unknown as Record<string, unknown>;
  const unknown = Object.keys(option).filter((name) => name !== 'limit' && name !== 'period' && name !== 'key');
  if (unknown.length > 0) throw invalidOption('throttle', value, `${expected} (unknown: ${unknown.join(', ')})`);
  if (option.key !== undefined && typeof option.key !== 'function') {
    throw invalidOption('throttle.key', option.key, 'a function of the input returning a non-empty string');
  }
  return {
    limit: checkInteger('throttle.limit', option.limit, 1, 100_000),
    periodMs: duration('throttle.period', option.period),
    key: option.key as ResolvedThrottle['key'],
  };
}

/** The run's throttle key (`<workflow>` or `<workflow>:<key(input)>`), limit and period, if its workflow has one. */
export function throttleOf(
  workflow: string,
  throttle: ResolvedThrottle | undefined,
  input: unknown,
): { key: string; limit: number; periodMs: number } | undefined {
  if (!throttle) return undefined;
  const { limit, periodMs } = throttle;
  if (!throttle.key) return { key: workflow, limit, periodMs };
  let value: unknown;
  try {
    value = throttle.key(input);
  } catch (error) {
    throw new DurableFlowError('INVALID_ARGUMENT', `The throttle key function of workflow "${workflow}" threw: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Expected the throttle key function of workflow "${workflow}" to return a non-empty string of at most ${MAX_ID} characters, got ${typeof value === 'string' ? `a string of ${value.length}` : typeof value}: return e.g. \`String(input.accountId)\``,
    );
  }
  return { key: `${workflow}:${value}`, limit, periodMs };
}
