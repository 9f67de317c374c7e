import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';
import { DurableFlowError } from '../errors.js';

const todo = (): never => {
  throw new DurableFlowError('INVALID_STATE', 'Not built yet');
};

/** flow.resolveWait (see facade.ts). */
export async function resolveWait(_ctx: OperatorContext, _runId: string, _stepName: string, _payload: unknown, _who: Who): Promise<void> {
  return todo();
}
/** flow.completeStep (see facade.ts). */
export async function completeStep(_ctx: OperatorContext, _runId: string, _stepName: string, _result: unknown, _who: Who): Promise<void> {
  return todo();
}
