import { toMilliseconds } from '../duration.js';
import type { DurationInput } from '../duration.js';
import { DurableFlowError } from '../errors.js';

/**
 * How long finished runs and stored events are kept (flow option `retention`). Each age is a duration
 * or `false` (keep those for ever); `retention: false` keeps everything.
 */
export interface RetentionOptions {
  /** Completed runs, counted from their completion. Default `'30 days'`. */
  completed?: DurationInput | false;
  /** Cancelled runs, from their cancellation. Default `'30 days'`. */
  cancelled?: DurationInput | false;
  /** Failed runs, from their failure. Default `'90 days'`: long enough to retry them after a holiday. */
  failed?: DurationInput | false;
  /** Events, from when they were stored, once no pending wait could match them. Default `'7 days'`. */
  events?: DurationInput | false;
  /**
   * Audit entries (and finished bulk operations), from when they were written. Default `'400 days'`:
   * longer than any run is kept by default, so the trail outlives the runs it names.
   */
  audit?: DurationInput | false;
}

/** Ages in ms; null: kept for ever. */
export interface ResolvedRetention {
  completedMs: number | null;
  cancelledMs: number | null;
  failedMs: number | null;
  eventsMs: number | null;
  auditMs: number | null;
}

export const RETENTION_DEFAULTS = { completed: '30 days', cancelled: '30 days', failed: '90 days', events: '7 days', audit: '400 days' } as const;

const KEYS = ['completed', 'cancelled', 'failed', 'events', 'audit'] as const;

function age(key: (typeof KEYS)[number], value: DurationInput | false | undefined): number | null {
  if (value === false) return null;
  let ms: number;
  try {
    ms = toMilliseconds(value ?? RETENTION_DEFAULTS[key], `\`retention.${key}\``);
  } catch (error) {
    throw new DurableFlowError('INVALID_OPTION', `${(error as Error).message}, or false to keep them for ever`);
  }
  if (ms < 1000) {
    throw new DurableFlowError('INVALID_OPTION', `Expected \`retention.${key}\` to be at least 1 second, or false to keep them for ever; got ${ms} ms`);
  }
  return ms;
}

export function resolveRetention(value: RetentionOptions | false | undefined): ResolvedRetention {
  if (value === false) return { completedMs: null, cancelledMs: null, failedMs: null, eventsMs: null, auditMs: null };
  const options = value ?? {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new DurableFlowError(
      'INVALID_OPTION',
      `Expected \`retention\` to be an object such as { completed: '30 days', failed: '90 days' }, or false to keep everything; got ${JSON.stringify(value)}`,
    );
  }
  const unknown = Object.keys(options).filter((key) => !(KEYS as readonly string[]).includes(key));
  if (unknown.length > 0) {
    throw new DurableFlowError('INVALID_OPTION', `Unknown \`retention\` key ${JSON.stringify(unknown[0])}: expected ${KEYS.join(', ')}`);
  }
  return {
    completedMs: age('completed', options.completed),
    cancelledMs: age('cancelled', options.cancelled),
    failedMs: age('failed', options.failed),
    eventsMs: age('events', options.events),
    auditMs: age('audit', options.audit),
  };
}
