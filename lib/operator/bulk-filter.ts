import { invalidOption } from '../config.js';
import { toDate } from '../duration.js';
import { DurableFlowError } from '../errors.js';
import { RUN_STATUSES as STATUSES } from '../run-status.js';
import type { BulkAction, BulkFilter, RunStatus } from '../types.js';

export const BULK_ACTIONS: readonly BulkAction[] = ['cancel', 'retry', 'replay'];
const KEYS = ['workflow', 'status', 'createdAfter', 'createdBefore', 'errorCode'] as const;

/** A filter as the operation row stores it: times as ISO strings, absent keys left out. */
export interface StoredFilter {
  workflow?: string;
  status?: RunStatus;
  createdAfter?: string;
  createdBefore?: string;
  errorCode?: string;
}

export function checkAction(action: unknown): BulkAction {
  if (!BULK_ACTIONS.includes(action as BulkAction)) throw invalidOption('action', action, `one of ${BULK_ACTIONS.join(', ')}`);
  return action as BulkAction;
}

/** `filter` checked (an unknown key or a bad value is INVALID_OPTION naming it) and normalised. */
export function checkFilter(filter: unknown): StoredFilter {
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) {
    throw invalidOption('filter', filter, `an object { ${KEYS.join('?, ')}? }`);
  }
  for (const key of Object.keys(filter)) {
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new DurableFlowError('INVALID_OPTION', `Unknown filter key \`${key}\`: a bulk filter takes ${KEYS.join(', ')}`);
    }
  }
  const { workflow, status, createdAfter, createdBefore, errorCode } = filter as BulkFilter;
  const out: StoredFilter = {};
  const text = (name: string, value: unknown): string => {
    if (typeof value !== 'string' || value.length === 0 || value.length > 1000)
      throw invalidOption(`filter.${name}`, value, 'a non-empty string');
    return value;
  };
  const time = (name: string, value: unknown): string => {
    try {
      return toDate(value, `\`filter.${name}\``).toISOString();
    } catch (error) {
      throw new DurableFlowError('INVALID_OPTION', (error as Error).message);
    }
  };
  if (workflow !== undefined) out.workflow = text('workflow', workflow);
  if (status !== undefined) {
    if (!STATUSES.includes(status)) throw invalidOption('filter.status', status, `one of ${STATUSES.join(', ')}`);
    out.status = status;
  }
  if (createdAfter !== undefined) out.createdAfter = time('createdAfter', createdAfter);
  if (createdBefore !== undefined) out.createdBefore = time('createdBefore', createdBefore);
  if (errorCode !== undefined) out.errorCode = text('errorCode', errorCode);
  return out;
}

/** What each action applies to, whatever the filter says. */
const APPLIES: Record<BulkAction, string> = {
  cancel: `r.status NOT IN ('completed', 'failed', 'cancelled')`,
  retry: `r.status = 'failed'`,
  replay: 'TRUE',
};

/**
 * The selection of an operation as a condition on `r` (the runs table), its values appended to
 * `bind` (so it composes with the caller's own parameters): the filter AND what the action applies to.
 * `createdAfter` is inclusive, `createdBefore` exclusive.
 */
export function selectionSql(action: BulkAction, filter: StoredFilter, bind: unknown[]): string {
  const where = [APPLIES[action]];
  const add = (condition: string, value: unknown) => {
    bind.push(value);
    where.push(condition.replace('?', `$${bind.length}`));
  };
  if (filter.workflow !== undefined) add('r.workflow_name = ?', filter.workflow);
  if (filter.status !== undefined) add('r.status = ?', filter.status);
  if (filter.createdAfter !== undefined) add('r.created_at >= ?::timestamptz', filter.createdAfter);
  if (filter.createdBefore !== undefined) add('r.created_at < ?::timestamptz', filter.createdBefore);
  if (filter.errorCode !== undefined) add(`r.error->>'code' = ?`, filter.errorCode);
  return where.join(' AND ');
}
