/**
 * LISTEN/NOTIFY faults (reliability.md C2, C5, C7): the listener's connection gone silent (half-open,
 * through test/chaos/proxy.ts), notifications rolled back, repeated, spurious or for deleted rows, and
 * the listener's session watched in pg_stat_activity while notifications pour in.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { DurableFlow } from '../../lib/index.js';
import type { WorkflowContext } from '../../lib/index.js';
import { Listener } from '../../lib/worker/listener.js';
import { ADMIN_URL } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';
import { setupDatabase } from '../helpers/flow.js';
import { startOwnPostgres } from './own-postgres.js';
import type { OwnPostgres } from './own-postgres.js';
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
      // The worker is idle (no claim of its own still on the way that could find the next run): its
      // sessions idle and nothing executing, five times in a row 40 ms apart (a claim loop between two
      // of its statements shows no active session for a moment).
      let idleInARow = 0;
      await eventually(async () => {
        const { rows } = await flow.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'c2-worker' AND state <> 'idle'`);
        idleInARow = rows.length === 0 && worker.active === 0 ? idleInARow + 1 : 0;
        return idleInARow >= 5;
      }, 10_000, 40);
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

describe('the pg-listen subscriber and its supervisor', () => {
  it('C1: after its backend is killed, pg-listen reconnects and LISTENs again to every channel, and the catch-up runs once', async () => {
    const listener = new Listener({ connection: { connectionString: ctx.db.url, application_name: 'c1-relisten' }, logger: quiet });
    let caughtUp = 0;
    listener.onReconnect(() => void caughtUp++);
    const received: string[] = [];
    try {
      await listener.listen('c1_one', (payload) => void received.push(`one ${payload}`));
      await listener.listen('c1_two', (payload) => void received.push(`two ${payload}`));
      const pid = listener.pid!;
      await flow.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(() => listener.state === 'listening' && listener.pid !== undefined && listener.pid !== pid, 10_000);
      expect(listener.reconnects).toBe(1);
      expect(caughtUp).toBe(1);
      const { rows } = await flow.pool.query<{ channel: string }>(
        `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND application_name = 'c1-relisten-listen'`,
        [listener.pid],
      );
      expect(rows).toHaveLength(1);
      await flow.pool.query(`SELECT pg_notify('c1_one', 'a'), pg_notify('c1_two', 'b')`);
      await eventually(() => received.includes('one a') && received.includes('two b'));
    } finally {
      await listener.close();
    }
  });

  it('C1: a channel first listened to while pg-listen is reconnecting is LISTENed once it is back', async () => {
    const mine = (c: ProxiedConnection) => c.applicationName?.startsWith('c1-late') === true;
    const listener = new Listener({ connection: { connectionString: proxy.url(ctx.db.name), application_name: 'c1-late' }, logger: quiet, checkIntervalMs: 1000 });
    const received: string[] = [];
    try {
      await listener.listen('c1_early', (payload) => void received.push(`early ${payload}`));
      const pid = listener.pid!;
      proxy.partition(mine); // its reconnect attempts get no answer until heal()
      await flow.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(() => listener.state !== 'listening', 10_000);
      await listener.listen('c1_late', (payload) => void received.push(`late ${payload}`));
      expect(listener.state).not.toBe('listening');
      proxy.heal();
      await eventually(() => listener.state === 'listening', 20_000);
      expect(listener.pid).not.toBe(pid);
      await flow.pool.query(`SELECT pg_notify('c1_early', 'a'), pg_notify('c1_late', 'b')`);
      await eventually(() => received.includes('early a') && received.includes('late b'));
    } finally {
      await listener.close();
    }
  });

  // Freezing a backend takes a signal to the server's process: only as root, with Postgres on this machine.
  it.skipIf(process.getuid?.() !== 0)('C2: a frozen backend (SIGSTOP) fails the NOTIFY round trip, the subscriber is replaced, and a NOTIFY then wakes the worker at once', async () => {
    const remote = ctx.flow({ applicationName: 'c2-frozen' });
    const wf = flow.workflow('c2-frozen', async ({ input }: WorkflowContext<number>) => input);
    remote.workflow('c2-frozen', async ({ input }: WorkflowContext<number>) => input);
    const worker = remote.worker({ pollInterval: '1 minute' });
    await worker.start();
    let frozen: number | undefined;
    try {
      expect(await (await wf.start(1)).result({ timeout: '10 seconds' })).toBe(1);
      frozen = remote.listener.pid!;
      // The backend's process stops: its socket stays open, nothing answers (no error, no end).
      process.kill(frozen, 'SIGSTOP');
      const missed = await wf.start(2); // its NOTIFY reaches a backend that never passes it on
      // Default check: every 10 s a round trip with a 5 s timeout; the next poll is a minute away.
      expect(await missed.result({ timeout: '40 seconds' })).toBe(2);
      expect(remote.listener.reconnects).toBe(1);
      expect(remote.listener.pid).not.toBe(frozen);
      expect(await (await wf.start(3)).result({ timeout: '10 seconds' })).toBe(3);
    } finally {
      if (frozen !== undefined) {
        process.kill(frozen, 'SIGCONT');
        await flow.pool.query('SELECT pg_terminate_backend($1)', [frozen]);
      }
      await worker.stop();
      await remote.close();
    }
  });

  it('C2: a first connect that fails is retried until it succeeds (listen() does not wait for it)', async () => {
    const mine = (c: ProxiedConnection) => c.applicationName?.startsWith('c2-first') === true;
    proxy.partition(mine);
    const listener = new Listener({ connection: { connectionString: proxy.url(ctx.db.name), application_name: 'c2-first' }, logger: quiet, checkIntervalMs: 1000 });
    const received: string[] = [];
    try {
      await listener.listen('c2_first', (payload) => void received.push(payload));
      expect(listener.state).not.toBe('listening');
      proxy.heal();
      await eventually(() => listener.state === 'listening', 20_000);
      expect(listener.reconnects).toBe(0); // the first connection: nothing was missed, no catch-up
      await flow.pool.query(`SELECT pg_notify('c2_first', 'at last')`);
      await eventually(() => received.includes('at last'));
    } finally {
      await listener.close();
    }
  });
});

describe('NOTIFY semantics', () => {
  /** A plain client LISTENing to the engine's two channels, recording what arrives. */
  async function observer(url: string) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const seen: string[] = [];
    client.on('notification', (n) => void seen.push(`${n.channel} ${n.payload ?? ''}`));
    await client.query('LISTEN durable_flow_wake; LISTEN durable_flow_changes');
    return { seen, close: () => client.end() };
  }

  it('C5: a NOTIFY in a rolled-back transaction delivers nothing: no run, no wake-up, no change', async () => {
    const wf = flow.workflow('c5-rollback', async () => 'ran');
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    const changes: string[] = [];
    const unsubscribe = flow.onChange((change) => void changes.push(`${change.type} ${change.runId}`));
    const watch = await observer(ctx.db.url);
    const client = await flow.pool.connect();
    try {
      await flow.changesReady();
      await client.query('BEGIN');
      const run = await wf.start({}, { transaction: client });
      await client.query(`SELECT pg_notify('durable_flow_wake', 'default'), pg_notify('durable_flow_changes', 'r:u:1')`);
      await client.query('ROLLBACK');
      // Notifications arrive in commit order: once this one is seen, a rolled-back one never will be.
      await flow.pool.query(`SELECT pg_notify('durable_flow_wake', 'c5-marker')`);
      await eventually(() => watch.seen.includes('durable_flow_wake c5-marker'));
      expect(watch.seen).toEqual(['durable_flow_wake c5-marker']);
      expect(await flow.getRun(run.runId)).toBeNull();
      expect(worker.stats.claimed).toBe(0);
      expect(changes.filter((c) => c.includes(run.runId))).toEqual([]);
    } finally {
      client.release();
      unsubscribe();
      await watch.close();
      await worker.stop();
    }
  });

  it('C5: repeated, unknown and deleted-row notifications on the wake and changes channels are no-ops: subscribers get only real changes, each run runs once', async () => {
    const wf = flow.workflow('c5-noise', async ({ step, input }: WorkflowContext<number>) => step.run('only', () => input));
    const worker = flow.worker({ pollInterval: '1 minute' });
    await worker.start();
    const changes: { type: string; runId: string | null; recordId: string; snapshot: Record<string, unknown> }[] = [];
    const unsubscribe = flow.onChange((change) => void changes.push(change));
    try {
      await flow.changesReady();
      const real = await wf.start(1);
      expect(await real.result({ timeout: '10 seconds' })).toBe(1);
      const { rows: [row] } = await flow.pool.query<{ id: string }>('SELECT id::text FROM durable_flow_workflow_runs WHERE run_id = $1', [real.runId]);
      await eventually(() => changes.some((c) => c.runId === real.runId && c.snapshot.status === 'completed'));
      // …and every other change of that run (its steps may come in a later batch than its completion).
      let stable = 0;
      let seen = -1;
      await eventually(() => {
        stable = changes.length === seen ? stable + 1 : 0;
        seen = changes.length;
        return stable >= 5;
      }, 10_000, 40);
      // A run deleted after its notification was sent (its id is one that existed).
      const gone = await wf.start(2, { delay: '1 hour' });
      const { rows: [goneRow] } = await flow.pool.query<{ id: string }>('DELETE FROM durable_flow_workflow_runs WHERE run_id = $1 RETURNING id::text', [gone.runId]);
      const before = changes.length;

      // Each in a transaction of its own (Postgres folds identical notifications of one transaction).
      for (let i = 0; i < 10; i++) {
        await flow.pool.query(`SELECT pg_notify('durable_flow_changes', $1), pg_notify('durable_flow_wake', 'default')`, [`r:u:${row!.id}`]);
      }
      for (const payload of ['r:u:999999999', 's:c:999999999', 'w:u:999999999', 'e:c:999999999', 'l:c:999999999', `r:u:${goneRow!.id}`, 'x:y:1', '']) {
        await flow.pool.query(`SELECT pg_notify('durable_flow_changes', $1)`, [payload]);
      }
      for (const queue of ['*', 'nobody', '', 'default']) await flow.pool.query(`SELECT pg_notify('durable_flow_wake', $1)`, [queue]);
      // A real change after the noise: once it arrives, everything before it was handled.
      const after = await wf.start(3);
      expect(await after.result({ timeout: '10 seconds' })).toBe(3);
      await eventually(() => changes.some((c) => c.runId === after.runId && c.snapshot.status === 'completed'));

      const noise = changes.slice(before).filter((c) => c.runId !== after.runId);
      // Nothing for ids that do not exist (or no longer do); the real run's row unchanged.
      expect(noise.filter((c) => c.runId !== real.runId)).toEqual([]);
      const current = await flow.getRun(real.runId);
      for (const change of noise) expect(change.snapshot.status).toBe(current!.status);
      expect(noise.length, 'a repeated notification of an unchanged record is not a change').toBe(0);
      // The wake-ups claimed nothing twice: every run was executed once.
      expect(worker.stats.claimed).toBe(2);
      expect(worker.state).toBe('running');
    } finally {
      unsubscribe();
      await worker.stop();
    }
  });
});

