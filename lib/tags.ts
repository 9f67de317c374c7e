/**
 * Run tags (migration 015): string keys to string values given at start() and stored with the run,
 * for finding its runs again (`?tag=customer:c1` in the viewer and its JSON list). The rules below keep
 * a run's row and its entries in the tags index small, and make every tag writable as `key:value` in a
 * URL: the filter splits at the first `:`, so a key has none (a value may).
 */
import { DurableFlowError } from './errors.js';
import { isPlainObject } from './json.js';

/** A run's tags: string keys to string values. */
export type RunTags = Record<string, string>;

/** The start option (StartOptions, InvokeOptions). */
export interface TagOptions {
  /** Tags stored with the run, e.g. `{ customer: 'c1' }`: at most 20, keys of letters, digits and `_ . - /` (at most 64), values of 1 to 256 characters. A child run (step.invoke) and a replay carry their parent's (the replayed run's) tags with these merged over them. Default: none. */
  tags?: RunTags;
}

/** getRun().tags. */
export interface RunTagsInfo {
  /** The run's tags (its own merged over those it inherited); `{}` without any. */
  tags: RunTags;
}

export const MAX_TAGS = 20;
export const MAX_TAG_KEY = 64;
export const MAX_TAG_VALUE = 256;
const KEY = /^[A-Za-z0-9_./-]+$/;
const KEY_RULE = `1 to ${MAX_TAG_KEY} letters, digits, '_', '.', '-' or '/' (no ':', which separates key and value in a \`?tag=key:value\` filter)`;
const VALUE_RULE = `a string of 1 to ${MAX_TAG_VALUE} characters`;

/** What is wrong with a tag key, or null when it is a good one. */
function keyProblem(key: string): string | null {
  return key.length > 0 && key.length <= MAX_TAG_KEY && KEY.test(key) ? null : `a tag key must be ${KEY_RULE}`;
}

/** What is wrong with a tag value, or null. Postgres text cannot hold U+0000. */
function valueProblem(value: unknown): string | null {
  if (typeof value !== 'string') return `a tag value must be ${VALUE_RULE}, got ${value === null ? 'null' : typeof value}${typeof value === 'number' || typeof value === 'boolean' ? ` (write it as the string '${String(value)}')` : ''}`;
  if (value.length === 0 || value.length > MAX_TAG_VALUE) return `a tag value must be ${VALUE_RULE}, got one of ${value.length}`;
  return value.includes('\u0000') ? 'a tag value must not contain the character U+0000' : null;
}

const show = (key: string): string => JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key);

/** The `tags` start option checked (INVALID_ARGUMENT naming the bad tag and the rule); `{}` when absent. */
export function checkTags(value: unknown, what = '`tags`'): RunTags {
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected ${what} to be an object of string keys to string values, such as { customer: 'c1' }, got ${Array.isArray(value) ? 'an array' : typeof value}`);
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_TAGS) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected at most ${MAX_TAGS} tags in ${what}, got ${entries.length}: keep the ones you filter runs by`);
  }
  for (const [key, tag] of entries) {
    const problem = keyProblem(key) ?? valueProblem(tag);
    if (problem) throw new DurableFlowError('INVALID_ARGUMENT', `Invalid tag ${show(key)} in ${what}: ${problem}`);
  }
  return Object.fromEntries(entries) as RunTags;
}

/** One `key:value` filter parsed, split at the first ':'; or what is wrong with it (for a 400). */
export function parseTagFilter(text: string): { key: string; value: string } | { problem: string } {
  const colon = text.indexOf(':');
  if (colon < 0) return { problem: `Invalid tag filter ${show(text)}: expected key:value, such as customer:c1` };
  const key = text.slice(0, colon);
  const value = text.slice(colon + 1);
  const problem = keyProblem(key) ?? valueProblem(value);
  return problem ? { problem: `Invalid tag filter ${show(text)}: ${problem}` } : { key, value };
}
