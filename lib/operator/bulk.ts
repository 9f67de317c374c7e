import type { BulkAction, BulkFilter, OperationInfo } from '../types.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';
import { DurableFlowError } from '../errors.js';

const todo = (): never => {
  throw new DurableFlowError('INVALID_STATE', 'Not built yet');
};

/** flow.bulk (see facade.ts). */
export async function startBulk(_ctx: OperatorContext, _action: BulkAction, _filter: BulkFilter, _who: Who): Promise<{ operationId: string; total: number }> {
  return todo();
}
/** flow.operation (see facade.ts): null when there is none. */
export async function getOperation(_ctx: OperatorContext, _operationId: string): Promise<OperationInfo | null> {
  return todo();
}
