import type pg from 'pg';

/**
 * A gate on a pool: while it is held, new queries and connections wait for it to open. The change
 * feed holds it while a first subscription is being set up (LISTEN, live mode on), so that every
 * change this process commits after `flow.onChange()` returns is sent as a NOTIFY someone listens to.
 * `direct` runs a query past the gate (the feed's own statements, which open it).
 */
export interface PoolGate {
  hold(until: Promise<unknown>): void;
  direct: pg.Pool['query'];
}

/** Installs the gate on `pool`'s `query` and `connect` (an instance wrap: every caller of the pool is covered). */
export function gatePool(pool: pg.Pool): PoolGate {
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  let gate: Promise<void> | undefined;
  // A callback-style call cannot wait for a promise; durable-flow only makes promise-style calls.
  const gated =
    (original: (...args: unknown[]) => unknown) =>
    (...args: unknown[]): unknown =>
      gate === undefined || typeof args[args.length - 1] === 'function' ? original(...args) : gate.then(() => original(...args));
  pool.query = gated(query) as pg.Pool['query'];
  pool.connect = gated(connect) as pg.Pool['connect'];
  return {
    hold(until) {
      const current: Promise<void> = until.then(
        () => undefined,
        () => undefined,
      );
      gate = current;
      void current.then(() => {
        if (gate === current) gate = undefined;
      });
    },
    direct: query as pg.Pool['query'],
  };
}
