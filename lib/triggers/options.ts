/**
 * The `on` workflow option, checked at flow.workflow(). A triggered run is inserted by SQL in the
 * event's transaction (lib/db/functions/event_triggers.sql), by whichever process stores the event,
 * which may not register the workflow: everything the run needs is synced into the trigger table
 * (sync.ts). A workflow whose start needs its code (startNeedsCode) is started by a worker of its own
 * from a pending start the event's transaction stores (deferred.ts).
 */
import { invalidOption } from '../config.js';
import { encodeJson, isPlainObject } from '../json.js';
import type { WorkflowOptions } from '../types.js';

/** One entry of `on`, checked: its event name and match (a plain JSON object). */
export interface ResolvedTrigger {
  event: string;
  match: Record<string, unknown>;
}

/** Longest event name (the events table's `name`, as notify checks it). */
const MAX_EVENT_NAME = 255;
/** Largest `match`, as JSON. */
const MAX_MATCH_BYTES = 64 * 1024;

/** The `on` option of workflow `name`, checked (INVALID_OPTION naming a malformed entry). */
export function resolveTriggers(name: string, options: WorkflowOptions): ResolvedTrigger[] {
  const value = options.on;
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidOption('on', value, "an array of { event: string, match?: object }, e.g. [{ event: 'order.created' }]");
  const triggers = value.map((entry: unknown, i): ResolvedTrigger => {
    if (!isPlainObject(entry) || typeof entry.event !== 'string' || entry.event.length === 0 || entry.event.length > MAX_EVENT_NAME) {
      throw invalidOption(`on[${i}]`, entry, `an object { event: string of 1 to ${MAX_EVENT_NAME} characters, match?: object }`);
    }
    if (entry.match !== undefined && !isPlainObject(entry.match)) {
      throw invalidOption(`on[${i}].match`, entry.match, 'a plain JSON object the payload must contain (a trigger has no input to compute it from)');
    }
    const match = JSON.parse(encodeJson(entry.match ?? {}, `\`on[${i}].match\` of workflow "${name}"`, MAX_MATCH_BYTES)!) as Record<string, unknown>;
    return { event: entry.event, match };
  });
  return triggers;
}

/**
 * Whether a start of this workflow needs its code, which the process storing the event may not have:
 * start control (decided under a key lock taken before the event name's, and by key functions), a
 * throttle (its columns are set by start()), a concurrency key function, a cancelOn match function. Its triggers are then `deferred`: the event's
 * transaction stores a pending start that a worker registering the workflow finishes (deferred.ts).
 */
export function startNeedsCode(definition: {
  startControl?: unknown;
  /** A throttle's key and limit columns are set by start() (lib/workflow/throttle.ts). */
  throttle?: unknown;
  concurrency: { key: unknown } | undefined;
  cancelOn: readonly { match?: unknown }[];
}): boolean {
  return (
    definition.startControl !== undefined ||
    definition.throttle !== undefined ||
    definition.concurrency?.key !== undefined ||
    definition.cancelOn.some((entry) => typeof entry.match === 'function')
  );
}
