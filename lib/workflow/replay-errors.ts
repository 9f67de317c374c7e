import { DurableFlowError, NonDeterminismError } from '../errors.js';

/**
 * The errors an execution raises about the workflow code itself (not about a step's work), each
 * naming what is wrong and what to do.
 */

export function workerCrashed(runId: string, workflow: string, claimCount: number, maxRecoveries: number): DurableFlowError {
  return new DurableFlowError(
    'WORKER_CRASHED',
    `Run ${runId} of workflow "${workflow}" was claimed ${claimCount - 1} times in a row without its execution ending cleanly: the worker crashed, was killed or lost its lease each time (maxRecoveries is ${maxRecoveries}). It is failed so it stops crash-looping; fix the cause, then call flow.retry('${runId}').`,
  );
}

export function invalidStepName(name: unknown, kind: string, workflow: string, max: number): DurableFlowError {
  return new DurableFlowError(
    'INVALID_ARGUMENT',
    `Expected a step name to be a non-empty string of at most ${max} characters, got ${typeof name === 'string' ? `a string of ${name.length}` : typeof name} (${kind} step in workflow "${workflow}")`,
  );
}

export function duplicateStepName(name: string, workflow: string): DurableFlowError {
  return new DurableFlowError(
    'DUPLICATE_STEP_NAME',
    `Step name "${name}" was used twice in one run of workflow "${workflow}". Step names identify stored results, so each must be unique within a run: add a distinguishing part, e.g. \`${name}-\${item.id}\`.`,
  );
}

/** A stored step is now called as another kind of step (a `run` step became a `sleep`, …). */
export function stepKindChanged(name: string, runId: string, storedKind: string, kind: string): NonDeterminismError {
  return new NonDeterminismError(
    `Step "${name}" of run ${runId} is stored as a ${storedKind} step but the workflow now calls it as a ${kind} step: the code changed under a run in flight. Restore the old step, or cancel the run.`,
  );
}

/** New steps are called while stored ones were never reached: a step was renamed, removed or inserted. */
export function codeChanged(workflow: string, runId: string, fresh: string[], unvisited: string[]): NonDeterminismError {
  const quote = (names: string[]) => names.map((n) => `"${n}"`).join(', ');
  return new NonDeterminismError(
    `The code of workflow "${workflow}" no longer matches the history of run ${runId}: it calls new step ${quote(fresh)} while stored step ${quote(unvisited)} ${unvisited.length === 1 ? 'was' : 'were'} not reached. A step was renamed, removed or inserted while this run was in flight. Restore the previous step names (or deploy the change only for new runs), then call flow.retry('${runId}'); or cancel the run.`,
  );
}