describe('on a server of its own (the notification queue is the whole cluster’s)', () => {
  let server: OwnPostgres;
  let own: DurableFlow;

  beforeAll(async () => {
    server = await startOwnPostgres();
    const client = new pg.Client({ connectionString: server.url() });
    await client.connect();
    await client.query('CREATE DATABASE c7');
    await client.end();
    own = new DurableFlow({ databaseUrl: server.url('c7'), logger: false });
    await own.migrate();
  });
  afterAll(async () => {
    await own?.close({ timeout: 1000 }).catch(() => undefined);
    server?.destroy();
  });

  const PAGE = 1 / 1_048_560; // pg_notification_queue_usage() of one 8 kB queue page (Postgres 15)
  const usage = async () => (await own.pool.query<{ u: number }>('SELECT pg_notification_queue_usage() AS u')).rows[0]!.u;

  /** The states the listener's session was seen in (every 10 ms) while `work` ran. */
  async function statesDuring(work: () => Promise<unknown>): Promise<string[]> {
    const states = new Set<string>();
    const probe = new pg.Client({ connectionString: server.url('c7') });
    await probe.connect();
    let done = false;
    const sampling = (async () => {
      while (!done) {
        const { rows } = await probe.query<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [own.listener.pid]);
        if (rows[0]) states.add(rows[0].state);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    try {
      await work();
    } finally {
      done = true;
      await sampling;
      await probe.end();
    }
    return [...states].sort();
  }

  /** 300 runs with onChange on (every write NOTIFYs), plus 20,000 distinct foreign notifications of 200 bytes. */
  async function load(wf: { start(input: number): Promise<{ result(o: { timeout: string }): Promise<unknown> }> }) {
    const runs = await Promise.all(Array.from({ length: 300 }, (_, n) => wf.start(n)));
    await own.pool.query(`SELECT pg_notify('durable_flow_changes', repeat('z', 200) || i) FROM generate_series(1, 20000) i`);
    await Promise.all(runs.map((r) => r.result({ timeout: '60 seconds' })));
  }

  it('C7: the listener is never idle in a transaction while notifications pour in, and the queue does not grow; a session that is does make it grow', async () => {
    const wf = own.workflow('c7', async ({ step, input }: WorkflowContext<number>) => step.run('one', () => input));
    const worker = own.worker({ concurrency: 20, pollInterval: '1 minute' });
    await worker.start();
    const changes: unknown[] = [];
    const unsubscribe = own.onChange((change) => void changes.push(change));
    try {
      await own.changesReady();
      const states = await statesDuring(() => load(wf));
      expect(changes.length).toBeGreaterThan(300);
      expect(states).toContain('idle');
      expect(states.filter((s) => s.startsWith('idle in transaction'))).toEqual([]);
      // What was sent (20,000 × 200 bytes alone fill ~500 pages) is read and cleaned up.
      await eventually(async () => (await usage()) < 8 * PAGE, 20_000);

      // The measure sees what it must: a LISTENing session idle in a transaction holds the queue.
      const stuck = new pg.Client({ connectionString: server.url('c7') });
      await stuck.connect();
      try {
        await stuck.query('LISTEN durable_flow_changes');
        await stuck.query('BEGIN');
        await stuck.query('SELECT 1');
        await load(wf);
        const held = await usage();
        expect(held).toBeGreaterThan(300 * PAGE);
        await stuck.query('COMMIT');
        await eventually(async () => (await usage()) < 8 * PAGE, 20_000);
        console.log(`[C7] listener states: ${states.join(', ')}; queue held at ${Math.round(held / PAGE)} pages by a session idle in a transaction, back under 8 once it commits`);
      } finally {
        await stuck.end();
      }
    } finally {
      unsubscribe();
      await worker.stop();
    }
  });
});
