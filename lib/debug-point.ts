/**
 * Named points in the engine where tests inject faults: make a step pause between its side effect and
 * its commit, throw at a chosen moment, or signal a test process. With no handler registered a debug
 * point costs one Map lookup; nothing is ever registered in production.
 */
export type DebugPointHandler = (data: Record<string, unknown>) => void | Promise<void>;

const handlers = new Map<string, DebugPointHandler>();

export function setDebugPoint(name: string, handler: DebugPointHandler | undefined): void {
  if (handler) handlers.set(name, handler);
  else handlers.delete(name);
}

export function clearDebugPoints(): void {
  handlers.clear();
}

export async function debugPoint(name: string, data: Record<string, unknown>): Promise<void> {
  const handler = handlers.get(name);
  if (handler) await handler(data);
}
