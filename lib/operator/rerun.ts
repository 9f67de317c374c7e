import type { ReplayOptions } from '../types.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';
import { DurableFlowError } from '../errors.js';

const todo = (): never => {
  throw new DurableFlowError('INVALID_STATE', 'Not built yet');
};

/** flow.replay (see facade.ts): returns the new run's id. */
export async function replayRun(_ctx: OperatorContext, _runId: string, _options: ReplayOptions, _who: Who): Promise<string> {
  return todo();
}
/** flow.rerunFrom (see facade.ts): returns the new run's id. */
export async function rerunFrom(_ctx: OperatorContext, _runId: string, _stepName: string, _options: ReplayOptions, _who: Who): Promise<string> {
  return todo();
}
