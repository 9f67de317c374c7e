import type { Queryable } from '../db/queryable.js';
import type { Store } from '../db/store.js';
import { WaitTimeoutError } from '../errors.js';
import { signalStatements } from './sql.js';

/** A pending wait of step.waitForSignal, as a suspension's resolveWaits reads it (locked). */
export interface SignalWait {
  id: string;
  stepName: string;
  signalName: string;
  /** Its timeout on the flow's clock (ms), if any. */
  timeoutAt: number | null;
}

/** The WaitTimeoutError of a signal wait (its `eventName` is the signal's name). */
export function signalTimeout(signal: string, stepName: string): WaitTimeoutError {
  const error = new WaitTimeoutError(signal, stepName);
  error.message = `Timed out waiting for signal "${signal}" in step "${stepName}"`;
  return error;
}

/**
 * Inside a suspension's transaction, which holds the run's row lock (commitBatch) and its waits
 * (resolveWaits, FOR UPDATE): every pending signal wait takes the oldest signal of its name sent to
 * the run that no wait took yet, waits in the order they were created (the first of two waits takes the
 * first signal). A signal stored after a wait's timeout is too late for it and stays for a later wait.
 * The taken signals are marked consumed and their waits' steps succeed with their payloads, in one
 * statement. Returns the payload (JSON text) per step name settled.
 *
 * flow.signal takes the same row lock before it stores a signal: a signal committed before this
 * transaction took the lock is read here; one committed after finds the run suspended with its waits.
 */
export async function consumeSignals(store: Store, db: Queryable, run: string, waits: SignalWait[]): Promise<Map<string, string>> {
  const taken = new Map<string, string>();
  if (waits.length === 0) return taken;
  const statements = signalStatements(store.tables);
  const wanted = new Map<string, number>();
  for (const wait of waits) wanted.set(wait.signalName, (wanted.get(wait.signalName) ?? 0) + 1);
  const buffered = await db.query<{ id: string; name: string; at_ms: number }>(statements.bufferedSignals, [run, [...wanted.keys()], [...wanted.values()]]);
  if (buffered.length === 0) return taken;
  const byName = new Map<string, { id: string; atMs: number }[]>();
  for (const signal of buffered) {
    const list = byName.get(signal.name) ?? [];
    list.push({ id: signal.id, atMs: Number(signal.at_ms) });
    byName.set(signal.name, list);
  }
  const pairs: { wait_id: string; signal: string }[] = [];
  for (const wait of [...waits].sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)))) {
    const next = byName.get(wait.signalName)?.[0];
    // Signals come in the order they were stored: when the oldest is too late for this wait, all are.
    if (!next || (wait.timeoutAt !== null && next.atMs >= wait.timeoutAt)) continue;
    byName.get(wait.signalName)!.shift();
    pairs.push({ wait_id: wait.id, signal: next.id });
  }
  if (pairs.length === 0) return taken;
  const rows = await db.query<{ name: string; payload: string }>(statements.consumeSignals, [JSON.stringify(pairs), store.clockOffsetMs()]);
  // Under the run's lock nothing else consumes a signal: a shortfall is a bug, and must store nothing.
  if (rows.length !== pairs.length) throw new Error(`durable-flow: run ${run} consumed ${rows.length} of the ${pairs.length} signals it took; rolled back`);
  for (const row of rows) taken.set(row.name, row.payload);
  return taken;
}
