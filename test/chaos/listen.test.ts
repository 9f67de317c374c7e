/**
 * LISTEN/NOTIFY faults (reliability.md C2, C5, C7): the listener's connection gone silent (half-open,
 * through test/chaos/proxy.ts), notifications rolled back, repeated, spurious or for deleted rows, and
 * the listener's session watched in pg_stat_activity while notifications pour in.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { Listener } from '../../lib/worker/listener.js';
import { ADMIN_URL } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { setupDatabase } from '../helpers/flow.js';
import { startProxy } from './proxy.js';
import type { PgProxy, ProxiedConnection } from './proxy.js';

let ctx: TestContext;
let flow: DurableFlow;
let proxy: PgProxy;

beforeAll(async () => {
  ctx = await setupDatabase('listen');
  flow = ctx.flow();
  const admin = new URL(ADMIN_URL);
  proxy = await startProxy({ host: admin.hostname, port: Number(admin.port || 5432) });
});
afterEach(() => proxy.heal());
afterAll(async () => {
  await proxy?.close();
  await ctx?.cleanup();
});

const quiet = { warn: () => undefined, error: () => undefined };

describe('a silent LISTEN connection', () => {
  it('C2: is noticed by its check within the check interval plus timeout, replaced on a new backend, and the worker catches up on the run it missed', async () => {
    // The worker's flow reaches Postgres through the proxy; it polls only once a minute, so a run it
    // starts sooner was woken by NOTIFY or by the catch-up after a reconnect.
    const remote = ctx.flow({ databaseUrl: proxy.url(ctx.db.name), applicationName: 'c2-worker' });
    const wf = flow.workflow('c2', async ({ input }: WorkflowContext<number>) => input);
    remote.workflow('c2', async ({ input }: WorkflowContext<number>) => input);
    const worker = remote.worker({ pollInterval: '1 minute' });
    await worker.start();
    try {
      expect(await (await wf.start(1)).result({ timeout: '10 seconds' })).toBe(1);
      // The worker is idle (no claim of its own still on the way that could find the next run).
      await eventually(async () => {
        const { rows } = await flow.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'c2-worker' AND state <> 'idle'`);
        return rows.length === 0 && worker.active === 0;
      });
      const pid = remote.listener.pid!;
      expect(proxy.blackhole((c) => c.applicationName === 'c2-worker-listen')).toBe(1);
      const missed = await wf.start(2); // its NOTIFY goes into the blackhole
      // Default check: every 10 s, a query with a 5 s timeout; the next poll is a minute away.
      expect(await missed.result({ timeout: '40 seconds' })).toBe(2);
      expect(remote.listener.reconnects).toBe(1);
      expect(remote.listener.pid).not.toBe(pid);
      // The new connection LISTENs again: the next run is woken at once.
      expect(proxy.connections((c) => c.applicationName === 'c2-worker-listen' && c.listens && c.mode === 'forward')).toHaveLength(1);
      expect(await (await wf.start(3)).result({ timeout: '10 seconds' })).toBe(3);
    } finally {
      await worker.stop();
      await remote.close();
    }
  });

  it('C2: a reconnect into a partition times out and is tried again, instead of connecting forever', async () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => void warnings.push(`${Date.now()} ${m}`), error: (m: string) => void warnings.push(m) };
    const listener = new Listener({ connection: { connectionString: proxy.url(ctx.db.name), application_name: 'c2-partition' }, logger, checkIntervalMs: 1000 });
    const mine = (c: ProxiedConnection) => c.applicationName?.startsWith('c2-partition') === true;
    let caughtUp = 0;
    listener.onReconnect(() => void caughtUp++);
    const received: string[] = [];
    try {
      await listener.listen('c2_channel', (payload) => void received.push(payload));
      expect(listener.state).toBe('listening');
      // Everything it has goes silent, and what it opens next never gets an answer.
      proxy.partition(mine);
      expect(proxy.blackhole(mine)).toBe(1);
      await eventually(() => listener.state !== 'listening', 10_000);
      // A reconnect attempt reached the partition: heal it; the attempt must give up and try again.
      await eventually(() => proxy.connections((c) => mine(c) && c.mode === 'blackhole').length >= 2, 10_000);
      proxy.heal();
      await eventually(() => listener.state === 'listening', 20_000);
      expect(caughtUp, warnings.join('\n')).toBe(1);
      await flow.pool.query(`SELECT pg_notify('c2_channel', 'after the partition')`);
      await eventually(() => received.includes('after the partition'));
    } finally {
      await listener.close();
    }
  });

  it('C2: close() returns even while the connection is half-open (its goodbye goes nowhere)', async () => {
    const listener = new Listener({ connection: { connectionString: proxy.url(ctx.db.name), application_name: 'c2-close' }, logger: quiet });
    await listener.listen('c2_channel', () => undefined);
    expect(proxy.blackhole((c) => c.applicationName === 'c2-close-listen')).toBe(1);
    const closed = listener.close().then(() => 'closed');
    const late = new Promise((resolve) => setTimeout(() => resolve('still closing'), 20_000).unref());
    expect(await Promise.race([closed, late])).toBe('closed');
  });
});
