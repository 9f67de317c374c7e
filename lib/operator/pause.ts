import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';
import { DurableFlowError } from '../errors.js';

const todo = (): never => {
  throw new DurableFlowError('INVALID_STATE', 'Not built yet');
};

export async function pauseRun(_ctx: OperatorContext, _runId: string, _who: Who): Promise<boolean> {
  return todo();
}
export async function resumeRun(_ctx: OperatorContext, _runId: string, _who: Who): Promise<boolean> {
  return todo();
}
export async function pauseWorkflow(_ctx: OperatorContext, _name: string, _who: Who): Promise<boolean> {
  return todo();
}
export async function resumeWorkflow(_ctx: OperatorContext, _name: string, _who: Who): Promise<boolean> {
  return todo();
}
