import { createHash } from 'node:crypto';

/** Longest run id, idempotency key and event id (the columns' limit, checked where users give them). */
export const MAX_ID = 255;
/** Longest step name. */
export const MAX_STEP_NAME = 500;

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The id durable-flow derives for a step of a run: a child run's idempotency key, the id of an event
 * `step.sendEvent` stores, a step body's `idempotencyKey`. `<runId>:<stepName>` when that fits in an
 * id; otherwise shortened with a hash of the whole, so it is valid for every valid run id and step
 * name, stable across replays, and still readable.
 */
export function derivedId(runId: string, stepName: string): string {
  const plain = `${runId}:${stepName}`;
  if (plain.length <= MAX_ID) return plain;
  return `${runId.slice(0, 120)}:${stepName.slice(0, 60)}:${digest(`${runId}\u0000${stepName}`).slice(0, 40)}`;
}

/**
 * A step name durable-flow derives from the user's (`<name>_start`, `<name>_<key>_wait`), kept within
 * the step-name limit: a base too long for its suffix is cut and completed by a hash of it, so two
 * bases never share a name and a replay derives the same one.
 */
export function derivedStepName(base: string, suffix: string): string {
  const room = MAX_STEP_NAME - suffix.length;
  if (base.length <= room) return `${base}${suffix}`;
  return `${base.slice(0, room - 17)}~${digest(base).slice(0, 16)}${suffix}`;
}
