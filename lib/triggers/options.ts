/**
 * The `on` workflow option, checked at flow.workflow(). A triggered run is inserted by SQL in the
 * event's transaction (lib/db/functions/event_triggers.sql), by whichever process stores the event,
 * which may not register the workflow: so everything the run needs must be known without calling the
 * workflow's code. What needs a function of the input is refused here, naming what to do instead.
 */
import { invalidOption } from '../config.js';
import { DurableFlowError } from '../errors.js';
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

/** The `on` option of workflow `name`, checked (INVALID_OPTION for a malformed entry, INVALID_ARGUMENT for a combination SQL cannot start). */
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
  if (triggers.length > 0) refuseFunctions(name, options);
  return triggers;
}

/**
 * The options whose value at start() comes from the workflow's code (key functions, a cancelOn match
 * function) or that decide a start under a lock the event's transaction cannot take in order
 * (singleton, rateLimit, debounce: their lock comes before the event name's). Refused with `on`.
 */
function refuseFunctions(name: string, options: WorkflowOptions): void {
  const instead = `start it from a small triggered workflow instead: flow.workflow('${name}-trigger', { on: [...] }, async ({ input, step }) => step.run('start', () => ${name}.start(input, { idempotencyKey: ... })))`;
  for (const option of ['singleton', 'rateLimit', 'debounce'] as const) {
    if (options[option] !== undefined) {
      throw new DurableFlowError(
        'INVALID_ARGUMENT',
        `Workflow "${name}" has both \`on\` and \`${option}\`: a triggered run is inserted by SQL in the event's transaction, which cannot take ${option}'s key lock (it is taken before the event's) nor call its key function; remove \`on\` and ${instead}`,
      );
    }
  }
  const concurrency = options.concurrency;
  if (typeof concurrency === 'object' && concurrency !== null && concurrency.key !== undefined) {
    throw new DurableFlowError(
      'INVALID_ARGUMENT',
      `Workflow "${name}" has both \`on\` and a \`concurrency.key\` function: a triggered run is inserted by SQL in the event's transaction, by a process that may not have this workflow's code; use a limit without a key (\`concurrency: n\`), or remove \`on\` and ${instead}`,
    );
  }
  (options.cancelOn ?? []).forEach((entry, i) => {
    if (typeof entry?.match === 'function') {
      throw new DurableFlowError(
        'INVALID_ARGUMENT',
        `Workflow "${name}" has both \`on\` and a \`cancelOn[${i}].match\` function: a triggered run is inserted by SQL, which cannot call it; give cancelOn a fixed match object, or remove \`on\` and ${instead}`,
      );
    }
  });
}
